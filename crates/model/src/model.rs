//! The LLaMA-family causal language model.
//!
//! Architecture: token embedding → N pre-norm decoder layers (RMSNorm, grouped-query attention
//! with RoPE, SwiGLU MLP) → RMSNorm → LM head (tied to the embedding or not).
//! Touvron et al. 2023, "LLaMA: Open and Efficient Foundation Language Models"; the reference
//! implementation it matches logit for logit is HF transformers' `modeling_llama.py`
//! (and `modeling_mistral.py`, `modeling_qwen2.py`), checked by `tests/parity`.

use burn::module::Param;
use burn::nn::{Embedding, Linear, RmsNorm};
use burn::prelude::*;

use crate::batch::TokenBatch;
use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::intervention::{CapturedState, Interventions, LinearId, LinearKind, Pooling, Trace, masked_mean};
use crate::nn::attention::{LayerCache, SelfAttention};
use crate::nn::decoder_layer::DecoderLayer;
use crate::nn::init;
use crate::nn::mlp::SwiGluMlp;
use crate::nn::rotary::RotaryEmbedding;
use crate::pass::PassState;
use crate::weights::{HostTensor, WeightSource, names};

#[derive(Module, Debug)]
pub struct CausalLm {
    pub embed_tokens: Embedding,
    pub layers: Vec<DecoderLayer>,
    pub norm: RmsNorm,
    /// `None` when the head is tied to `embed_tokens`.
    pub lm_head: Option<Linear>,
    #[module(skip)]
    config: ModelConfig,
    #[module(skip)]
    rope: RotaryEmbedding,
}

/// Keys and values of the positions processed so far, for incremental decoding.
#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<Option<LayerCache>>,
    /// Per row, whether each cached position is a real token.
    key_valid: Vec<Vec<bool>>,
    /// Per row, the position id the next real token gets.
    next_position: Vec<i64>,
}

impl KvCache {
    pub fn new(num_layers: usize, batch: usize) -> Self {
        KvCache { layers: vec![None; num_layers], key_valid: vec![Vec::new(); batch], next_position: vec![0; batch] }
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
}

/// A row of a resized vocabulary.
#[derive(Debug, Clone)]
pub enum VocabRow {
    /// Copy row `j` of the current embedding (and head).
    Existing(usize),
    /// A new row: its input embedding and, for an untied head, its output row.
    New { input: Vec<f32>, output: Option<Vec<f32>> },
}

impl CausalLm {
    /// Builds the model from a checkpoint, checking every tensor's presence and shape.
    pub fn from_source(config: &ModelConfig, source: &dyn WeightSource, device: &Device) -> Result<Self> {
        config.validate(source.origin())?;
        let d = config.hidden_size;
        let q_out = config.num_attention_heads * config.head_dim;
        let kv_out = config.num_key_value_heads * config.head_dim;
        let read = |name: &str, expected: &[usize]| -> Result<HostTensor> {
            let found = source.shape(name).ok_or_else(|| ModelError::MissingTensor {
                origin: source.origin().clone(),
                tensor: name.to_string(),
                architecture: config.architecture.model_type().to_string(),
            })?;
            if found != expected {
                return Err(ModelError::ShapeMismatch {
                    origin: source.origin_of(name),
                    tensor: name.to_string(),
                    expected: expected.to_vec(),
                    found,
                });
            }
            source.read(name)
        };
        let linear = |prefix: String, out: usize, inp: usize, bias: bool| -> Result<Linear> {
            let weight = read(&format!("{prefix}.weight"), &[out, inp])?;
            let bias = if bias { Some(read(&format!("{prefix}.bias"), &[out])?) } else { None };
            Ok(init::linear(weight, bias, device))
        };

        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = |rest: &str| names::layer(i, rest);
            layers.push(DecoderLayer {
                input_layernorm: init::rms_norm(read(&p("input_layernorm.weight"), &[d])?, config.rms_norm_eps, device),
                self_attn: SelfAttention {
                    q_proj: linear(p("self_attn.q_proj"), q_out, d, config.qkv_bias)?,
                    k_proj: linear(p("self_attn.k_proj"), kv_out, d, config.qkv_bias)?,
                    v_proj: linear(p("self_attn.v_proj"), kv_out, d, config.qkv_bias)?,
                    o_proj: linear(p("self_attn.o_proj"), d, q_out, config.o_bias)?,
                    num_heads: config.num_attention_heads,
                    num_kv_heads: config.num_key_value_heads,
                    head_dim: config.head_dim,
                },
                post_attention_layernorm: init::rms_norm(read(&p("post_attention_layernorm.weight"), &[d])?, config.rms_norm_eps, device),
                mlp: SwiGluMlp {
                    gate_proj: linear(p("mlp.gate_proj"), config.intermediate_size, d, config.mlp_bias)?,
                    up_proj: linear(p("mlp.up_proj"), config.intermediate_size, d, config.mlp_bias)?,
                    down_proj: linear(p("mlp.down_proj"), d, config.intermediate_size, config.mlp_bias)?,
                },
            });
        }
        let embed_tokens = init::embedding(read(names::EMBED, &[config.vocab_size, d])?, device);
        let lm_head = if config.tie_word_embeddings {
            None
        } else {
            Some(init::linear(read(names::LM_HEAD, &[config.vocab_size, d])?, None, device))
        };
        Ok(CausalLm {
            embed_tokens,
            layers,
            norm: init::rms_norm(read(names::FINAL_NORM, &[d])?, config.rms_norm_eps, device),
            lm_head,
            config: config.clone(),
            rope: RotaryEmbedding::new(config),
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn device(&self) -> Device {
        self.embed_tokens.weight.val().device()
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Logits for every position.
    ///
    /// # Shapes
    /// `batch: [b, s] -> [b, s, vocab]`.
    pub fn forward(&self, batch: &TokenBatch) -> Tensor<3> {
        let mut trace = Trace::default();
        let hidden = self.run(batch, &Interventions::none(), &mut trace, None);
        self.logits(hidden)
    }

    /// Runs the decoder with interventions, returning the final-norm hidden states
    /// `[b, s, d_model]` and what the interventions recorded.
    pub fn forward_hidden(&self, batch: &TokenBatch, interventions: &Interventions) -> Result<(Tensor<3>, Trace)> {
        self.check_interventions(batch, interventions)?;
        let mut trace = Trace::default();
        let hidden = self.run(batch, interventions, &mut trace, None);
        Ok((hidden, trace))
    }

    /// Runs only the decoder layers `layers` on `hidden`, the residual stream at site
    /// `layers.start` of the same `batch` (`None` when the range starts at 0: the embeddings).
    /// Returns the residual at site `layers.end` — or, when the range ends at the last layer, the
    /// final-norm output — and what the interventions recorded inside the range.
    ///
    /// Layer-wise algorithms use it to feed each layer the outputs of already-edited layers
    /// without recomputing them (Wanda prunes layer `l` on the outputs of pruned layers `< l`).
    ///
    /// # Shapes
    /// `hidden: [b, s, d_model] -> [b, s, d_model]`.
    pub fn forward_layers(
        &self,
        batch: &TokenBatch,
        hidden: Option<Tensor<3>>,
        layers: std::ops::Range<usize>,
        interventions: &Interventions,
    ) -> Result<(Tensor<3>, Trace)> {
        self.check_interventions(batch, interventions)?;
        let n = self.num_layers();
        if layers.start > layers.end || layers.end > n {
            return Err(ModelError::invalid(format!("layers {layers:?} are outside the model's 0..{n}")));
        }
        if hidden.is_none() && layers.start != 0 {
            return Err(ModelError::invalid(format!("layers {layers:?} start after 0 and need the residual at site {}", layers.start)));
        }
        if let Some(h) = &hidden {
            let expected = [batch.batch, batch.seq, self.config.hidden_size];
            if h.dims() != expected {
                return Err(ModelError::invalid(format!("residual has shape {:?}, expected {expected:?}", h.dims())));
            }
        }
        let mut trace = Trace::default();
        let out = self.run_layers(batch, interventions, &mut trace, None, hidden, layers);
        Ok((out, trace))
    }

    /// Logits with interventions.
    pub fn forward_with(&self, batch: &TokenBatch, interventions: &Interventions) -> Result<(Tensor<3>, Trace)> {
        let (hidden, trace) = self.forward_hidden(batch, interventions)?;
        Ok((self.logits(hidden), trace))
    }

    /// Processes `batch` as the continuation of what `cache` holds and returns the logits of the
    /// new positions. The cache grows by `batch.seq` positions.
    pub fn forward_cached(&self, batch: &TokenBatch, cache: &mut KvCache, interventions: &Interventions) -> Result<(Tensor<3>, Trace)> {
        self.check_interventions(batch, interventions)?;
        if batch.segments.is_some() {
            return Err(ModelError::invalid("packed batches (segment ids) cannot be decoded with a KV cache"));
        }
        if cache.batch() != batch.batch {
            return Err(ModelError::invalid(format!("KV cache holds {} rows but the batch has {}", cache.batch(), batch.batch)));
        }
        let mut trace = Trace::default();
        let hidden = self.run(batch, interventions, &mut trace, Some(cache));
        Ok((self.logits(hidden), trace))
    }

    /// Projects final hidden states to vocabulary logits.
    ///
    /// # Shapes
    /// `[b, s, d_model] -> [b, s, vocab]`.
    pub fn logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        match &self.lm_head {
            Some(head) => head.forward(hidden),
            None => {
                let [b, s, d] = hidden.dims();
                let weight = self.embed_tokens.weight.val();
                hidden.reshape([b * s, d]).matmul(weight.transpose()).reshape([b as i32, s as i32, -1])
            }
        }
    }

    fn check_interventions(&self, batch: &TokenBatch, interventions: &Interventions) -> Result<()> {
        let n = self.num_layers();
        if let Some(site) = interventions.max_site()
            && site > n
        {
            return Err(ModelError::invalid(format!(
                "residual site {site} is outside the model: this model has {n} layers, so sites are 0..={n}"
            )));
        }
        for shift in &interventions.shifts {
            let [_, _, d] = shift.vector.dims();
            if d != self.config.hidden_size {
                return Err(ModelError::invalid(format!(
                    "shift vector at site {} has {d} dimensions, the model has {}",
                    shift.site, self.config.hidden_size
                )));
            }
            let [rows, positions, _] = shift.vector.dims();
            if (rows != 1 && rows != batch.batch) || (positions != 1 && positions != batch.seq) {
                return Err(ModelError::invalid(format!(
                    "shift at site {} has shape {:?}; a batch of {}×{} takes [1 or {}, 1 or {}, d_model]",
                    shift.site,
                    shift.vector.dims(),
                    batch.batch,
                    batch.seq,
                    batch.batch,
                    batch.seq
                )));
            }
        }
        Ok(())
    }

    /// The decoder proper. Positions and masks are derived from the batch (and cache) on the host.
    fn run(&self, batch: &TokenBatch, interventions: &Interventions, trace: &mut Trace, cache: Option<&mut KvCache>) -> Tensor<3> {
        self.run_layers(batch, interventions, trace, cache, None, 0..self.layers.len())
    }

    /// Layers `layers` on `input` (the residual at site `layers.start`; `None` embeds the batch's
    /// tokens). Returns the residual at site `layers.end`, or the final-norm output when the
    /// range reaches the last layer.
    fn run_layers(
        &self,
        batch: &TokenBatch,
        interventions: &Interventions,
        trace: &mut Trace,
        mut cache: Option<&mut KvCache>,
        input: Option<Tensor<3>>,
        layers: std::ops::Range<usize>,
    ) -> Tensor<3> {
        let device = self.device();
        let (b, s) = (batch.batch, batch.seq);
        let past = cache.as_ref().map_or(0, |c| c.len());

        // Position ids count real tokens only, so left padding does not shift them (as HF's
        // `generate` does with `attention_mask.cumsum(-1) - 1`).
        let mut positions = Vec::with_capacity(b * s);
        for row in 0..b {
            let (_, valid) = batch.row(row);
            let segments = batch.row_segments(row);
            let mut next = cache.as_ref().map_or(0, |c| c.next_position[row]);
            for (j, &v) in valid.iter().enumerate() {
                // A packed document starts again at position 0.
                if let Some(seg) = segments
                    && j > 0
                    && seg[j] != seg[j - 1]
                {
                    next = 0;
                }
                positions.push(next);
                if v {
                    next += 1;
                }
            }
            if let Some(c) = cache.as_mut() {
                c.next_position[row] = next;
                c.key_valid[row].extend_from_slice(valid);
            }
        }
        let (cos, sin) = self.rope.tables(&positions, b, s, &device);

        let key_valid: Vec<&[bool]> = match cache.as_ref() {
            Some(c) => c.key_valid.iter().map(Vec::as_slice).collect(),
            None => (0..b).map(|r| batch.row(r).1).collect(),
        };
        let segments: Option<Vec<&[u32]>> = batch.segments.as_ref().map(|_| (0..b).filter_map(|r| batch.row_segments(r)).collect());
        let attention_mask = self.attention_mask(&key_valid, segments.as_deref(), past, s, &device);
        let need_valid = !batch.all_valid() && (interventions.feature_stats || interventions.capture.values().any(|p| *p == Pooling::Mean));
        let valid = need_valid.then(|| batch.valid_tensor(&device));

        let mut state = PassState { interventions, trace, valid, valid_tokens: batch.valid_tokens(), cos, sin, attention_mask };

        let n = self.layers.len();
        let mut h = match input {
            Some(h) => h,
            None => self.embed_tokens.forward(batch.tokens_tensor(&device)),
        };
        for i in layers.clone() {
            h = self.intervene_at_site(i, h, batch, &mut state);
            let slot = cache.as_mut().map(|c| &mut c.layers[i]);
            h = self.layers[i].forward(i, h, &mut state, slot);
        }
        if layers.end < n {
            return h;
        }
        h = self.intervene_at_site(n, h, batch, &mut state);
        self.norm.forward(h)
    }

    fn intervene_at_site(&self, site: usize, mut h: Tensor<3>, batch: &TokenBatch, state: &mut PassState<'_>) -> Tensor<3> {
        if state.interventions.is_empty() {
            return h;
        }
        for shift in state.interventions.shifts.iter().filter(|s| s.site == site) {
            h = h + shift.vector.clone();
        }
        if let Some(pooling) = state.interventions.capture.get(&site) {
            let captured = match pooling {
                Pooling::PerToken => CapturedState::PerToken(h.clone()),
                Pooling::Mean => {
                    let valid = state.valid.clone().unwrap_or_else(|| batch.valid_tensor(&h.device()));
                    CapturedState::Pooled(masked_mean(h.clone(), valid))
                }
                Pooling::MeanAfterFirst => CapturedState::Pooled(masked_mean(h.clone(), batch.valid_after_first_tensor(&h.device()))),
            };
            state.trace.residual.insert(site, captured);
        }
        h
    }

    /// The attention mask for `s` new queries over `past + s` keys, or `None` when plain causal
    /// attention is exact (no padding among the keys, no packed documents, no sliding window in
    /// reach). `segments` (packed batches, no cache) blocks attention across documents.
    fn attention_mask(
        &self,
        key_valid: &[&[bool]],
        segments: Option<&[&[u32]]>,
        past: usize,
        s: usize,
        device: &Device,
    ) -> Option<Tensor<4, Bool>> {
        let kv_len = past + s;
        let window = self.config.sliding_window.filter(|&w| kv_len > w);
        let any_padding = key_valid.iter().any(|row| row.iter().any(|v| !v));
        let any_boundary = segments.is_some_and(|rows| rows.iter().any(|r| r.windows(2).any(|w| w[0] != w[1])));
        if !any_padding && !any_boundary && window.is_none() {
            return None;
        }
        let b = key_valid.len();
        let mut masked = Vec::with_capacity(b * s * kv_len);
        for (r, row) in key_valid.iter().enumerate() {
            let row_segments = segments.map(|rows| rows[r]);
            for q in 0..s {
                let q_abs = past + q;
                for (k, &valid) in row.iter().enumerate() {
                    let future = k > q_abs;
                    let outside_window = window.is_some_and(|w| q_abs - k.min(q_abs) >= w);
                    let other_document = row_segments.is_some_and(|seg| seg[k] != seg[q_abs]);
                    // A padding query keeps its own position so its row never becomes all -inf
                    // (which would put NaN into values that later layers multiply by 0).
                    let blocked = future || outside_window || other_document || (!valid && k != q_abs);
                    masked.push(blocked);
                }
            }
        }
        Some(Tensor::from_data(TensorData::new(masked, [b, 1, s, kv_len]), device))
    }

    // ---- weight edits -------------------------------------------------------------------------

    /// Every linear layer of the decoder, in layer order.
    pub fn linear_ids(&self) -> Vec<LinearId> {
        (0..self.layers.len()).flat_map(|l| LinearKind::ALL.into_iter().map(move |k| LinearId::new(l, k))).collect()
    }

    pub fn linear(&self, id: LinearId) -> Result<&Linear> {
        let layer = self.layers.get(id.layer).ok_or_else(|| self.layer_error(id.layer))?;
        Ok(match id.kind {
            LinearKind::QProj => &layer.self_attn.q_proj,
            LinearKind::KProj => &layer.self_attn.k_proj,
            LinearKind::VProj => &layer.self_attn.v_proj,
            LinearKind::OProj => &layer.self_attn.o_proj,
            LinearKind::GateProj => &layer.mlp.gate_proj,
            LinearKind::UpProj => &layer.mlp.up_proj,
            LinearKind::DownProj => &layer.mlp.down_proj,
        })
    }

    pub fn linear_mut(&mut self, id: LinearId) -> Result<&mut Linear> {
        let error = self.layer_error(id.layer);
        let layer = self.layers.get_mut(id.layer).ok_or(error)?;
        Ok(match id.kind {
            LinearKind::QProj => &mut layer.self_attn.q_proj,
            LinearKind::KProj => &mut layer.self_attn.k_proj,
            LinearKind::VProj => &mut layer.self_attn.v_proj,
            LinearKind::OProj => &mut layer.self_attn.o_proj,
            LinearKind::GateProj => &mut layer.mlp.gate_proj,
            LinearKind::UpProj => &mut layer.mlp.up_proj,
            LinearKind::DownProj => &mut layer.mlp.down_proj,
        })
    }

    fn layer_error(&self, layer: usize) -> ModelError {
        ModelError::invalid(format!("layer {layer} does not exist: this model has layers 0..{}", self.layers.len()))
    }

    /// A linear weight in HF orientation `[out, in]`.
    pub fn weight(&self, id: LinearId) -> Result<Tensor<2>> {
        Ok(self.linear(id)?.weight.val().transpose())
    }

    /// Replaces a linear weight, given in HF orientation `[out, in]`.
    pub fn set_weight(&mut self, id: LinearId, weight: Tensor<2>) -> Result<()> {
        let linear = self.linear_mut(id)?;
        let [d_in, d_out] = linear.weight.val().dims();
        if weight.dims() != [d_out, d_in] {
            return Err(ModelError::invalid(format!("{id}: new weight has shape {:?}, expected [{d_out}, {d_in}]", weight.dims())));
        }
        linear.weight = linear.weight.clone().map(|_| weight.transpose());
        Ok(())
    }

    // ---- vocabulary ---------------------------------------------------------------------------

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

    // ---- export -------------------------------------------------------------------------------

    /// Every parameter under its HF name and in HF layout, read back to the host.
    pub fn to_hf_tensors(&self) -> Vec<(String, HostTensor)> {
        let host2 = |t: Tensor<2>| {
            let dims = t.dims();
            HostTensor::new(dims.to_vec(), t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap_or_default())
        };
        let host1 = |t: Tensor<1>| {
            let dims = t.dims();
            HostTensor::new(dims.to_vec(), t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap_or_default())
        };
        let linear = |prefix: String, l: &Linear, out: &mut Vec<(String, HostTensor)>| {
            out.push((format!("{prefix}.weight"), host2(l.weight.val().transpose())));
            if let Some(b) = &l.bias {
                out.push((format!("{prefix}.bias"), host1(b.val())));
            }
        };
        let mut out = vec![(names::EMBED.to_string(), host2(self.embed_tokens.weight.val()))];
        for (i, layer) in self.layers.iter().enumerate() {
            let p = |rest: &str| names::layer(i, rest);
            out.push((p("input_layernorm.weight"), host1(layer.input_layernorm.gamma.val())));
            out.push((p("post_attention_layernorm.weight"), host1(layer.post_attention_layernorm.gamma.val())));
            linear(p("self_attn.q_proj"), &layer.self_attn.q_proj, &mut out);
            linear(p("self_attn.k_proj"), &layer.self_attn.k_proj, &mut out);
            linear(p("self_attn.v_proj"), &layer.self_attn.v_proj, &mut out);
            linear(p("self_attn.o_proj"), &layer.self_attn.o_proj, &mut out);
            linear(p("mlp.gate_proj"), &layer.mlp.gate_proj, &mut out);
            linear(p("mlp.up_proj"), &layer.mlp.up_proj, &mut out);
            linear(p("mlp.down_proj"), &layer.mlp.down_proj, &mut out);
        }
        out.push((names::FINAL_NORM.to_string(), host1(self.norm.gamma.val())));
        if let Some(head) = &self.lm_head {
            out.push((names::LM_HEAD.to_string(), host2(head.weight.val().transpose())));
        }
        out
    }
}
