//! `--shift` for `score` and `generate`: training-free shift steering (the LRP2 baseline of
//! ShifCon), or the plan a ShifCon-trained model carries in its `rosetta.json`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use rosetta_data::{BadLines, ParallelCorpus};
use rosetta_model::{CausalLm, Checkpoint};
use rosetta_shifcon::{Conventions, ShiftPlan, ShiftSpec, plan_from_extras};

#[derive(clap::Args, Debug, Clone, Default)]
pub struct ShiftArgs {
    /// Shift LANG's states toward EN's from site L_TO and back at L_BK, e.g. `hu→en@10..19`
    /// (ASCII: `hu->en@10..19`). Vectors come from --shift-vectors or are estimated on
    /// --shift-data.
    #[arg(long, value_parser = |s: &str| s.parse::<ShiftSpec>())]
    pub shift: Option<ShiftSpec>,
    /// `geometry.json` from `rosetta geometry`: take the language vectors from it.
    #[arg(long, requires = "shift")]
    pub shift_vectors: Option<PathBuf>,
    /// Parallel JSONL to estimate the vectors on (default: the embedded training split).
    #[arg(long, requires = "shift")]
    pub shift_data: Option<PathBuf>,
    #[arg(long, default_value_t = 200, requires = "shift")]
    pub shift_sentences: usize,
    /// How the vectors are made and placed: `rosetta`, or `released` (unit-length sentence means
    /// with the start token, a vector measured at site L added at L−1; the spec's sites are then
    /// the released code's F..B, e.g. `hu→en@11..14` for its 12..15 of 32 on 30 layers).
    #[arg(long, default_value = "rosetta", requires = "shift")]
    pub shift_conventions: Conventions,
    /// Ignore the shift a ShifCon-trained model carries.
    #[arg(long, conflicts_with = "shift")]
    pub no_shift: bool,
}

impl ShiftArgs {
    /// The plan to apply: `--shift`, else the model's own, else none.
    pub fn plan(&self, checkpoint: &Checkpoint, model: &CausalLm) -> Result<Option<ShiftPlan>> {
        let Some(spec) = &self.shift else {
            if self.no_shift {
                return Ok(None);
            }
            let plan = plan_from_extras(checkpoint.extras.as_ref())?;
            if let Some(p) = &plan {
                p.check(model).context("the model's saved ShifCon plan")?;
                eprintln!(
                    "applying the model's ShifCon shift (sites {}..{}, languages {}); --no-shift turns it off",
                    p.to,
                    p.back,
                    p.langs().join(", ")
                );
            }
            return Ok(plan);
        };
        let plan = match &self.shift_vectors {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                let geometry: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
                let made_with: Conventions = serde_json::from_value(geometry["conventions"].clone()).unwrap_or_default();
                anyhow::ensure!(
                    made_with == self.shift_conventions,
                    "{} holds vectors made under the {made_with} conventions, not {}; pass --shift-conventions {made_with} or rerun `rosetta geometry --conventions {}`",
                    path.display(),
                    self.shift_conventions,
                    self.shift_conventions
                );
                let vectors: BTreeMap<String, Vec<Vec<f32>>> = serde_json::from_value(geometry["vectors"].clone())
                    .with_context(|| format!("{} has no `vectors` (write it with `rosetta geometry`)", path.display()))?;
                for lang in [&spec.lang, &spec.english] {
                    anyhow::ensure!(
                        vectors.contains_key(lang.as_str()),
                        "{} has no vectors for `{lang}`; rerun `rosetta geometry --langs` with it",
                        path.display()
                    );
                }
                let wanted: BTreeMap<String, Vec<Vec<f32>>> =
                    vectors.into_iter().filter(|(l, _)| *l == spec.lang || *l == spec.english).collect();
                ShiftPlan::from_site_vectors(&spec.english, spec.to, spec.back, &wanted, self.shift_conventions)?
            }
            None => {
                let path = self.shift_data.clone().unwrap_or_else(|| rosetta_data::corpus::CorpusDir::embedded().parallel_train());
                let (corpus, _) = ParallelCorpus::read(&path, BadLines::Fail)?;
                let langs = vec![spec.english.clone(), spec.lang.clone()];
                let aligned = corpus.aligned(&langs).with_context(|| format!("estimating shift vectors on {}", path.display()))?;
                let mut texts: BTreeMap<String, Vec<&str>> = BTreeMap::new();
                for (_, t) in aligned.iter().take(self.shift_sentences) {
                    texts.entry(spec.english.clone()).or_default().push(t[0]);
                    texts.entry(spec.lang.clone()).or_default().push(t[1]);
                }
                eprintln!(
                    "estimating {}/{} vectors ({} conventions) at sites {} and {} on {} sentences of {}",
                    spec.lang,
                    spec.english,
                    self.shift_conventions,
                    spec.to,
                    spec.back,
                    aligned.len().min(self.shift_sentences),
                    path.display()
                );
                ShiftPlan::estimate_blocking(
                    model,
                    &checkpoint.tokenizer,
                    &texts,
                    &spec.english,
                    [spec.to, spec.back],
                    self.shift_conventions,
                )?
            }
        };
        plan.check(model)?;
        Ok(Some(plan))
    }
}
