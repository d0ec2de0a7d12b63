//! What trains: LoRA adapters on chosen projections (Hu et al. 2021, through burn's `Lora`
//! reparameterisation), freezing by parameter group, and freezing all but the new rows of the
//! embedding and head (vocabulary extension, stage 1).

use rosetta_model::burn::module::{Lora, Module, ModuleVisitor, Param, ParamGroup, ParamId};
use rosetta_model::burn::prelude::*;
use rosetta_model::{CausalLm, LinearKind};

use crate::config::{LoraSection, TrainConfig, Trainable};
use crate::error::{Result, TrainError};

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

/// The weights LoRA adapts: `layers.N.<module>.weight` of the target projections.
pub fn lora_group(lora: &LoraSection) -> Result<ParamGroup> {
    let modules: Vec<&str> = lora
        .targets
        .iter()
        .filter_map(|t| LinearKind::from_short_name(t))
        .map(|k| k.hf_path())
        .collect();
    group(&format!(r"^layers\.\d+\.({})\.weight$", modules.join("|").replace('.', r"\.")))
}

/// Restores the frozen rows of the embedding (and untied head) after each optimizer step, so
/// only rows `from..` ever change — weight decay and Adam moments included.
pub struct RowFreeze {
    from: usize,
    embedding_rows: Tensor<2>,
    head_columns: Option<Tensor<2>>,
}

impl RowFreeze {
    pub fn new(model: &CausalLm, from: usize) -> Result<Self> {
        let vocab = model.config().vocab_size;
        if from == 0 || from >= vocab {
            return Err(TrainError::Invalid(format!(
                "freeze.new_rows_from = {from}, but the vocabulary has {vocab} rows: new rows must lie in 1..{vocab}"
            )));
        }
        let d = model.config().hidden_size;
        let embedding_rows = model.embed_tokens.weight.val().slice([0..from, 0..d]).detach();
        let head_columns = model.lm_head.as_ref().map(|h| h.weight.val().slice([0..d, 0..from]).detach());
        Ok(RowFreeze { from, embedding_rows, head_columns })
    }

    pub fn restore(&self, mut model: CausalLm) -> CausalLm {
        let d = model.config().hidden_size;
        let from = self.from;
        let rows = self.embedding_rows.clone();
        // Edit the plain values (outside the autodiff graph) and put them back as fresh leaves.
        let restore = |w: Tensor<2>, ranges: [std::ops::Range<usize>; 2], frozen: Tensor<2>| {
            Tensor::from_inner(w.inner().slice_assign(ranges, frozen.inner())).require_grad()
        };
        model.embed_tokens.weight = model.embed_tokens.weight.clone().map(|w| restore(w, [0..from, 0..d], rows));
        if let (Some(head), Some(columns)) = (&mut model.lm_head, &self.head_columns) {
            let columns = columns.clone();
            head.weight = head.weight.clone().map(|w| restore(w, [0..d, 0..from], columns));
        }
        model
    }
}

/// Attaches LoRA factors to the target projections and freezes everything else.
pub fn apply_lora(model: CausalLm, lora: &LoraSection) -> Result<CausalLm> {
    Ok(model.apply_lora(Lora::new(lora.rank, lora.alpha).set_param_group(lora_group(lora)?)))
}

/// Applies `[lora]` and `[freeze]` to a freshly loaded model.
pub fn prepare(model: CausalLm, config: &TrainConfig) -> Result<(CausalLm, Option<RowFreeze>)> {
    if let Some(lora) = &config.lora {
        return Ok((apply_lora(model, lora)?, None));
    }
    match config.freeze.trainable {
        Trainable::All => Ok((model, None)),
        Trainable::Embeddings | Trainable::NewEmbeddingRows => {
            let rows = match (config.freeze.trainable, config.freeze.new_rows_from) {
                (Trainable::NewEmbeddingRows, Some(from)) => Some(RowFreeze::new(&model, from)?),
                _ => None,
            };
            let model = model.freeze().unfreeze_group(group(r"^(embed_tokens|lm_head)\.weight$")?);
            Ok((model, rows))
        }
    }
}
