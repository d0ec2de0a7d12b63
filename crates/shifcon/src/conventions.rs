//! Two ways to build ShifCon's sentence states, language vectors and shift: as the released code
//! does (`rattlesnakey/ShifCon`, commit 04449f1: `finetune_contrast.py`, `model_forward_fn.py`,
//! `pipeline_train_eval.sh`) and as Rosetta does by default. Every choice below is one method of
//! [`Conventions`], so the geometry, the shift, steering and training read the same table.
//!
//! | | released | rosetta |
//! |---|---|---|
//! | sentence state | mean over all tokens, the start token included, then unit length | mean over the tokens after the start token, raw |
//! | language vector | mean of unit sentence states, accumulated online from every contrastive batch during training | mean of raw sentence states, fitted once before training on `vector_sentences` pairs |
//! | where a vector is added | one layer early: measured at `hidden_states[F]`, added to the input of layer F−1 | at the site where it was measured |
//! | contrastive target pass | unshifted | shifted (the generation loss's own states) |
//! | area | given: `F = 12, B = 15` of 32 layers, scaled to the model | chosen by the subspace distance ([`crate::geometry`]) |
//!
//! Why Rosetta differs, with the measurement behind each choice (SmolLM2-135M, en/hu, see
//! `reports/shifcon/README.md`): the start token is an attention sink whose state is huge and
//! language-independent (from site 12 on, including it makes the raw mean distance between
//! languages jump about tenfold without any language signal); unit-normalised vectors added to
//! raw states move them by 0.2–0.8 % of the language offset at the band's sites, so the released
//! shift barely shifts; adding a vector where it was measured keeps a shift and its measurement
//! in the same space.

use serde::{Deserialize, Serialize};

use rosetta_model::Pooling;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Conventions {
    /// As the released code.
    Released,
    /// Rosetta's (see the module documentation for why).
    #[default]
    Rosetta,
}

/// The released script's area, `LAYER_TO_SHIFT_FORWARD=12`, `LAYER_TO_SHIFT_BACK=15`, of
/// Llama-2-7B's 32 layers.
pub const RELEASED_AREA: [usize; 2] = [12, 15];
/// The layers of the model the released area was set for.
pub const RELEASED_LAYERS: usize = 32;

impl Conventions {
    pub fn name(self) -> &'static str {
        match self {
            Conventions::Released => "released",
            Conventions::Rosetta => "rosetta",
        }
    }

    /// How a sentence's token states become one state.
    pub fn pooling(self) -> Pooling {
        match self {
            Conventions::Released => Pooling::Mean,
            Conventions::Rosetta => Pooling::MeanAfterFirst,
        }
    }

    /// Whether each sentence state is scaled to unit length before anything else uses it.
    pub fn unit_states(self) -> bool {
        self == Conventions::Released
    }

    /// How many sites before its measurement site a vector is added: a vector measured at site
    /// `s` (the input of layer `s`) is added at `s − offset`.
    pub fn placement_offset(self) -> usize {
        match self {
            Conventions::Released => 1,
            Conventions::Rosetta => 0,
        }
    }

    /// Whether the contrastive loss's target sentences run through the shifted forward.
    pub fn shifted_contrastive_pass(self) -> bool {
        self == Conventions::Rosetta
    }

    /// Whether the language vectors are accumulated online from the contrastive batches (rather
    /// than fitted before training).
    pub fn online_vectors(self) -> bool {
        self == Conventions::Released
    }
}

/// [`RELEASED_AREA`] scaled from 32 layers to `layers` (rounded; at least one layer wide, F ≥ 1 so
/// the one-layer-early placement stays inside the model).
pub fn released_area(layers: usize) -> [usize; 2] {
    let scale = |site: usize| (site * layers + RELEASED_LAYERS / 2) / RELEASED_LAYERS;
    let forward = scale(RELEASED_AREA[0]).max(1);
    let back = scale(RELEASED_AREA[1]).max(forward + 1).min(layers.max(forward + 1));
    [forward, back]
}

impl std::str::FromStr for Conventions {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "released" => Ok(Conventions::Released),
            "rosetta" => Ok(Conventions::Rosetta),
            other => Err(format!("`{other}` is not a convention; use `released` (as the released ShifCon code) or `rosetta`")),
        }
    }
}

impl std::fmt::Display for Conventions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_released_area_scales_with_depth() {
        assert_eq!(released_area(32), [12, 15]);
        assert_eq!(released_area(30), [11, 14]);
        assert_eq!(released_area(64), [24, 30]);
        let tiny = released_area(4);
        assert!(tiny[0] >= 1 && tiny[0] < tiny[1] && tiny[1] <= 4, "{tiny:?}");
        assert_eq!("released".parse::<Conventions>().unwrap(), Conventions::Released);
        assert!("paper".parse::<Conventions>().unwrap_err().contains("released"));
    }
}
