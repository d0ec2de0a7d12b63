//! ShifCon's training settings: the `[shifcon]` table of a training config, parsed and checked
//! here (the trainer carries the table without reading it).
//!
//! ```toml
//! [shifcon]
//! parallel = "data/corpus/parallel.train.jsonl"  # pairs for the language vectors and the contrastive loss
//! langs = ["hu"]                # target languages; English inputs are never shifted
//! band = [10, 19]               # [L_to, L_bk) residual sites; omit to choose by subspace distance
//! conventions = "rosetta"       # or "released": as the released code (see `crate::conventions`)
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::conventions::Conventions;
use crate::error::{Result, ShifconError};

/// The table's name in a training config.
pub const TABLE: &str = "shifcon";

/// ShifCon (Zhang et al., ACL 2025): the generation loss on the shifted forward pass plus a
/// symmetric InfoNCE between English and target sentence states over the layer band.
///
/// Serialised, it is the form a run's checkpoints record and compare on resume (the same fields
/// as the trainer's `[shifcon]` section before method tables moved here, so older runs resume).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShifconConfig {
    pub parallel: PathBuf,
    #[serde(default = "english")]
    pub english: String,
    pub langs: Vec<String>,
    /// How states, vectors and the shift are made ([`Conventions`]).
    #[serde(default)]
    pub conventions: Conventions,
    /// `[L_to, L_bk)` (under the released conventions, the sites the vectors are measured at,
    /// `[F, B]`); `None` = the band the geometry analysis chooses with `beta` (Rosetta) or the
    /// released area scaled to the model (released).
    pub band: Option<[usize; 2]>,
    #[serde(default = "default_beta")]
    pub beta: f64,
    /// The chosen band starts at ⌈earliest_start · L⌉ or later.
    #[serde(default = "default_earliest_start")]
    pub earliest_start: f64,
    /// Resamples of the vector sentences for the band's uncertainty.
    #[serde(default = "default_bootstrap")]
    pub bootstrap: usize,
    /// Sentences per language for the language vectors (and the band choice).
    #[serde(default = "default_vector_sentences")]
    pub vector_sentences: usize,
    /// Re-estimate the language vectors with the current model every N steps (0: never; the
    /// released conventions accumulate them at every step instead).
    #[serde(default)]
    pub update_vectors_every: usize,
    #[serde(default = "default_generation_weight")]
    pub generation_weight: f64,
    #[serde(default = "default_contrastive_weight")]
    pub contrastive_weight: f64,
    /// InfoNCE logit scale (1 / temperature); the released script uses 1.0.
    #[serde(default = "one")]
    pub scale: f64,
    /// Parallel pairs per micro-batch for the contrastive loss.
    #[serde(default = "default_pairs")]
    pub pairs_per_batch: usize,
    /// Generation loss on the shifted forward (the method) or the plain one (ablation).
    #[serde(default = "yes")]
    pub shift_generation: bool,
    /// Whether the contrastive loss's target sentences run through the shifted forward; unset:
    /// as the conventions say (Rosetta shifted, released unshifted). `false` under Rosetta's
    /// conventions is the unshifted ablation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift_contrastive: Option<bool>,
    /// Move the target states' batch mean onto the English one inside the loss
    /// (t − mean t + mean e, as the released code does).
    #[serde(default = "yes")]
    pub recentre: bool,
}

fn english() -> String {
    "en".into()
}
fn default_beta() -> f64 {
    0.3
}
fn default_earliest_start() -> f64 {
    crate::geometry::GeometryOptions::default().earliest_start
}
fn default_bootstrap() -> usize {
    crate::geometry::GeometryOptions::default().bootstrap
}
fn default_vector_sentences() -> usize {
    200
}
fn default_generation_weight() -> f64 {
    0.5
}
fn default_contrastive_weight() -> f64 {
    2.0
}
fn one() -> f64 {
    1.0
}
fn default_pairs() -> usize {
    8
}
fn yes() -> bool {
    true
}

impl ShifconConfig {
    /// Settings with every default, for `parallel` and `langs`.
    pub fn new(parallel: PathBuf, langs: Vec<String>) -> Self {
        ShifconConfig {
            parallel,
            english: english(),
            langs,
            conventions: Conventions::Rosetta,
            band: None,
            beta: default_beta(),
            earliest_start: default_earliest_start(),
            bootstrap: default_bootstrap(),
            vector_sentences: default_vector_sentences(),
            update_vectors_every: 0,
            generation_weight: default_generation_weight(),
            contrastive_weight: default_contrastive_weight(),
            scale: one(),
            pairs_per_batch: default_pairs(),
            shift_generation: true,
            shift_contrastive: None,
            recentre: true,
        }
    }

    /// Whether the contrastive target pass is shifted (the setting, else the conventions').
    pub fn shifted_contrastive_pass(&self) -> bool {
        self.shift_contrastive.unwrap_or(self.conventions.shifted_contrastive_pass())
    }

    /// Parses and checks the `[shifcon]` table of a training config; a relative `parallel` is
    /// relative to `base_dir` (the config file's directory).
    pub fn from_table(table: &toml::Table, base_dir: &Path) -> Result<Self> {
        let mut config: ShifconConfig = toml::Value::Table(table.clone())
            .try_into()
            .map_err(|e: toml::de::Error| ShifconError::Invalid(format!("[{TABLE}]: {}", e.message())))?;
        if config.parallel.is_relative() {
            config.parallel = base_dir.join(&config.parallel);
        }
        config.validate()?;
        Ok(config)
    }

    /// Settings a checkpoint stored before `recentre`, `conventions`, `earliest_start` and
    /// `bootstrap` existed, in today's form: the old `shift_contrastive` was the in-loss
    /// re-centring (the target pass was always shifted), and the new settings take their
    /// defaults, which are what the old code did. Today's settings pass through unchanged.
    pub fn upgrade_stored(stored: serde_json::Value) -> serde_json::Value {
        let mut stored = stored;
        if let Some(object) = stored.as_object_mut()
            && !object.contains_key("recentre")
        {
            let recentre = object.remove("shift_contrastive").unwrap_or(serde_json::Value::Bool(true));
            object.insert("recentre".into(), recentre);
        }
        match serde_json::from_value::<ShifconConfig>(stored.clone()) {
            Ok(config) => config.settings(),
            Err(_) => stored,
        }
    }

    /// The settings as compared on resume: `shift_contrastive` only where it differs from what
    /// the conventions do, so `shift_contrastive = true` under Rosetta's equals leaving it out.
    pub fn settings(&self) -> serde_json::Value {
        let mut normal = self.clone();
        if normal.shift_contrastive == Some(normal.conventions.shifted_contrastive_pass()) {
            normal.shift_contrastive = None;
        }
        serde_json::to_value(normal).unwrap_or_default()
    }

    /// The table form, for configs built in code.
    pub fn to_table(&self) -> toml::Table {
        toml::Table::try_from(self).unwrap_or_default()
    }

    /// Ranges and combinations; the message names the setting.
    pub fn validate(&self) -> Result<()> {
        let invalid = |m: String| Err(ShifconError::Invalid(m));
        if self.langs.is_empty() || self.langs.contains(&self.english) {
            return invalid(format!("shifcon.langs must name target languages other than shifcon.english (`{}`)", self.english));
        }
        if !(self.beta > 0.0 && self.beta < 1.0) {
            return invalid(format!("shifcon.beta must be in (0, 1) (got {})", self.beta));
        }
        if self.pairs_per_batch < 2 {
            return invalid("shifcon.pairs_per_batch must be ≥ 2 (in-batch negatives)".into());
        }
        if self.generation_weight < 0.0 || self.contrastive_weight < 0.0 || !(self.scale > 0.0) {
            return invalid("shifcon.generation_weight and shifcon.contrastive_weight must be ≥ 0 and shifcon.scale positive".into());
        }
        if let Some([to, back]) = self.band
            && to >= back
        {
            return invalid(format!("shifcon.band = [{to}, {back}] must have L_to < L_bk"));
        }
        if !(0.0..1.0).contains(&self.earliest_start) {
            return invalid(format!("shifcon.earliest_start must be in [0, 1) (got {})", self.earliest_start));
        }
        if self.conventions.online_vectors() && self.update_vectors_every > 0 {
            return invalid(
                "shifcon.update_vectors_every does not apply under conventions = \"released\", which accumulate the vectors at every step; drop it".into(),
            );
        }
        if self.conventions.online_vectors() && self.shift_contrastive == Some(true) {
            return invalid(
                "conventions = \"released\" build the language vectors from the contrastive pass, which must run unshifted; drop shifcon.shift_contrastive".into(),
            );
        }
        if self.conventions.online_vectors() && self.contrastive_weight == 0.0 {
            return invalid(
                "conventions = \"released\" accumulate the language vectors from the contrastive batches; shifcon.contrastive_weight must be > 0".into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_parses_with_defaults_and_names_bad_settings() {
        let table: toml::Table = "parallel = \"pairs.jsonl\"\nlangs = [\"hu\"]\n".parse().unwrap();
        let config = ShifconConfig::from_table(&table, Path::new("/runs")).unwrap();
        assert_eq!(config, ShifconConfig::new(PathBuf::from("/runs/pairs.jsonl"), vec!["hu".into()]));
        assert_eq!(ShifconConfig::from_table(&config.to_table(), Path::new("/elsewhere")).unwrap(), config);

        let typo: toml::Table = "parallel = \"p.jsonl\"\nlangs = [\"hu\"]\nbetta = 0.2\n".parse().unwrap();
        let err = ShifconConfig::from_table(&typo, Path::new(".")).unwrap_err().to_string();
        assert!(err.contains("betta") && err.contains("[shifcon]"), "{err}");
        let english: toml::Table = "parallel = \"p.jsonl\"\nlangs = [\"en\"]\n".parse().unwrap();
        let err = ShifconConfig::from_table(&english, Path::new(".")).unwrap_err().to_string();
        assert!(err.contains("shifcon.langs"), "{err}");
        let band: toml::Table = "parallel = \"p.jsonl\"\nlangs = [\"hu\"]\nband = [5, 3]\n".parse().unwrap();
        assert!(ShifconConfig::from_table(&band, Path::new(".")).unwrap_err().to_string().contains("shifcon.band"));

        let released: toml::Table = "parallel = \"p.jsonl\"\nlangs = [\"hu\"]\nconventions = \"released\"\n".parse().unwrap();
        let config = ShifconConfig::from_table(&released, Path::new(".")).unwrap();
        assert!(!config.shifted_contrastive_pass());
        assert!(ShifconConfig::new("p".into(), vec!["hu".into()]).shifted_contrastive_pass());
        let ablation: toml::Table = "parallel = \"p.jsonl\"\nlangs = [\"hu\"]\nshift_contrastive = false\n".parse().unwrap();
        assert!(!ShifconConfig::from_table(&ablation, Path::new(".")).unwrap().shifted_contrastive_pass());
        let online: toml::Table =
            "parallel = \"p.jsonl\"\nlangs = [\"hu\"]\nconventions = \"released\"\nupdate_vectors_every = 5\n".parse().unwrap();
        assert!(ShifconConfig::from_table(&online, Path::new(".")).unwrap_err().to_string().contains("update_vectors_every"));
        let shifted: toml::Table =
            "parallel = \"p.jsonl\"\nlangs = [\"hu\"]\nconventions = \"released\"\nshift_contrastive = true\n".parse().unwrap();
        assert!(ShifconConfig::from_table(&shifted, Path::new(".")).unwrap_err().to_string().contains("shift_contrastive"));
        // Saying what the conventions do anyway is the same setting on resume.
        let explicit: toml::Table = "parallel = \"pairs.jsonl\"\nlangs = [\"hu\"]\nshift_contrastive = true\n".parse().unwrap();
        let explicit = ShifconConfig::from_table(&explicit, Path::new("/runs")).unwrap();
        let implicit = ShifconConfig::from_table(&table, Path::new("/runs")).unwrap();
        assert_eq!(explicit.settings(), implicit.settings());
    }
}
