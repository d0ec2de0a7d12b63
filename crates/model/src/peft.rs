//! LoRA adapters in Hugging Face PEFT's format: `adapter_config.json` + `adapter_model.safetensors`,
//! what `PeftModel.from_pretrained(base, dir)` loads and `model.save_pretrained(dir)` writes.
//!
//! PEFT stores, per adapted projection, `base_model.model.<HF module>.lora_A.weight` with shape
//! `[r, in]` and `…lora_B.weight` with shape `[out, r]`; the weight becomes
//! `W + s · B·A` with `s = lora_alpha / r` (`lora_alpha / √r` under rsLoRA). burn's
//! [`LoraAdapter`] holds the same factors in its `[in, out]` weight layout — `a = Aᵀ`
//! (`[in, r]`), `b = Bᵀ` (`[r, out]`) — so reading and writing is a transpose per factor, and the
//! model's forward runs a loaded adapter exactly as it runs one it trained.
//!
//! What Rosetta's LoRA is not is refused with the reason: DoRA, per-module ranks
//! (`rank_pattern`/`alpha_pattern`), trained biases, `modules_to_save`, adapted embeddings or
//! heads, and targets other than the seven decoder projections.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::{LoraAdapter, Module, Param, Reparameterizer};
use burn::prelude::*;
use safetensors::Dtype;
use serde_json::{Value, json};

use crate::atomic::StagedDir;
use crate::error::{ModelError, Result};
use crate::export::serialize_safetensors;
use crate::intervention::{LinearId, LinearKind};
use crate::model::CausalLm;
use crate::readback::{block_on, to_vec_f32};
use crate::weights::{Blob, HostTensor, safetensors_source::SafetensorsFile};

pub const CONFIG_FILE: &str = "adapter_config.json";
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";
/// What PEFT puts before the HF module path of a causal LM (`PeftModelForCausalLM.base_model.model`).
const KEY_PREFIX: &str = "base_model.model.";

/// One adapted projection's factors in PEFT's orientation.
#[derive(Debug, Clone)]
pub struct Factors {
    /// `[r, in]`
    pub a: HostTensor,
    /// `[out, r]`
    pub b: HostTensor,
}

/// A LoRA adapter: its hyper-parameters and the factors of each adapted projection.
#[derive(Debug, Clone)]
pub struct PeftAdapter {
    pub rank: usize,
    pub alpha: f64,
    /// rsLoRA scaling (`alpha / √r`) instead of `alpha / r`.
    pub rslora: bool,
    /// The base model the adapter was made for, as recorded (`base_model_name_or_path`).
    pub base_model: Option<String>,
    pub factors: BTreeMap<LinearId, Factors>,
}

impl PeftAdapter {
    /// The factor that multiplies `B·A`.
    pub fn scale(&self) -> f64 {
        if self.rslora { self.alpha / (self.rank as f64).sqrt() } else { self.alpha / self.rank as f64 }
    }

    /// The projection kinds adapted in at least one layer, in the decoder's order.
    pub fn targets(&self) -> Vec<LinearKind> {
        LinearKind::ALL.into_iter().filter(|k| self.factors.keys().any(|id| id.kind == *k)).collect()
    }

    /// The adapter attached to `model`'s projections (as [`LoraAdapter`]s); every other
    /// parameter is frozen, as with a freshly attached LoRA. Refuses an adapter whose shapes do
    /// not fit this model, naming the tensor and what the model expects.
    pub fn attach(&self, model: CausalLm) -> Result<CausalLm> {
        let layers = model.layers.len();
        for (id, factors) in &self.factors {
            let context = || {
                format!(
                    "the PEFT adapter (made for {}) does not fit this model",
                    self.base_model.as_deref().unwrap_or("an unnamed base model")
                )
            };
            if id.layer >= layers {
                return Err(ModelError::invalid(format!("{}: it adapts {id}, but the model has {layers} layers", context())));
            }
            let [d_in, d_out] = model.projection_dims(*id)?;
            if factors.a.shape != [self.rank, d_in] || factors.b.shape != [d_out, self.rank] {
                return Err(ModelError::invalid(format!(
                    "{}: `{}` is {:?} and `{}` is {:?}, but {id} maps {d_in} inputs to {d_out} outputs (expected [{r}, {d_in}] and [{d_out}, {r}])",
                    context(),
                    key(*id, "A"),
                    factors.a.shape,
                    key(*id, "B"),
                    factors.b.shape,
                    r = self.rank
                )));
            }
        }
        let device = model.device();
        let factors = self
            .factors
            .iter()
            .map(|(id, f)| {
                let a = Tensor::<2>::from_data(TensorData::new(f.a.data.clone(), f.a.shape.clone()), &device).transpose();
                let b = Tensor::<2>::from_data(TensorData::new(f.b.data.clone(), f.b.shape.clone()), &device).transpose();
                (*id, a, b)
            })
            .collect();
        attach_factors(model, factors, self.scale())
    }

    /// The adapters attached to `model`'s projections (what a LoRA run trains), with the rank
    /// and alpha they were made with. `None` when no projection carries one.
    pub fn from_model(model: &CausalLm, rank: usize, alpha: f64, base_model: Option<String>) -> Result<Option<Self>> {
        let mut factors = BTreeMap::new();
        for id in model.linear_ids() {
            let Some(adapter) = model.adapter(id)? else { continue };
            let expected = alpha / rank as f64;
            if (adapter.scale - expected).abs() > 1e-12 * expected.abs() {
                return Err(ModelError::invalid(format!("{id}: its adapter scales by {}, not alpha / rank = {expected}", adapter.scale)));
            }
            let host = |t: Tensor<2>| -> Result<HostTensor> {
                let t = t.transpose();
                let shape = t.dims().to_vec();
                Ok(HostTensor::new(shape, block_on(to_vec_f32(t))?))
            };
            factors.insert(id, Factors { a: host(adapter.a.val())?, b: host(adapter.b.val())? });
        }
        Ok((!factors.is_empty()).then_some(PeftAdapter { rank, alpha, rslora: false, base_model, factors }))
    }

    /// Reads `dir/adapter_config.json` and `dir/adapter_model.safetensors`.
    pub fn read(dir: &Path) -> Result<Self> {
        let config_path = dir.join(CONFIG_FILE);
        let refuse = |path: &Path, reason: String| ModelError::invalid(format!("{}: {reason}", path.display()));
        let text = std::fs::read_to_string(&config_path).map_err(|e| {
            refuse(
                &config_path,
                format!("cannot read the adapter's config ({e}); --adapter takes a PEFT adapter directory (save_pretrained's output)"),
            )
        })?;
        let config: Value = serde_json::from_str(&text).map_err(|e| refuse(&config_path, format!("not JSON: {e}")))?;
        let settings = AdapterSettings::parse(&config).map_err(|reason| refuse(&config_path, reason))?;

        let weights_path = dir.join(WEIGHTS_FILE);
        if !weights_path.exists() {
            let hint = if dir.join("adapter_model.bin").exists() {
                "; this adapter is a pickled adapter_model.bin: save it again with safe_serialization=True"
            } else {
                ""
            };
            return Err(refuse(&weights_path, format!("missing{hint}")));
        }
        let file = SafetensorsFile::parse(Blob::open(&weights_path)?, weights_path.display().to_string())?;
        let mut halves: BTreeMap<LinearId, (Option<HostTensor>, Option<HostTensor>)> = BTreeMap::new();
        for name in file.names() {
            let (id, factor) = parse_key(&name).ok_or_else(|| {
                refuse(
                    &weights_path,
                    format!(
                        "tensor `{name}` is not a LoRA factor of a decoder projection (Rosetta applies lora_A/lora_B of {}; \
                         DoRA magnitudes, embeddings, heads and modules_to_save are not supported)",
                        short_names()
                    ),
                )
            })?;
            let tensor = file.read(&name).ok_or_else(|| refuse(&weights_path, format!("tensor `{name}` vanished")))??;
            let slot = halves.entry(id).or_default();
            if factor == "A" { slot.0 = Some(tensor) } else { slot.1 = Some(tensor) }
        }
        let mut factors = BTreeMap::new();
        for (id, pair) in halves {
            match pair {
                (Some(a), Some(b)) => {
                    if a.shape.len() != 2 || b.shape.len() != 2 || a.shape[0] != settings.rank || b.shape[1] != settings.rank {
                        return Err(refuse(
                            &weights_path,
                            format!(
                                "{id}: factors of shape {:?} and {:?} do not have the config's rank r = {}",
                                a.shape, b.shape, settings.rank
                            ),
                        ));
                    }
                    factors.insert(id, Factors { a, b });
                }
                _ => return Err(refuse(&weights_path, format!("{id} has only one of its two factors lora_A / lora_B"))),
            }
        }
        if factors.is_empty() {
            return Err(refuse(&weights_path, "holds no LoRA factors".into()));
        }
        let adapter =
            PeftAdapter { rank: settings.rank, alpha: settings.alpha, rslora: settings.rslora, base_model: settings.base_model, factors };
        if let Some(unlisted) = adapter.targets().into_iter().find(|k| !settings.targets.is_empty() && !settings.targets.contains(k)) {
            return Err(refuse(&config_path, format!("the weights adapt {} but target_modules does not list it", unlisted.short_name())));
        }
        Ok(adapter)
    }

    /// Writes the adapter as PEFT does (`save_pretrained` with safetensors), atomically.
    pub fn write(&self, dir: &Path, overwrite: bool) -> Result<PathBuf> {
        let staged = StagedDir::new(dir, overwrite)?;
        let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
        for (id, f) in &self.factors {
            for (half, t) in [("A", &f.a), ("B", &f.b)] {
                tensors.push((key(*id, half), Dtype::F32, t.shape.clone(), t.data.iter().flat_map(|v| v.to_le_bytes()).collect()));
            }
        }
        staged.write(WEIGHTS_FILE, &serialize_safetensors(&tensors, None)?)?;
        let targets: Vec<&str> = self.targets().into_iter().map(LinearKind::short_name).collect();
        let config = json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": self.base_model,
            "r": self.rank,
            "lora_alpha": self.alpha,
            "target_modules": targets,
            "lora_dropout": 0.0,
            "bias": "none",
            "fan_in_fan_out": false,
            "use_rslora": self.rslora,
            "use_dora": false,
            "modules_to_save": null,
            "init_lora_weights": true,
            "inference_mode": true,
            "layers_to_transform": null,
            "layers_pattern": null,
            "rank_pattern": {},
            "alpha_pattern": {},
            "revision": null,
        });
        staged.write(CONFIG_FILE, &serde_json::to_vec_pretty(&config).unwrap_or_default())?;
        staged.commit()
    }
}

/// The settings of `adapter_config.json` Rosetta applies, after refusing the ones it cannot.
struct AdapterSettings {
    rank: usize,
    alpha: f64,
    rslora: bool,
    base_model: Option<String>,
    /// Listed target modules (empty when given as a regex: the weights then say).
    targets: Vec<LinearKind>,
}

impl AdapterSettings {
    fn parse(config: &Value) -> std::result::Result<Self, String> {
        let peft_type = config.get("peft_type").and_then(Value::as_str).unwrap_or("");
        if peft_type != "LORA" {
            return Err(format!("peft_type is `{peft_type}`; Rosetta applies LoRA adapters only"));
        }
        let flag = |key: &str| config.get(key).and_then(Value::as_bool).unwrap_or(false);
        let non_empty = |key: &str| match config.get(key) {
            None | Some(Value::Null) => false,
            Some(Value::Object(m)) => !m.is_empty(),
            Some(Value::Array(a)) => !a.is_empty(),
            Some(_) => true,
        };
        if flag("use_dora") {
            return Err("use_dora = true: DoRA adapters are not supported (train a plain LoRA adapter)".into());
        }
        if flag("fan_in_fan_out") {
            return Err("fan_in_fan_out = true is for Conv1D (GPT-2) weights; LLaMA-family projections are Linear".into());
        }
        for key in ["rank_pattern", "alpha_pattern"] {
            if non_empty(key) {
                return Err(format!("{key} sets per-module ranks/alphas, which Rosetta does not support"));
            }
        }
        if non_empty("modules_to_save") {
            return Err(format!("modules_to_save = {} trains whole modules beside the adapter; not supported", config["modules_to_save"]));
        }
        let bias = config.get("bias").and_then(Value::as_str).unwrap_or("none");
        if bias != "none" {
            return Err(format!("bias = \"{bias}\": adapters with trained biases are not supported"));
        }
        let rank = config.get("r").and_then(Value::as_u64).filter(|r| *r >= 1).ok_or("r (the rank) is missing or not ≥ 1")? as usize;
        let alpha = config.get("lora_alpha").and_then(Value::as_f64).ok_or("lora_alpha is missing")?;
        let targets = match config.get("target_modules") {
            Some(Value::Array(items)) => {
                let mut kinds = Vec::new();
                for item in items {
                    let name = item.as_str().unwrap_or("");
                    // PEFT matches a listed name against the last component of a module path.
                    let short = name.rsplit('.').next().unwrap_or(name);
                    let kind = LinearKind::from_short_name(short).ok_or_else(|| {
                        format!("target module `{name}` is not supported: Rosetta adapts the decoder projections {}", short_names())
                    })?;
                    kinds.push(kind);
                }
                kinds
            }
            _ => Vec::new(),
        };
        Ok(AdapterSettings {
            rank,
            alpha,
            rslora: flag("use_rslora"),
            base_model: config.get("base_model_name_or_path").and_then(Value::as_str).map(str::to_string),
            targets,
        })
    }
}

fn short_names() -> String {
    LinearKind::ALL.map(LinearKind::short_name).join(", ")
}

/// PEFT's key of one factor (`A` or `B`) of a projection.
fn key(id: LinearId, factor: &str) -> String {
    format!("{KEY_PREFIX}model.layers.{}.{}.lora_{factor}.weight", id.layer, id.kind.hf_path())
}

/// `base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight` → (layer 3 q_proj, "A").
/// Also takes the in-memory form with the adapter's name (`lora_A.default.weight`).
fn parse_key(name: &str) -> Option<(LinearId, &'static str)> {
    let rest = name.strip_prefix(KEY_PREFIX)?.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, factor) = if let Some(m) = rest.strip_suffix(".lora_A.weight").or_else(|| rest.strip_suffix(".lora_A.default.weight")) {
        (m, "A")
    } else {
        (rest.strip_suffix(".lora_B.weight").or_else(|| rest.strip_suffix(".lora_B.default.weight"))?, "B")
    };
    let kind = LinearKind::ALL.into_iter().find(|k| k.hf_path() == module)?;
    Some((LinearId::new(layer, kind), factor))
}

/// burn's module path of a projection's weight (`layers.3.self_attn.q_proj.weight`).
fn module_path(id: LinearId) -> String {
    format!("layers.{}.{}.weight", id.layer, id.kind.hf_path())
}

/// Fresh LoRA adapters on the projections `kinds` of every layer, initialised as burn's `Lora`
/// does (Hu et al.: `A ~ N(0, 1/r)`, `B = 0`, scale `alpha / r`, so the adapted model starts as
/// the base), with every other parameter frozen. `A` comes from the project's generator seeded
/// with `seed` (a run's `run.seed`), layer by layer in [`LinearKind::ALL`]'s order, whether a
/// projection is dense or packed: a run's adapters reproduce from its seed, and a QLoRA run
/// starts from the factors LoRA over the same weights in f32 starts from.
pub fn fresh_lora(model: CausalLm, kinds: &[LinearKind], rank: usize, alpha: f64, seed: u64) -> Result<CausalLm> {
    if rank == 0 {
        return Err(ModelError::invalid("a LoRA adapter needs rank ≥ 1"));
    }
    /// Keeps the factors' stream apart from the data order's, which the same seed drives.
    const STREAM: u64 = 0x4c6f_5241_2041_0001;
    let mut rng = rosetta_rng::SplitMix64::new(seed ^ STREAM);
    let device = model.device();
    let ids: Vec<LinearId> = model.linear_ids().into_iter().filter(|id| kinds.contains(&id.kind)).collect();
    let mut factors = Vec::with_capacity(ids.len());
    for id in ids {
        let [d_in, d_out] = model.projection_dims(id)?;
        let std = 1.0 / rank as f32;
        let a: Vec<f32> = (0..d_in * rank).map(|_| rng.normal() * std).collect();
        // Parameters for the model's lifetime: built where burn builds its own (outside the
        // dynamic memory pools of GPU backends).
        let (a, b) = device.memory_persistent_allocations((), |_| {
            (Tensor::<2>::from_data(TensorData::new(a.clone(), [d_in, rank]), &device), Tensor::<2>::zeros([rank, d_out], &device))
        });
        factors.push((id, a, b));
    }
    attach_factors(model, factors, alpha / rank as f64)
}

/// Attaches LoRA factors (burn layout: `a: [d_in, r]`, `b: [r, d_out]`) to their projections and
/// freezes every other parameter: on a dense weight through burn's reparameterisation, beside
/// a packed one (see `nn::projection`).
fn attach_factors(model: CausalLm, factors: Vec<(LinearId, Tensor<2>, Tensor<2>)>, scale: f64) -> Result<CausalLm> {
    let (packed, dense): (Vec<_>, Vec<_>) = factors.into_iter().partition(|(id, _, _)| model.layers[id.layer].packed(id.kind).is_some());
    let by_path = dense.into_iter().map(|(id, a, b)| (module_path(id), (a, b))).collect();
    let mut model = model.apply_reparameterization(LoadedLora { by_path, scale });
    for (id, a, b) in packed {
        model.set_packed_adapter(id, LoraAdapter { a: Param::from_tensor(a), b: Param::from_tensor(b), scale })?;
    }
    Ok(model)
}

/// Attaches given factors (burn layout) at their module paths and freezes every other
/// parameter, as burn's own `Lora` does when it attaches fresh ones.
struct LoadedLora {
    by_path: BTreeMap<String, (Tensor<2>, Tensor<2>)>,
    scale: f64,
}

impl Reparameterizer for LoadedLora {
    type Reparam = LoraAdapter;

    fn reparameterize<const D: usize>(&mut self, path: &str, param: Param<Tensor<D>>) -> (Param<Tensor<D>>, Option<LoraAdapter>) {
        let base = param.set_require_grad(false);
        match self.by_path.remove(path) {
            Some((a, b)) if D == 2 => (base, Some(LoraAdapter { a: Param::from_tensor(a), b: Param::from_tensor(b), scale: self.scale })),
            _ => (base, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let id = LinearId::new(3, LinearKind::DownProj);
        assert_eq!(key(id, "A"), "base_model.model.model.layers.3.mlp.down_proj.lora_A.weight");
        assert_eq!(parse_key(&key(id, "A")), Some((id, "A")));
        assert_eq!(parse_key(&key(id, "B")), Some((id, "B")));
        assert_eq!(
            parse_key("base_model.model.model.layers.0.self_attn.q_proj.lora_B.default.weight"),
            Some((LinearId::new(0, LinearKind::QProj), "B"))
        );
        assert_eq!(parse_key("base_model.model.lm_head.lora_A.weight"), None);
        assert_eq!(parse_key("base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector"), None);
    }

    #[test]
    fn unsupported_settings_are_refused_with_the_reason() {
        let base = json!({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj"]});
        assert!(AdapterSettings::parse(&base).is_ok());
        let with = |k: &str, v: Value| {
            let mut c = base.clone();
            c[k] = v;
            AdapterSettings::parse(&c).err().unwrap_or_default()
        };
        assert!(with("use_dora", json!(true)).contains("DoRA"));
        assert!(with("target_modules", json!(["q_proj", "embed_tokens"])).contains("`embed_tokens` is not supported"));
        assert!(with("modules_to_save", json!(["lm_head"])).contains("modules_to_save"));
        assert!(with("rank_pattern", json!({"q_proj": 8})).contains("rank_pattern"));
        assert!(with("bias", json!("all")).contains("bias"));
        assert!(with("peft_type", json!("IA3")).contains("LoRA adapters only"));
    }
}
