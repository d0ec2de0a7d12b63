//! Interventions on a forward pass: what every method and the lab needs to look inside the model
//! or steer it, designed once.
//!
//! 1. **Capture** the residual stream at any site, per token or mean-pooled over the valid
//!    (non-padding) tokens — language vectors, subspace distances, contrastive training.
//! 2. **Shift**: add a vector to the residual stream at a site — ShifCon's shift toward English
//!    and back, LRP2-style steering. One vector per batch row, so English rows can be left alone.
//! 3. **Feature statistics** of every linear layer's input: per input feature the sum of squares,
//!    the max |x| and the per-sequence L2 norms over valid tokens — Wanda scores and Kim et al.'s
//!    magnitude features.
//! 4. **Weight edits** (masks, replacements) are model operations, see
//!    [`crate::model::CausalLm::set_weight`] (pruning masks the weight with `rosetta-kernels`).
//! 5. Beside the hooks, one precision choice of the pass: dense projections on the bf16 route
//!    ([`Interventions::dense_in_bf16`]).
//!
//! **Residual sites** are numbered `0..=num_layers`: site `l` is the input of decoder layer `l`
//! (= the output of layer `l-1`); site 0 is the embedding output and site `num_layers` the last
//! layer's output *before* the final norm. HF's `output_hidden_states[l]` equals site `l` except
//! for the last entry, to which HF applies the final norm.
//!
//! An empty [`Interventions`] costs nothing: every hook is a branch on an empty collection.

use std::collections::{BTreeMap, BTreeSet};

use burn::prelude::*;

/// The seven linear projections of a decoder layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinearKind {
    QProj,
    KProj,
    VProj,
    OProj,
    GateProj,
    UpProj,
    DownProj,
}

impl LinearKind {
    pub const ALL: [LinearKind; 7] = [
        LinearKind::QProj,
        LinearKind::KProj,
        LinearKind::VProj,
        LinearKind::OProj,
        LinearKind::GateProj,
        LinearKind::UpProj,
        LinearKind::DownProj,
    ];

    /// The module path inside an HF decoder layer (`self_attn.q_proj`, `mlp.down_proj`, ...).
    pub fn hf_path(self) -> &'static str {
        match self {
            LinearKind::QProj => "self_attn.q_proj",
            LinearKind::KProj => "self_attn.k_proj",
            LinearKind::VProj => "self_attn.v_proj",
            LinearKind::OProj => "self_attn.o_proj",
            LinearKind::GateProj => "mlp.gate_proj",
            LinearKind::UpProj => "mlp.up_proj",
            LinearKind::DownProj => "mlp.down_proj",
        }
    }

    /// Short name as used in LoRA target lists (`q_proj`, ...).
    pub fn short_name(self) -> &'static str {
        self.hf_path().rsplit('.').next().unwrap_or("")
    }

    pub fn from_short_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.short_name() == name)
    }

    /// The weight's shape `[out, in]` (HF orientation) in a model of `config`.
    pub fn shape(self, config: &crate::config::ModelConfig) -> [usize; 2] {
        let d = config.hidden_size;
        let q = config.num_attention_heads * config.head_dim;
        let kv = config.num_key_value_heads * config.head_dim;
        let ffn = config.intermediate_size;
        match self {
            LinearKind::QProj => [q, d],
            LinearKind::KProj | LinearKind::VProj => [kv, d],
            LinearKind::OProj => [d, q],
            LinearKind::GateProj | LinearKind::UpProj => [ffn, d],
            LinearKind::DownProj => [d, ffn],
        }
    }

    /// Whether the projection has a bias in a model of `config` (qwen2's q/k/v, optional
    /// `attention_bias` / `mlp_bias` in llama).
    pub fn has_bias(self, config: &crate::config::ModelConfig) -> bool {
        match self {
            LinearKind::QProj | LinearKind::KProj | LinearKind::VProj => config.qkv_bias,
            LinearKind::OProj => config.o_bias,
            LinearKind::GateProj | LinearKind::UpProj | LinearKind::DownProj => config.mlp_bias,
        }
    }
}

/// One linear layer of the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct LinearId {
    pub layer: usize,
    pub kind: LinearKind,
}

impl LinearId {
    pub fn new(layer: usize, kind: LinearKind) -> Self {
        LinearId { layer, kind }
    }

    /// HF parameter name of the weight (`model.layers.3.self_attn.q_proj.weight`).
    pub fn hf_weight_name(&self) -> String {
        format!("model.layers.{}.{}.weight", self.layer, self.kind.hf_path())
    }
}

impl std::fmt::Display for LinearId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "layers.{}.{}", self.layer, self.kind.hf_path())
    }
}

/// How a captured residual state is reduced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Keep `[batch, seq, d_model]`.
    PerToken,
    /// Mean over the valid (non-padding) tokens of each row: `[batch, d_model]`.
    Mean,
    /// Mean over the valid tokens after each row's first one: `[batch, d_model]`. The first
    /// token (the document start) is an attention sink whose huge, language-independent state
    /// would dominate a sentence mean; sentence representations for geometry leave it out.
    MeanAfterFirst,
}

/// A vector added to the residual stream at a site.
#[derive(Debug, Clone)]
pub struct ResidualShift {
    pub site: usize,
    /// `[rows, positions, d_model]`, broadcast over the pass: `rows` is the batch size (one
    /// vector per row; a zero row leaves that sequence alone) or 1 for all rows; `positions` is the
    /// sequence length (one vector per token: packed rows mixing languages) or 1 for all positions.
    pub vector: Tensor<3>,
}

/// What to do during one forward pass.
#[derive(Debug, Clone, Default)]
pub struct Interventions {
    pub capture: BTreeMap<usize, Pooling>,
    pub shifts: Vec<ResidualShift>,
    /// The linear layers whose input statistics to record (empty: none).
    pub feature_stats: BTreeSet<LinearId>,
    /// Not a hook but a precision the pass may use: dense f32 projections run on the CPU's bf16
    /// route (activations and weights rounded to bf16, f32 sums) wherever packed ones do — many
    /// rows, a CPU with AVX-512 BF16. For inference passes of a model loaded quantized whose
    /// edited projections became dense: Wanda's pass over a pruned layer (`rosetta-prune`).
    pub dense_in_bf16: bool,
}

impl Interventions {
    pub fn none() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.capture.is_empty() && self.shifts.is_empty() && self.feature_stats.is_empty()
    }

    /// See [`Interventions::dense_in_bf16`].
    pub fn with_dense_in_bf16(mut self, allowed: bool) -> Self {
        self.dense_in_bf16 = allowed;
        self
    }

    pub fn capture(mut self, site: usize, pooling: Pooling) -> Self {
        self.capture.insert(site, pooling);
        self
    }

    /// Adds `vector` (`[batch, d_model]` or `[1, d_model]`) to every position at `site`.
    pub fn shift(mut self, site: usize, vector: Tensor<2>) -> Self {
        self.shifts.push(ResidualShift { site, vector: vector.unsqueeze_dim(1) });
        self
    }

    /// Adds a vector per token (`[batch, seq, d_model]`) at `site`.
    pub fn shift_per_token(mut self, site: usize, vector: Tensor<3>) -> Self {
        self.shifts.push(ResidualShift { site, vector });
        self
    }

    /// Records the input statistics of the linear layers `ids` (all of a model's:
    /// `CausalLm::linear_ids`; one layer's: `CausalLm::layer_linear_ids`).
    pub fn with_feature_stats(mut self, ids: impl IntoIterator<Item = LinearId>) -> Self {
        self.feature_stats.extend(ids);
        self
    }

    /// The part that acts on the residual stream up to site `site`: captures and shifts at sites
    /// ≤ `site`, statistics of layers before it. A caller that stops at a site (sentence states
    /// at a band's sites, say) leaves out what lies beyond it with this, explicitly — the model
    /// refuses interventions outside the layers it runs.
    pub fn up_to_site(&self, site: usize) -> Self {
        Interventions {
            capture: self.capture.iter().filter(|(s, _)| **s <= site).map(|(s, p)| (*s, *p)).collect(),
            shifts: self.shifts.iter().filter(|s| s.site <= site).cloned().collect(),
            feature_stats: self.feature_stats.iter().filter(|id| id.layer < site).copied().collect(),
            dense_in_bf16: self.dense_in_bf16,
        }
    }

    /// Every residual site an intervention names, ascending.
    pub fn sites(&self) -> Vec<usize> {
        let sites: BTreeSet<usize> = self.capture.keys().copied().chain(self.shifts.iter().map(|s| s.site)).collect();
        sites.into_iter().collect()
    }

    /// The largest site an intervention names (to validate against the model's depth).
    pub fn max_site(&self) -> Option<usize> {
        let captured = self.capture.keys().next_back().copied();
        captured.max(self.shifts.iter().map(|s| s.site).max())
    }
}

/// A captured residual state.
#[derive(Debug, Clone)]
pub enum CapturedState {
    PerToken(Tensor<3>),
    Pooled(Tensor<2>),
}

impl CapturedState {
    /// The pooled `[batch, d_model]` tensor, or `None` for per-token captures.
    pub fn pooled(&self) -> Option<&Tensor<2>> {
        match self {
            CapturedState::Pooled(t) => Some(t),
            CapturedState::PerToken(_) => None,
        }
    }

    pub fn per_token(&self) -> Option<&Tensor<3>> {
        match self {
            CapturedState::PerToken(t) => Some(t),
            CapturedState::Pooled(_) => None,
        }
    }
}

/// Per-input-feature activation statistics of one linear layer, over valid tokens.
/// Tensors stay on the device; merge batches with [`FeatureStats::merge`].
#[derive(Debug, Clone)]
pub struct FeatureStats {
    /// Σ over tokens of x_j² — `[d_in]`. ‖X_j‖₂ = sqrt(sum_sq) is Wanda's activation norm.
    pub sum_sq: Tensor<1>,
    /// max over tokens of |x_j| — `[d_in]`.
    pub max_abs: Tensor<1>,
    /// Σ over sequences of that sequence's L2 norm of x_j — `[d_in]`; divided by `sequences`
    /// it is Kim et al.'s "L2 norm over tokens, averaged over prompts".
    pub sum_sequence_norms: Tensor<1>,
    pub tokens: usize,
    pub sequences: usize,
}

impl FeatureStats {
    pub fn merge(self, other: FeatureStats) -> FeatureStats {
        FeatureStats {
            sum_sq: self.sum_sq + other.sum_sq,
            max_abs: self.max_abs.max_pair(other.max_abs),
            sum_sequence_norms: self.sum_sequence_norms + other.sum_sequence_norms,
            tokens: self.tokens + other.tokens,
            sequences: self.sequences + other.sequences,
        }
    }

    /// ‖X_j‖₂ over all tokens seen.
    pub fn l2_norm(&self) -> Tensor<1> {
        self.sum_sq.clone().sqrt()
    }

    /// Mean over sequences of the per-sequence L2 norm.
    pub fn mean_sequence_norm(&self) -> Tensor<1> {
        self.sum_sequence_norms.clone().div_scalar(self.sequences.max(1) as f32)
    }
}

/// Statistics of every linear layer, accumulated over calls.
#[derive(Debug, Clone, Default)]
pub struct FeatureStatsMap(pub BTreeMap<LinearId, FeatureStats>);

impl FeatureStatsMap {
    pub fn absorb(&mut self, other: BTreeMap<LinearId, FeatureStats>) {
        for (id, stats) in other {
            let merged = match self.0.remove(&id) {
                Some(previous) => previous.merge(stats),
                None => stats,
            };
            self.0.insert(id, merged);
        }
    }
}

/// What a forward pass recorded.
#[derive(Debug, Default)]
pub struct Trace {
    pub residual: BTreeMap<usize, CapturedState>,
    pub feature_stats: BTreeMap<LinearId, FeatureStats>,
    /// An error a hook met inside the pass (layers return tensors, not results); the forward
    /// methods return it instead of the trace.
    pub(crate) failure: Option<crate::error::ModelError>,
    /// How many layers ran checkpointed (`CausalLm::with_layer_checkpointing`).
    pub checkpointed_layers: usize,
}

impl Trace {
    /// Records an error a layer met (its forward returns tensors, not results), keeping the first;
    /// the layer lets a stand-in tensor carry on, and the forward methods return the error.
    pub(crate) fn record_failure(&mut self, error: crate::error::ModelError) {
        if self.failure.is_none() {
            self.failure = Some(error);
        }
    }
}

/// Mean of `hidden` over the positions where `valid` is 1.
///
/// # Shapes
/// `hidden: [batch, seq, d]`, `valid: [batch, seq]` (1.0 valid, 0.0 padding) → `[batch, d]`.
pub fn masked_mean(hidden: Tensor<3>, valid: Tensor<2>) -> Tensor<2> {
    let weights = valid.unsqueeze_dim::<3>(2);
    let counts = weights.clone().sum_dim(1).clamp_min(1.0);
    let summed = (hidden * weights).sum_dim(1);
    (summed / counts).squeeze_dim(1)
}
