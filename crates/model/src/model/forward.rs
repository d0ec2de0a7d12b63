//! The forward pass of [`CausalLm`]: logits, final hidden states, a range of layers on a given
//! residual, and incremental decoding with a KV cache — each with [`Interventions`] (see
//! [`crate::intervention`]). Positions and masks are derived from the batch on the host.

use burn::prelude::*;

use super::{CausalLm, KvCache};
use crate::batch::TokenBatch;
use crate::error::{ModelError, Result};
use crate::intervention::{CapturedState, Interventions, Pooling, Trace, masked_mean};
use crate::nn::projection::{CpuRoute, Weights, project};
use crate::pass::PassState;

impl CausalLm {
    /// Logits for every position.
    ///
    /// # Shapes
    /// `batch: [b, s] -> [b, s, vocab]`.
    pub fn forward(&self, batch: &TokenBatch) -> Tensor<3> {
        let mut trace = Trace::default();
        let hidden = self.run(batch, &Interventions::none(), &mut trace, None);
        self.logits(hidden)
    }

    /// The trace of a pass, or the error a hook recorded during it.
    fn finish(hidden: Tensor<3>, mut trace: Trace) -> Result<(Tensor<3>, Trace)> {
        match trace.failure.take() {
            Some(error) => Err(error),
            None => Ok((hidden, trace)),
        }
    }

    /// Runs the decoder with interventions, returning the final-norm hidden states
    /// `[b, s, d_model]` and what the interventions recorded.
    pub fn forward_hidden(&self, batch: &TokenBatch, interventions: &Interventions) -> Result<(Tensor<3>, Trace)> {
        self.check_interventions(batch, interventions)?;
        let mut trace = Trace::default();
        let hidden = self.run(batch, interventions, &mut trace, None);
        Self::finish(hidden, trace)
    }

    /// Runs only the decoder layers `layers` on `hidden`, the residual stream at site
    /// `layers.start` of the same `batch` (`None` when the range starts at 0: the embeddings).
    /// Returns the residual at site `layers.end` — always the raw residual, never normed (the
    /// final norm belongs to the full forward) — and what the interventions recorded.
    ///
    /// The call covers residual sites `layers.start..=layers.end`: interventions there apply
    /// (at the input site too), and feature statistics of the linear layers in `layers`.
    /// Interventions outside are an error, not silently dropped; when chaining ranges, the shared
    /// site belongs to both calls, so give its intervention to one of them.
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
        let sites = layers.start..=layers.end;
        let outside_sites: Vec<usize> = interventions.sites().into_iter().filter(|s| !sites.contains(s)).collect();
        if !outside_sites.is_empty() {
            return Err(ModelError::invalid(format!(
                "interventions at residual sites {outside_sites:?} are outside this call's sites {}..={} (layers {layers:?}); \
                 run the range that reaches them",
                layers.start, layers.end
            )));
        }
        if let Some(id) = interventions.feature_stats.iter().find(|id| !layers.contains(&id.layer)) {
            return Err(ModelError::invalid(format!("feature statistics of {id} were asked for, but this call runs layers {layers:?}")));
        }
        let mut trace = Trace::default();
        let out = self.run_layers(batch, interventions, &mut trace, None, hidden, layers);
        Self::finish(out, trace)
    }

    /// The final norm of the residual after the last layer (what [`Self::forward_layers`] over
    /// the last layers returns): the hidden states [`Self::logits`] reads.
    ///
    /// # Shapes
    /// `[b, s, d_model] -> [b, s, d_model]`.
    pub fn final_norm(&self, residual: Tensor<3>) -> Tensor<3> {
        crate::nn::norm::rms_norm(&self.norm, residual, &mut Trace::default())
    }

    /// Logits with interventions.
    pub fn forward_with(&self, batch: &TokenBatch, interventions: &Interventions) -> Result<(Tensor<3>, Trace)> {
        let (hidden, trace) = self.forward_hidden(batch, interventions)?;
        Ok((self.logits(hidden), trace))
    }

    /// Processes `batch` as the continuation of what `cache` holds and returns the logits of the
    /// new positions. The cache grows by `batch.seq` positions.
    pub fn forward_cached(&self, batch: &TokenBatch, cache: &mut KvCache, interventions: &Interventions) -> Result<(Tensor<3>, Trace)> {
        let (hidden, trace) = self.run_cached(batch, cache, interventions)?;
        Ok((self.logits(hidden), trace))
    }

    /// [`Self::forward_cached`] returning the logits of the last position only — what decoding
    /// reads — so a long prompt's prefill never holds `seq × vocab` logits.
    ///
    /// # Shapes
    /// `batch: [b, s] -> [b, vocab]`.
    pub fn forward_cached_last(
        &self,
        batch: &TokenBatch,
        cache: &mut KvCache,
        interventions: &Interventions,
    ) -> Result<(Tensor<2>, Trace)> {
        if batch.seq == 0 {
            return Err(ModelError::invalid("a decoding step needs at least one position"));
        }
        let (hidden, trace) = self.run_cached(batch, cache, interventions)?;
        let [b, s, d] = hidden.dims();
        let last = hidden.slice([0..b, s - 1..s, 0..d]);
        Ok((self.logits(last).reshape([b as i32, -1]), trace))
    }

    /// The final hidden states of the new positions, the cache grown by them.
    fn run_cached(&self, batch: &TokenBatch, cache: &mut KvCache, interventions: &Interventions) -> Result<(Tensor<3>, Trace)> {
        self.check_interventions(batch, interventions)?;
        if batch.segments.is_some() {
            return Err(ModelError::invalid("packed batches (segment ids) cannot be decoded with a KV cache"));
        }
        if cache.batch() != batch.batch {
            return Err(ModelError::invalid(format!("KV cache holds {} rows but the batch has {}", cache.batch(), batch.batch)));
        }
        let mut trace = Trace::default();
        let hidden = self.run(batch, interventions, &mut trace, Some(cache));
        Self::finish(hidden, trace)
    }

    /// Projects final hidden states to vocabulary logits.
    ///
    /// # Shapes
    /// `[b, s, d_model] -> [b, s, vocab]`.
    pub fn logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        // The packed head serves every size its CPU route takes; where that route would
        // dequantise slices for f32 GEMM (many rows, no bf16 dot products), the f32 head is
        // faster. Its shape was checked at load; should it still fail, the f32 head gives the
        // same logits.
        let [b, s, _] = hidden.dims();
        if let Some(head) = &self.packed_head
            && CpuRoute::for_rows(b * s) != CpuRoute::Dequantized
            && let Ok(logits) = project(Weights::Packed(head, None), hidden.clone())
        {
            return logits;
        }
        match &self.lm_head {
            Some(head) => head.forward(hidden),
            None => {
                let [b, s, d] = hidden.dims();
                let weight = self.embed_tokens.weight.val();
                hidden.reshape([b * s, d]).matmul(weight.transpose()).reshape([b as i32, s as i32, -1])
            }
        }
    }

    /// The causal-LM loss of final hidden states against next tokens:
    /// `Σ_i w_i · (logsumexp(z_i) − z_{i, t_i})` with `z` the head's logits, through the head fused
    /// with the loss on the CPU backend (the `[rows, vocab]` logits never exist whole; see
    /// `rosetta_kernels::cross_entropy`) and plain tensor ops elsewhere. The f32 head serves it
    /// (a packed head's twin holds the same values).
    ///
    /// # Shapes
    /// `hidden: [n, d_model]`, `targets`, `row_weights: [n]` → `[1]`.
    pub fn head_loss(&self, hidden: Tensor<2>, targets: &[u32], row_weights: &[f32]) -> Result<Tensor<1>> {
        use rosetta_kernels::cross_entropy::{HeadLayout, linear_cross_entropy};
        let (weight, layout) = match &self.lm_head {
            Some(head) => (head.weight.val(), HeadLayout::VocabColumns),
            None => (self.embed_tokens.weight.val(), HeadLayout::VocabRows),
        };
        // A model computing in bf16 or f16 (mixed-precision training) takes its loss in f32: the
        // log-sum-exp over the vocabulary and the sums are where the narrow types lose most.
        use rosetta_kernels::cast_to;
        let (hidden, weight) = (cast_to(hidden, burn::tensor::DType::F32), cast_to(weight, burn::tensor::DType::F32));
        linear_cross_entropy(hidden, weight, layout, targets, row_weights, self.dense_products)
            .map_err(|e| ModelError::invalid(e.to_string()))
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
        let last_site = self.run_layers(batch, interventions, trace, cache, None, 0..self.layers.len());
        crate::nn::norm::rms_norm(&self.norm, last_site, trace)
    }

    /// Layers `layers` on `input` (the residual at site `layers.start`; `None` embeds the batch's
    /// tokens), intervening at sites `layers.start..=layers.end`. Returns the residual at site
    /// `layers.end`.
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
        let need_valid =
            !batch.all_valid() && (!interventions.feature_stats.is_empty() || interventions.capture.values().any(|p| *p == Pooling::Mean));
        let valid = need_valid.then(|| batch.valid_tensor(&device));

        let mut state = PassState {
            interventions,
            trace,
            valid,
            valid_tokens: batch.valid_tokens(),
            cos,
            sin,
            attention_mask,
            dense_products: self.dense_products,
            checkpoint_layers: self.checkpoint_layers,
            differentiable: false,
        };

        let mut h = match input {
            Some(h) => h,
            None => self.embed(batch, &device),
        };
        let checkpointed = crate::nn::checkpoint::applies(&state, &device, cache.is_some(), h.dtype());
        for i in layers.clone() {
            h = self.intervene_at_site(i, h, batch, &mut state);
            if checkpointed {
                h = crate::nn::checkpoint::forward(&self.layers[i], i, h, &mut state);
                continue;
            }
            let slot = cache.as_mut().map(|c| &mut c.layers[i]);
            h = self.layers[i].forward(i, h, &mut state, slot);
        }
        self.intervene_at_site(layers.end, h, batch, &mut state)
    }

    /// Token embeddings: rows of the packed head while the tied f32 table has not been built
    /// (see `nn::init::embedding_from_packed`), burn's lookup in the table otherwise (and for
    /// ids outside the vocabulary, which the lookup reports as it always has).
    fn embed(&self, batch: &TokenBatch, device: &Device) -> Tensor<3> {
        if let Some(head) = &self.packed_head
            && self.lm_head.is_none()
            && !self.embed_tokens.weight.is_initialized()
            && batch.ids.iter().all(|&id| (id as usize) < head.weight.rows())
        {
            let d = head.weight.cols();
            let mut values = Vec::with_capacity(batch.ids.len() * d);
            for &id in &batch.ids {
                values.extend(head.weight.dequantize_rows(id as usize..id as usize + 1));
            }
            return Tensor::from_data(TensorData::new(values, [batch.batch, batch.seq, d]), device);
        }
        self.embed_tokens.forward(batch.tokens_tensor(device))
    }

    fn intervene_at_site(&self, site: usize, mut h: Tensor<3>, batch: &TokenBatch, state: &mut PassState<'_>) -> Tensor<3> {
        if state.interventions.is_empty() {
            return h;
        }
        for shift in state.interventions.shifts.iter().filter(|s| s.site == site) {
            let vector = rosetta_kernels::cast_like(shift.vector.clone(), &h);
            h = h + vector;
        }
        if let Some(pooling) = state.interventions.capture.get(&site) {
            // Captured states are f32 whatever the pass computes in (a mixed-precision training
            // step's losses over them, ShifCon's contrastive one, are taken in f32).
            let seen = rosetta_kernels::cast_to(h.clone(), burn::tensor::DType::F32);
            let captured = match pooling {
                Pooling::PerToken => CapturedState::PerToken(seen),
                Pooling::Mean => {
                    let valid = state.valid.clone().unwrap_or_else(|| batch.valid_tensor(&seen.device()));
                    CapturedState::Pooled(masked_mean(seen, valid))
                }
                Pooling::MeanAfterFirst => CapturedState::Pooled(masked_mean(seen.clone(), batch.valid_after_first_tensor(&seen.device()))),
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Padding;
    use crate::intervention::LinearId;
    use crate::tiny::tiny_config;
    use crate::weights::random::RandomWeights;

    fn tiny_model() -> CausalLm {
        let config = tiny_config();
        CausalLm::from_source(&config, &RandomWeights::new(&config, 3, 0.2), &crate::DeviceKind::Cpu.device().unwrap()).unwrap()
    }

    fn max_diff(a: Tensor<3>, b: Tensor<3>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    #[test]
    fn a_layer_range_returns_its_last_site_and_refuses_interventions_outside_it() {
        let model = tiny_model();
        let n = model.num_layers();
        let batch = TokenBatch::pad(&[vec![256, 10, 20, 30], vec![256, 40]], Padding::Right, 0).unwrap();

        // Site n, raw: the full forward is its final norm; chained ranges reach the same site.
        let (site_n, _) = model.forward_layers(&batch, None, 0..n, &Interventions::none()).unwrap();
        let (normed, _) = model.forward_hidden(&batch, &Interventions::none()).unwrap();
        assert!(max_diff(model.norm.forward(site_n.clone()), normed) < 1e-6);
        let (site_1, _) = model.forward_layers(&batch, None, 0..1, &Interventions::none()).unwrap();
        let (chained, _) = model.forward_layers(&batch, Some(site_1), 1..n, &Interventions::none()).unwrap();
        assert!(max_diff(chained, site_n.clone()) < 1e-6);

        // The end site is inside the range: its capture is the returned residual.
        let capture = Interventions::none().capture(1, Pooling::PerToken);
        let (out, trace) = model.forward_layers(&batch, None, 0..1, &capture).unwrap();
        let captured = trace.residual[&1].per_token().cloned().unwrap();
        assert!(max_diff(captured, out) == 0.0);

        // Outside the range: an error naming the sites, not a silently empty trace.
        let err = model.forward_layers(&batch, None, 0..1, &Interventions::none().capture(2, Pooling::Mean)).unwrap_err().to_string();
        assert!(err.contains("[2]") && err.contains("0..=1"), "{err}");
        let stats = Interventions::none().with_feature_stats([LinearId::new(1, crate::LinearKind::QProj)]);
        let err = model.forward_layers(&batch, None, 0..1, &stats).unwrap_err().to_string();
        assert!(err.contains("layers.1.self_attn.q_proj"), "{err}");

        // Feature statistics are recorded for exactly the linear layers asked for.
        let one = LinearId::new(0, crate::LinearKind::DownProj);
        let (_, trace) = model.forward_hidden(&batch, &Interventions::none().with_feature_stats([one])).unwrap();
        assert_eq!(trace.feature_stats.keys().copied().collect::<Vec<_>>(), vec![one]);
        let (_, trace) = model.forward_hidden(&batch, &Interventions::none().with_feature_stats(model.linear_ids())).unwrap();
        assert_eq!(trace.feature_stats.len(), 7 * n);
    }
}
