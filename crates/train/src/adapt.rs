//! What trains: LoRA adapters on chosen projections (Hu et al. 2021, through burn's `Lora`
//! reparameterisation), freezing by parameter group, and freezing all but the new rows of the
//! embedding and head (vocabulary extension, stage 1).

use rosetta_model::burn::module::{Module, ModuleVisitor, Param, ParamGroup, ParamId};
use rosetta_model::burn::prelude::*;
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

/// Restores the frozen rows of the embedding (and untied head) after each optimizer step, so
/// only the trainable rows ever change — weight decay and Adam moments included. The trainable
/// rows are the new tokens of a vocabulary extension: a tail `from..` (add mode) or scattered ids
/// (replace mode, read from the checkpoint's `rosetta.json`).
pub struct RowFreeze {
    /// `[vocab, 1]`: 1.0 on trainable rows, 0.0 on frozen ones.
    trainable: Tensor<2>,
    embedding: Tensor<2>,
    head: Option<Tensor<2>>,
}

impl RowFreeze {
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
        let device = model.embed_tokens.weight.val().device();
        let mut mask = vec![0.0f32; vocab];
        for &r in trainable_rows {
            mask[r] = 1.0;
        }
        let trainable = Tensor::<1>::from_floats(mask.as_slice(), &device).reshape([vocab, 1]).detach();
        let embedding = model.embed_tokens.weight.val().detach();
        let head = model.lm_head.as_ref().map(|h| h.weight.val().detach());
        Ok(RowFreeze { trainable, embedding, head })
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

    pub fn restore(&self, mut model: CausalLm) -> CausalLm {
        let trainable = self.trainable.clone();
        // Edit the plain values (outside the autodiff graph) and put them back as fresh leaves.
        let blend = |w: Tensor<2>, frozen: Tensor<2>, mask: Tensor<2>| {
            let w = w.inner();
            let (frozen, mask) = (frozen.inner(), mask.inner());
            let keep = mask.clone().neg().add_scalar(1.0);
            Tensor::from_inner(w * mask + frozen * keep).require_grad()
        };
        let embedding = self.embedding.clone();
        model.embed_tokens.weight = model.embed_tokens.weight.clone().map(|w| blend(w, embedding, trainable.clone()));
        if let (Some(head), Some(frozen)) = (&mut model.lm_head, &self.head) {
            // The head is [d, vocab] (burn's [in, out]): the vocabulary runs along columns.
            let (frozen, columns) = (frozen.clone(), trainable.clone().transpose());
            head.weight = head.weight.clone().map(|w| blend(w, frozen, columns));
        }
        model
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
    let packed_base = config.lora.as_ref().is_some_and(|l| l.base == LoraBase::Auto)
        && devices.iter().all(|d| Precision::PackedBase.packs_on(d))
        && match config.optim.precision {
            TrainPrecision::F32 => true,
            TrainPrecision::Bf16 => devices.iter().all(rosetta_model::bf16_products_on),
            TrainPrecision::F16 => false,
        };
    if packed_base { Precision::PackedBase } else { Precision::F32 }
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
pub fn prepare(model: CausalLm, config: &TrainConfig, extras: Option<&serde_json::Value>) -> Result<(CausalLm, Option<RowFreeze>)> {
    if let Some(lora) = &config.lora {
        return Ok((apply_lora(model, lora, config.run.seed)?, None));
    }
    match config.freeze.trainable {
        Trainable::All => Ok((model, None)),
        Trainable::Embeddings | Trainable::NewEmbeddingRows => {
            let rows = match (config.freeze.trainable, config.freeze.new_rows_from) {
                (Trainable::NewEmbeddingRows, Some(from)) => Some(RowFreeze::tail(&model, from)?),
                (Trainable::NewEmbeddingRows, None) => Some(RowFreeze::new(&model, &new_token_rows(extras).unwrap_or_default())?),
                (Trainable::Embeddings, _) => None,
                (Trainable::All, _) => unreachable!("handled above"),
            };
            let model = model.freeze().unfreeze_group(group(r"^(embed_tokens|lm_head)\.weight$")?);
            Ok((model, rows))
        }
    }
}
