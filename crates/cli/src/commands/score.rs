//! `rosetta score`: per-language bits per character on parallel text — the cross-lingual gap.
//!
//! For every language L the same sentences are scored in L and in the reference language, so
//! the ratio `bits(L) / bits(reference)` compares like with like: how many more bits the model
//! needs to say the same thing in L.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use rosetta_data::{BadLines, ParallelCorpus};
use rosetta_model::scoring::{ScoreOptions, TextCost, score_texts_blocking};
use rosetta_viz::{BarChart, BarGroup};
use serde_json::json;

use crate::commands::shift_args::ShiftArgs;
use crate::model_args::ModelArgs;
use crate::output::{progress, table, write_json, write_result};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Parallel JSONL (`{"en": …, "hu": …}` per line). Default: the embedded corpus's test split.
    #[arg(long)]
    parallel: Option<PathBuf>,
    /// Languages to score (comma-separated). Default: every language in the file.
    #[arg(long, value_delimiter = ',')]
    langs: Vec<String>,
    /// The language the others are compared with.
    #[arg(long, default_value = "en")]
    reference: String,
    /// At most this many sentences per language, spread evenly over the file.
    #[arg(long, default_value_t = 100)]
    max_sentences: usize,
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Skip malformed lines instead of stopping at the first.
    #[arg(long)]
    skip_bad_lines: bool,
    /// Write the results as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write a bar chart of bits/char per language (SVG).
    #[arg(long)]
    plot: Option<PathBuf>,
    #[command(flatten)]
    shift: ShiftArgs,
}

/// Per-language result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LanguageScore {
    pub lang: String,
    pub sentences: usize,
    pub cost: TextCost,
    /// The reference language's cost on the same sentences.
    pub reference_cost: TextCost,
}

impl LanguageScore {
    pub fn gap(&self) -> f64 {
        self.cost.bits / self.reference_cost.bits.max(1e-9)
    }
}

/// Indices of at most `n` items spread evenly over `len`.
fn spread(len: usize, n: usize) -> Vec<usize> {
    if len <= n {
        return (0..len).collect();
    }
    (0..n).map(|i| i * len / n).collect()
}

pub fn default_parallel_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/corpus/parallel.test.jsonl")
}

pub fn run(args: Args) -> Result<()> {
    let path = match &args.parallel {
        Some(p) => p.clone(),
        None => default_parallel_path(),
    };
    let bad_lines = if args.skip_bad_lines { BadLines::Skip } else { BadLines::Fail };
    let (corpus, skipped) = ParallelCorpus::read(&path, bad_lines)?;
    if skipped.skipped > 0 {
        eprintln!("skipped {} bad lines of {}: {}", skipped.skipped, path.display(), skipped.examples.join("; "));
    }
    let langs: Vec<String> = if args.langs.is_empty() { corpus.language_counts().keys().cloned().collect() } else { args.langs.clone() };
    let (checkpoint, model) = args.model.load()?;
    let plan = args.shift.plan(&checkpoint, &model)?;
    let results =
        score_parallel(&model, &checkpoint.tokenizer, &corpus, &langs, &args.reference, args.max_sentences, args.batch_size, plan.as_ref())
            .with_context(|| format!("scoring {}", path.display()))?;
    if let Some(p) = &plan {
        println!("shifted {}: {}", p.describe(), p.langs().join(", "));
    }

    println!("{} on {} ({} records)", checkpoint.origin, path.display(), corpus.records.len());
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|s| {
            vec![
                s.lang.clone(),
                s.sentences.to_string(),
                s.cost.chars.to_string(),
                s.cost.tokens.to_string(),
                format!("{:.3}", s.cost.tokens_per_char()),
                format!("{:.3}", s.cost.bits_per_char()),
                format!("{:.3}", s.cost.bits_per_byte()),
                format!("{:.1}", s.cost.bits / s.sentences as f64),
                format!("{:.2}×", s.gap()),
            ]
        })
        .collect();
    let gap_header = format!("× {}", args.reference);
    println!("{}", table(&["lang", "sentences", "chars", "tokens", "tok/char", "bits/char", "bits/byte", "bits/sent", &gap_header], &rows));
    println!("× {r}: bits to say the same sentences in this language ÷ bits in {r}", r = args.reference);

    if let Some(out) = &args.json {
        let value = json!({
            "model": checkpoint.origin.0,
            "parallel": path,
            "reference": args.reference,
            "shift": plan.as_ref().map(|p| json!({"english": p.english, "to": p.to, "back": p.back, "added_at": p.added_at(),
                "conventions": p.conventions, "langs": p.langs()})),
            "languages": results.iter().map(|s| json!({
                "lang": s.lang, "sentences": s.sentences, "chars": s.cost.chars, "bytes": s.cost.bytes,
                "tokens": s.cost.tokens, "bits": s.cost.bits,
                "bits_per_char": s.cost.bits_per_char(), "bits_per_byte": s.cost.bits_per_byte(),
                "bits_per_sentence": s.cost.bits / s.sentences as f64,
                "tokens_per_char": s.cost.tokens_per_char(), "gap": s.gap(),
            })).collect::<Vec<_>>(),
        });
        write_json(out, &value)?;
    }
    if let Some(out) = &args.plot {
        let chart = BarChart {
            title: format!("Bits per character — {}", checkpoint.origin.0.rsplit('/').next().unwrap_or("")),
            y_label: "bits / char".into(),
            series: vec!["bits/char".into()],
            groups: results.iter().map(|s| BarGroup { label: s.lang.clone(), values: vec![s.cost.bits_per_char()] }).collect(),
        };
        write_result(out, chart.to_svg().as_bytes())?;
    }
    Ok(())
}

/// Bits per character of each language in `langs` on at most `max_sentences` records of
/// `corpus` (spread evenly), with the `reference` language's cost on the same records. With a
/// shift plan, each language's text is scored with that language's shift (English unshifted).
#[allow(clippy::too_many_arguments)]
pub fn score_parallel(
    model: &rosetta_model::CausalLm,
    tokenizer: &rosetta_model::TextTokenizer,
    corpus: &ParallelCorpus,
    langs: &[String],
    reference: &str,
    max_sentences: usize,
    batch_size: usize,
    shift: Option<&rosetta_shifcon::ShiftPlan>,
) -> Result<Vec<LanguageScore>> {
    let available = corpus.language_counts();
    if !available.contains_key(reference) {
        bail!("the reference language `{reference}` does not occur in the parallel corpus");
    }
    // Errors if a requested language is missing.
    corpus.aligned(langs)?;

    // Which records each language is scored on: those that also have the reference language.
    let mut plan: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for lang in langs {
        let having: Vec<usize> = corpus
            .records
            .iter()
            .enumerate()
            .filter(|(_, r)| r.texts.contains_key(lang) && r.texts.contains_key(reference))
            .map(|(i, _)| i)
            .collect();
        if having.is_empty() {
            bail!("no record has both `{lang}` and `{reference}`");
        }
        plan.insert(lang.clone(), spread(having.len(), max_sentences).into_iter().map(|i| having[i]).collect());
    }
    // Grouped by language, so a batch shares one shift.
    let mut jobs: Vec<(String, usize)> = Vec::new();
    for (lang, records) in &plan {
        for &r in records {
            jobs.push((lang.clone(), r));
            jobs.push((reference.to_string(), r));
        }
    }
    jobs.sort();
    jobs.dedup();

    let mut options = ScoreOptions::for_model(model);
    options.batch_size = batch_size;
    let bar = progress(jobs.len() as u64, "scoring");
    let mut costs: BTreeMap<(usize, String), TextCost> = BTreeMap::new();
    for lang_jobs in jobs.chunk_by(|a, b| a.0 == b.0) {
        let lang = &lang_jobs[0].0;
        options.interventions = match shift {
            Some(p) if p.deltas(lang).is_some() => p.interventions(lang, &model.device())?,
            _ => rosetta_model::Interventions::none(),
        };
        for chunk in lang_jobs.chunks(batch_size * 4) {
            let texts: Vec<&str> = chunk.iter().map(|(l, r)| corpus.records[*r].texts[l].as_str()).collect();
            let scored = score_texts_blocking(model, tokenizer, &texts, &options).context("scoring")?;
            for ((l, r), cost) in chunk.iter().zip(scored) {
                costs.insert((*r, l.clone()), cost);
            }
            bar.inc(chunk.len() as u64);
        }
    }
    bar.finish_and_clear();

    Ok(plan
        .iter()
        .map(|(lang, records)| {
            let sum = |l: &str| records.iter().fold(TextCost::default(), |acc, &r| acc + costs[&(r, l.to_string())]);
            LanguageScore { lang: lang.clone(), sentences: records.len(), cost: sum(lang), reference_cost: sum(reference) }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_even_and_bounded() {
        assert_eq!(spread(3, 5), vec![0, 1, 2]);
        assert_eq!(spread(10, 5), vec![0, 2, 4, 6, 8]);
    }
}
