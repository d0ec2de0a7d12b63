//! The LLaMA-family causal language model.
//!
//! Architecture: token embedding → N pre-norm decoder layers (RMSNorm, grouped-query attention
//! with RoPE, SwiGLU MLP) → RMSNorm → LM head (tied to the embedding or not).
//! Touvron et al. 2023, "LLaMA: Open and Efficient Foundation Language Models"; the reference
//! implementation it matches logit for logit is HF transformers' `modeling_llama.py`
//! (and `modeling_mistral.py`, `modeling_qwen2.py`), checked by `tests/model/parity.rs`.
//!
//! The model is one type, [`CausalLm`]; its operations are split by concern:
//! - [`load`] — building it from a `WeightSource` (shapes checked per tensor) and handing its
//!   tensors back under HF names for export;
//! - [`forward`] — the forward pass: plain, with interventions, over a range of layers, with a
//!   KV cache;
//! - [`edit`] — weight edits per [`LinearId`] and vocabulary resizing.

use std::sync::Arc;

use burn::nn::{Embedding, Linear, RmsNorm};
use burn::prelude::*;
use rosetta_kernels::linear::Products;

use crate::config::ModelConfig;
use crate::nn::attention::LayerCache;
use crate::nn::decoder_layer::DecoderLayer;
use crate::nn::projection::PackedLinear;
use crate::nn::rotary::RotaryEmbedding;

pub mod edit;
pub mod forward;
pub mod load;

pub use edit::VocabRow;

#[derive(Module, Debug)]
pub struct CausalLm {
    pub embed_tokens: Embedding,
    pub layers: Vec<DecoderLayer>,
    pub norm: RmsNorm,
    /// `None` when the head is tied to `embed_tokens`.
    pub lm_head: Option<Linear>,
    /// The head packed for the quantized kernels (tied or not), when loading packed it; logits
    /// use it over the f32 copy. Dropped by any edit of the embedding or head.
    #[module(skip)]
    pub packed_head: Option<Arc<PackedLinear>>,
    #[module(skip)]
    config: ModelConfig,
    #[module(skip)]
    rope: RotaryEmbedding,
    /// How the dense projections' weight products multiply under training on the CPU
    /// (`rosetta_kernels::linear::Products`): f32 unless a training step's compute copy asks for
    /// bf16 (`precision = "bf16"`, see `rosetta_train::precision`).
    #[module(skip)]
    dense_products: Products,
    /// Whether a training pass checkpoints its decoder layers (see `nn::checkpoint`).
    #[module(skip)]
    checkpoint_layers: bool,
}

/// Keys and values of the positions processed so far, for incremental decoding.
#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<LayerCache>,
    /// Per row, whether each cached position is a real token.
    key_valid: Vec<Vec<bool>>,
    /// Per row, the position id the next real token gets.
    next_position: Vec<i64>,
}

impl KvCache {
    /// A cache whose buffers start at the first call's size and double when full.
    pub fn new(num_layers: usize, batch: usize) -> Self {
        Self::with_capacity(num_layers, batch, 0)
    }

    /// A cache that reserves `positions` positions per layer at the first call, so a generation
    /// of known length (prompt plus new tokens) allocates its keys and values once.
    pub fn with_capacity(num_layers: usize, batch: usize, positions: usize) -> Self {
        KvCache {
            layers: vec![LayerCache::reserving(positions); num_layers],
            key_valid: vec![Vec::new(); batch],
            next_position: vec![0; batch],
        }
    }

    pub fn len(&self) -> usize {
        self.key_valid.first().map_or(0, Vec::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn batch(&self) -> usize {
        self.key_valid.len()
    }

    /// Positions each layer's buffers hold room for before they grow (0 before the first call).
    pub fn capacity(&self) -> usize {
        self.layers.first().map_or(0, LayerCache::capacity)
    }
}

impl CausalLm {
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The same model with its dense projections' weight products in `products` (see the
    /// field's docs); parameters are shared, not copied.
    pub fn with_dense_products(mut self, products: Products) -> Self {
        self.dense_products = products;
        self
    }

    pub fn dense_products(&self) -> Products {
        self.dense_products
    }

    /// The same model with activation checkpointing by decoder layer on or off (`nn::checkpoint`):
    /// an f32 training pass on the CPU or a GPU backend keeps each layer's input only and replays
    /// the layer in backward — less memory for long sequences, one more forward per layer. Other
    /// passes (no autodiff, a KV cache, feature statistics, a cast precision) run as they always do.
    pub fn with_layer_checkpointing(mut self, on: bool) -> Self {
        self.checkpoint_layers = on;
        self
    }

    pub fn checkpoints_layers(&self) -> bool {
        self.checkpoint_layers
    }

    pub fn device(&self) -> Device {
        // The final norm's weight, not the embedding's: a table tied to a packed head is built
        // only when read (`init::embedding_from_packed`).
        self.norm.gamma.val().device()
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Bytes of weights held packed (0 for an all-f32 model).
    pub fn packed_bytes(&self) -> usize {
        self.layers.iter().map(DecoderLayer::packed_bytes).sum::<usize>() + self.packed_head.as_ref().map_or(0, |h| h.weight.memory_bytes())
    }

    /// How many projections are packed, of how many.
    pub fn packed_projections(&self) -> (usize, usize) {
        let packed = self.layers.iter().map(|l| crate::LinearKind::ALL.iter().filter(|&&k| l.packed(k).is_some()).count()).sum();
        (packed, crate::LinearKind::ALL.len() * self.layers.len())
    }
}
