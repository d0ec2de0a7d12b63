//! What trains: LoRA adapters on chosen projections (Hu et al. 2021, through burn's `Lora`
//! reparameterisation), freezing by parameter group, and only the new rows of the embedding and
//! head (vocabulary extension, stage 1: [`TrainableRows`], [`RowAdamW`]).

use rosetta_model::burn::module::{Module, ModuleVisitor, Param, ParamGroup, ParamId};
use std::sync::Arc;

use rosetta_model::burn::optim::{AdamW, AdamWState, LearningRate, Optimizer};
use rosetta_model::burn::prelude::*;
use rosetta_model::burn::tensor::IndexingUpdateOp;
use rosetta_model::peft::PeftAdapter;
use rosetta_model::{CausalLm, LinearKind, Precision};

use crate::config::{LoraBase, LoraSection, TrainConfig, Trainable};
use crate::error::{Result, TrainError};
use crate::precision::TrainPrecision;

/// Every float parameter with its module path (`layers.0.self_attn.q_proj.weight`, ...).
pub fn parameter_paths(model: &CausalLm) -> Vec<(String, ParamId, Vec<usize>)> {
    #[derive(Default)]
    struct Paths {
        stack: Vec<String>,
        out: Vec<(String, ParamId, Vec<usize>)>,
    }
    impl ModuleVisitor for Paths {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.stack.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.stack.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.out.push((self.stack.join("."), param.id, param.shape().dims::<D>().to_vec()));
        }
    }
    let mut visitor = Paths::default();
    model.visit(&mut visitor);
    visitor.out
}

fn group(pattern: &str) -> Result<ParamGroup> {
    ParamGroup::from_regex(pattern).map_err(|e| TrainError::Invalid(format!("parameter group `{pattern}`: {e:?}")))
}

/// The rows of the embedding (and untied head) that train while the rest of both tables stays
/// frozen: the new tokens of a vocabulary extension, a tail `from..` (add mode) or scattered ids
/// (replace mode, read from the checkpoint's `rosetta.json`). Only these rows are updated, and
/// only they have optimizer state ([`RowAdamW`]); the frozen rows are never written.
#[derive(Debug, Clone)]
pub struct TrainableRows {
    rows: Arc<[i64]>,
    vocab: usize,
}

impl TrainableRows {
    pub fn new(model: &CausalLm, trainable_rows: &[usize]) -> Result<Self> {
        let vocab = model.config().vocab_size;
        if trainable_rows.is_empty() {
            return Err(TrainError::Invalid(
                "trainable = \"new-embedding-rows\" but there are no new rows: set freeze.new_rows_from or train a model made by `rosetta vocab extend`".into(),
            ));
        }
        if let Some(&bad) = trainable_rows.iter().find(|&&r| r >= vocab) {
            return Err(TrainError::Invalid(format!(
                "new embedding row {bad} is outside the vocabulary of {vocab} rows (freeze.new_rows_from or rosetta.json's new_token_ids do not belong to this model)"
            )));
        }
        let mut rows: Vec<i64> = trainable_rows.iter().map(|&r| r as i64).collect();
        rows.sort_unstable();
        rows.dedup();
        Ok(TrainableRows { rows: rows.into(), vocab })
    }

    /// The row ids of a tail `from..vocab`.
    pub fn tail(model: &CausalLm, from: usize) -> Result<Self> {
        let vocab = model.config().vocab_size;
        if from == 0 || from >= vocab {
            return Err(TrainError::Invalid(format!(
                "freeze.new_rows_from = {from}, but the vocabulary has {vocab} rows: new rows must lie in 1..{vocab}"
            )));
        }
        Self::new(model, &(from..vocab).collect::<Vec<_>>())
    }

    /// The optimizer of the embedding and head: `adamw` on these rows alone.
    pub fn optimizer(&self, adamw: AdamW) -> RowAdamW {
        RowAdamW { adamw, rows: self.rows.clone(), vocab: self.vocab }
    }

    /// The parameters [`TrainableRows::optimizer`] serves.
    pub fn tables() -> Result<ParamGroup> {
        group(r"^(embed_tokens|lm_head)\.weight$")
    }
}

/// AdamW on chosen rows of a vocabulary table: the embedding `[vocab, d]` (rows) or the head
/// `[d, vocab]` (burn's layout: columns). The rows are gathered, stepped by AdamW — whose moments
/// and decoupled weight decay are elementwise, so each row moves as a dense step would move it —
/// and added back; the state holds `[rows, d]` moments, not the table's. A parameter without a
/// vocabulary axis takes plain AdamW.
#[derive(Clone)]
pub struct RowAdamW {
    adamw: AdamW,
    rows: Arc<[i64]>,
    vocab: usize,
}

impl Optimizer for RowAdamW {
    type State<const D: usize> = AdamWState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<AdamWState<D>>,
    ) -> (Tensor<D>, Option<AdamWState<D>>) {
        let dims = tensor.dims();
        let Some(axis) = (D == 2).then(|| (0..2).find(|&a| dims[a] == self.vocab)).flatten() else {
            return self.adamw.step(lr, tensor, grad, state);
        };
        let device = tensor.device();
        let ids = Tensor::<1, Int>::from_data(TensorData::new(self.rows.to_vec(), [self.rows.len()]), &device);
        // State from a checkpoint of the dense step stage 1 took before (moments for the whole
        // table): the rows' own moments are those rows of it.
        let state = state.map(|mut s| {
            let m = &mut s.momentum;
            if m.moment_1.dims()[axis] != self.rows.len() {
                m.moment_1 = m.moment_1.clone().select(axis, ids.clone());
                m.moment_2 = m.moment_2.clone().select(axis, ids.clone());
                m.max_moment_2 = m.max_moment_2.take().map(|t| t.select(axis, ids.clone()));
            }
            s
        });
        let before = tensor.clone().select(axis, ids.clone());
        let (after, state) = self.adamw.step(lr, before.clone(), grad.select(axis, ids.clone()), state);
        (tensor.select_assign(axis, ids, after - before, IndexingUpdateOp::Add), state)
    }

    fn to_device<const D: usize>(state: AdamWState<D>, device: &Device) -> AdamWState<D> {
        AdamW::to_device(state, device)
    }
}

/// The rows a vocabulary extension added, as `rosetta vocab extend` records them in `rosetta.json`.
pub fn new_token_rows(extras: Option<&serde_json::Value>) -> Option<Vec<usize>> {
    let ids = extras?.get("vocab_extension")?.get("new_token_ids")?.as_array()?;
    ids.iter().map(|v| v.as_u64().map(|i| i as usize)).collect()
}

/// How a run loads its checkpoint on `devices`: a LoRA run over a quantized checkpoint keeps
/// its projections packed (QLoRA) where `[lora] base = "auto"` allows and the fused packed op
/// trains — every device the CPU backend, products in f32 or (bf16) in bf16 without casting the
/// model; every other run is f32.
pub fn load_precision(config: &TrainConfig, devices: &[Device]) -> Precision {
    let packed_base = config.lora.as_ref().is_some_and(|l| l.base == LoraBase::Auto) && fused_cpu_step(config, devices);
    if packed_base { Precision::PackedBase } else { Precision::F32 }
}

/// Whether a step of `config` on `devices` runs the CPU backend's fused ops in f32 tensors:
/// every device the CPU backend, and f32 compute or bf16 products (not a model cast to a low
/// precision). Where QLoRA's packed base and activation checkpointing run.
pub fn fused_cpu_step(config: &TrainConfig, devices: &[Device]) -> bool {
    devices.iter().all(|d| Precision::PackedBase.packs_on(d)) && computes_in_f32(config, devices)
}

/// Whether `[optim] activation_checkpointing` runs for `config` on `devices`: every device one
/// the layer replay runs on (the CPU backend, a GPU backend) and the step's tensors f32.
pub fn layer_checkpointing_runs(config: &TrainConfig, devices: &[Device]) -> bool {
    devices.iter().all(|d| rosetta_model::layer_checkpointing_runs_on(&d.clone().autodiff())) && computes_in_f32(config, devices)
}

/// Whether a step's tensors stay f32: f32 compute, or bf16 products on the CPU (no cast copy).
fn computes_in_f32(config: &TrainConfig, devices: &[Device]) -> bool {
    match config.optim.precision {
        TrainPrecision::F32 => true,
        TrainPrecision::Bf16 => devices.iter().all(rosetta_model::bf16_products_on),
        TrainPrecision::F16 => false,
    }
}

/// The projections `[lora] targets` names.
fn lora_targets(lora: &LoraSection) -> Vec<LinearKind> {
    LinearKind::ALL.into_iter().filter(|k| lora.targets.iter().any(|t| t == k.short_name())).collect()
}

/// Attaches LoRA factors to the target projections and freezes everything else: fresh ones
/// (burn's init: A random, B zero; `peft::fresh_lora`, drawn from `seed`), or those of the PEFT
/// adapter `lora.init` names. Packed projections (a QLoRA base) take theirs beside their blocks.
pub fn apply_lora(model: CausalLm, lora: &LoraSection, seed: u64) -> Result<CausalLm> {
    let Some(dir) = &lora.init else {
        return Ok(rosetta_model::peft::fresh_lora(model, &lora_targets(lora), lora.rank, lora.alpha, seed)?);
    };
    let adapter = PeftAdapter::read(dir)?;
    let wanted = lora_targets(lora);
    let names = |kinds: &[LinearKind]| kinds.iter().map(|k| k.short_name()).collect::<Vec<_>>().join(", ");
    let mismatch = if adapter.rslora {
        Some("it uses rsLoRA scaling (alpha / √r), which the trainer does not; apply it with --adapter instead".to_string())
    } else if adapter.rank != lora.rank || adapter.alpha != lora.alpha {
        Some(format!(
            "it has r = {}, lora_alpha = {} but [lora] says rank = {}, alpha = {}",
            adapter.rank, adapter.alpha, lora.rank, lora.alpha
        ))
    } else if adapter.targets() != wanted {
        Some(format!("it adapts {} but [lora] targets {}", names(&adapter.targets()), names(&wanted)))
    } else {
        None
    };
    if let Some(why) = mismatch {
        return Err(TrainError::Invalid(format!("lora.init = {}: {why}; make [lora] match the adapter", dir.display())));
    }
    adapter
        .attach(model)
        .map_err(|e| TrainError::Invalid(format!("lora.init = {}: {e}; make model.path the adapter's base model", dir.display())))
}

/// Applies `[lora]` and `[freeze]` to a freshly loaded model.
/// `extras` is the checkpoint's `rosetta.json`, where a vocabulary extension lists its new rows.
pub fn prepare(model: CausalLm, config: &TrainConfig, extras: Option<&serde_json::Value>) -> Result<(CausalLm, Option<TrainableRows>)> {
    if let Some(lora) = &config.lora {
        return Ok((apply_lora(model, lora, config.run.seed)?, None));
    }
    match config.freeze.trainable {
        Trainable::All => Ok((model, None)),
        Trainable::Embeddings | Trainable::NewEmbeddingRows => {
            let rows = match (config.freeze.trainable, config.freeze.new_rows_from) {
                (Trainable::NewEmbeddingRows, Some(from)) => Some(TrainableRows::tail(&model, from)?),
                (Trainable::NewEmbeddingRows, None) => Some(TrainableRows::new(&model, &new_token_rows(extras).unwrap_or_default())?),
                (Trainable::Embeddings, _) => None,
                (Trainable::All, _) => unreachable!("handled above"),
            };
            let model = model.freeze().unfreeze_group(group(r"^(embed_tokens|lm_head)\.weight$")?);
            Ok((model, rows))
        }
    }
}
