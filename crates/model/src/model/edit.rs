//! Model operations that change weights: per-projection reads and replacements in HF
//! orientation (pruning masks, LoRA merges), and vocabulary resizing (new tokens).

use burn::module::{LoraAdapter, Param};
use burn::nn::Linear;
use burn::prelude::*;

use super::CausalLm;
use crate::error::{ModelError, Result};
use crate::intervention::{LinearId, LinearKind};
use crate::nn::decoder_layer::StoredProjection;
use crate::nn::projection::Weights;

/// A row of a resized vocabulary.
#[derive(Debug, Clone)]
pub enum VocabRow {
    /// Copy row `j` of the current embedding (and head).
    Existing(usize),
    /// A new row: its input embedding and, for an untied head, its output row.
    New { input: Vec<f32>, output: Option<Vec<f32>> },
}

impl CausalLm {
    /// Every linear layer of the decoder, in layer order.
    pub fn linear_ids(&self) -> Vec<LinearId> {
        (0..self.layers.len()).flat_map(Self::layer_linear_ids).collect()
    }

    /// The seven linear layers of decoder layer `layer`.
    pub fn layer_linear_ids(layer: usize) -> impl Iterator<Item = LinearId> {
        LinearKind::ALL.into_iter().map(move |k| LinearId::new(layer, k))
    }

    /// The dense weights of a projection; an error naming the fix when it is packed.
    pub fn linear(&self, id: LinearId) -> Result<&Linear> {
        let layer = self.layers.get(id.layer).ok_or_else(|| self.layer_error(id.layer))?;
        layer.projection(id.kind).ok_or_else(|| Self::packed_error(id))
    }

    pub fn linear_mut(&mut self, id: LinearId) -> Result<&mut Linear> {
        let error = self.layer_error(id.layer);
        self.layers.get_mut(id.layer).ok_or(error)?.projection_slot_mut(id.kind).as_mut().ok_or_else(|| Self::packed_error(id))
    }

    fn packed_error(id: LinearId) -> ModelError {
        ModelError::invalid(format!(
            "{id} is stored quantized (packed) and has no trainable f32 weights; load the model with `--precision f32`"
        ))
    }

    /// `[d_in, d_out]` of a projection, dense or packed.
    pub fn projection_dims(&self, id: LinearId) -> Result<[usize; 2]> {
        let layer = self.layers.get(id.layer).ok_or_else(|| self.layer_error(id.layer))?;
        Ok(match layer.weights(id.kind)? {
            Weights::Dense(dense) => dense.weight.dims(),
            Weights::Packed(packed, _) => [packed.weight.cols(), packed.weight.rows()],
        })
    }

    /// The LoRA adapter of a projection: on its dense weight's `Param`, or beside its packed
    /// weight (see `nn::projection`).
    pub fn adapter(&self, id: LinearId) -> Result<Option<&LoraAdapter>> {
        let layer = self.layers.get(id.layer).ok_or_else(|| self.layer_error(id.layer))?;
        Ok(match layer.weights(id.kind)? {
            Weights::Dense(dense) => dense.weight.adapter(),
            Weights::Packed(_, adapter) => adapter,
        })
    }

    /// Attaches `adapter` beside the packed weight of `id` (an error when that weight is dense:
    /// burn's reparameterisation attaches those).
    pub fn set_packed_adapter(&mut self, id: LinearId, adapter: LoraAdapter) -> Result<()> {
        let error = self.layer_error(id.layer);
        self.layers.get_mut(id.layer).ok_or(error)?.set_packed_adapter(id.kind, Some(adapter))
    }

    fn layer_error(&self, layer: usize) -> ModelError {
        ModelError::invalid(format!("layer {layer} does not exist: this model has layers 0..{}", self.layers.len()))
    }

    /// A linear weight in HF orientation `[out, in]` (dequantised when stored packed).
    pub fn weight(&self, id: LinearId) -> Result<Tensor<2>> {
        let layer = self.layers.get(id.layer).ok_or_else(|| self.layer_error(id.layer))?;
        Ok(match layer.weights(id.kind)? {
            Weights::Dense(dense) => dense.weight.val().transpose(),
            // With its LoRA adapter merged, as a dense weight's `Param` gives it.
            Weights::Packed(packed, adapter) => {
                crate::nn::projection::merged_dense(packed, adapter, &self.device()).weight.val().transpose()
            }
        })
    }

    /// Replaces a linear weight, given in HF orientation `[out, in]`. A packed projection becomes
    /// dense (f32) with the new weight and its old bias.
    pub fn set_weight(&mut self, id: LinearId, weight: Tensor<2>) -> Result<()> {
        let (device, error) = (self.device(), self.layer_error(id.layer));
        let layer = self.layers.get_mut(id.layer).ok_or(error)?;
        if layer.packed_adapter(id.kind).is_some() {
            return Err(ModelError::invalid(format!(
                "{id} carries a LoRA adapter over packed weights; export the merged model and edit that"
            )));
        }
        if let Some(packed) = layer.packed(id.kind).cloned() {
            // Checked before the conversion, so a refused edit leaves the projection packed.
            let expected = [packed.weight.rows(), packed.weight.cols()];
            if weight.dims() != expected {
                return Err(ModelError::invalid(format!("{id}: new weight has shape {:?}, expected {expected:?}", weight.dims())));
            }
            layer.set_projection(id.kind, StoredProjection::Dense(packed.to_dense(&device)));
        }
        let linear = self.linear_mut(id)?;
        let [d_in, d_out] = linear.weight.val().dims();
        if weight.dims() != [d_out, d_in] {
            return Err(ModelError::invalid(format!("{id}: new weight has shape {:?}, expected [{d_out}, {d_in}]", weight.dims())));
        }
        linear.weight = linear.weight.clone().map(|_| weight.transpose());
        Ok(())
    }

    /// Rebuilds the embedding (and untied head) with the given rows, in order: grow the
    /// vocabulary, replace rows, or reorder. The rest of the model is untouched.
    pub fn resize_vocabulary(&mut self, rows: &[VocabRow]) -> Result<()> {
        let device = self.device();
        let d = self.config.hidden_size;
        let old_vocab = self.config.vocab_size;
        if rows.is_empty() {
            return Err(ModelError::invalid("a vocabulary needs at least one row"));
        }
        let mut existing_positions = Vec::new();
        let mut existing_sources = Vec::new();
        let mut new_positions = Vec::new();
        let mut new_input = Vec::new();
        let mut new_output = Vec::new();
        for (pos, row) in rows.iter().enumerate() {
            match row {
                VocabRow::Existing(j) => {
                    if *j >= old_vocab {
                        return Err(ModelError::invalid(format!("row {pos} copies token {j}, but the vocabulary has {old_vocab}")));
                    }
                    existing_positions.push(pos);
                    existing_sources.push(*j as i64);
                }
                VocabRow::New { input, output } => {
                    if input.len() != d || output.as_ref().is_some_and(|o| o.len() != d) {
                        return Err(ModelError::invalid(format!("new row {pos} must have {d} values")));
                    }
                    if self.lm_head.is_some() && output.is_none() {
                        return Err(ModelError::invalid(format!("new row {pos} needs an output row: this model's head is not tied")));
                    }
                    new_positions.push(pos);
                    new_input.extend_from_slice(input);
                    if let Some(o) = output {
                        new_output.extend_from_slice(o);
                    }
                }
            }
        }
        // Rows are assembled as [existing..., new...] and then put in the requested order.
        let order: Vec<usize> = existing_positions.iter().chain(&new_positions).copied().collect();
        let mut inverse = vec![0i64; rows.len()];
        for (assembled, &pos) in order.iter().enumerate() {
            inverse[pos] = assembled as i64;
        }
        let to_int = |v: Vec<i64>| Tensor::<1, Int>::from_data(TensorData::new(v.clone(), [v.len()]), &device);
        let sources = to_int(existing_sources);
        let inverse = to_int(inverse);
        let n_new = new_positions.len();
        let assemble = |old: Tensor<2>, fresh: Vec<f32>| -> Tensor<2> {
            let mut parts = Vec::new();
            if !existing_positions.is_empty() {
                parts.push(old.select(0, sources.clone()));
            }
            if n_new > 0 {
                parts.push(Tensor::from_data(TensorData::new(fresh, [n_new, d]), &device));
            }
            Tensor::cat(parts, 0).select(0, inverse.clone())
        };
        // The packed head no longer matches the vocabulary; logits use the f32 one.
        self.packed_head = None;
        let embedding = assemble(self.embed_tokens.weight.val(), new_input);
        self.embed_tokens.weight = Param::from_tensor(embedding);
        if let Some(head) = &mut self.lm_head {
            // burn keeps the head as [d, vocab]; rows of the vocabulary are its columns.
            let rows_first = assemble(head.weight.val().transpose(), new_output);
            head.weight = Param::from_tensor(rows_first.transpose());
        }
        self.config.vocab_size = rows.len();
        Ok(())
    }
}
