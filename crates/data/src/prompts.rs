//! Calibration prompt texts (what pruning and the feature analysis feed the model; the tokenised
//! batches are `rosetta_prune::calibration`): few-shot translation (Kim et al.'s
//! `Src: s</s>Tgt: t</s>` style with language names), monolingual documents, and code.

use crate::error::{DataError, Result};
use crate::language_name;
use crate::monolingual::Document;
use crate::parallel::ParallelCorpus;
use rosetta_rng::SplitMix64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CalibKind {
    Translation,
    Monolingual,
    Code,
}

impl std::str::FromStr for CalibKind {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "translation" | "mt" => Ok(CalibKind::Translation),
            "monolingual" | "mono" => Ok(CalibKind::Monolingual),
            "code" => Ok(CalibKind::Code),
            other => Err(DataError::Invalid(format!("unknown calibration `{other}` (use translation, monolingual or code)"))),
        }
    }
}

impl std::fmt::Display for CalibKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CalibKind::Translation => "translation",
            CalibKind::Monolingual => "monolingual",
            CalibKind::Code => "code",
        })
    }
}

/// `n` few-shot translation prompts: each is `shots` solved examples plus one more, all in the
/// same direction, `{Source}: s{sep}{Target}: t{sep}`. Directions alternate X→English and
/// English→X over the non-English `langs`, round robin.
pub fn translation_prompts(
    parallel: &ParallelCorpus,
    langs: &[String],
    n: usize,
    shots: usize,
    sep: &str,
    seed: u64,
) -> Result<Vec<String>> {
    let targets: Vec<&String> = langs.iter().filter(|l| l.as_str() != "en").collect();
    if targets.is_empty() {
        return Err(DataError::Invalid("translation calibration needs at least one non-English language among its languages".into()));
    }
    let mut rng = SplitMix64::new(seed);
    let mut pools: Vec<Vec<(&str, &str)>> = Vec::new();
    for lang in &targets {
        let mut pool: Vec<(&str, &str)> =
            parallel.records.iter().filter_map(|r| Some((r.texts.get(lang.as_str())?.as_str(), r.texts.get("en")?.as_str()))).collect();
        if pool.len() < shots + 1 {
            return Err(DataError::Invalid(format!(
                "the parallel corpus has {} {lang}–en pairs; a {shots}-shot prompt needs at least {}",
                pool.len(),
                shots + 1
            )));
        }
        rng.shuffle(&mut pool);
        pools.push(pool);
    }
    let mut cursors = vec![0usize; targets.len()];
    let mut prompts = Vec::with_capacity(n);
    for i in 0..n {
        let t = i % targets.len();
        let to_english = (i / targets.len()).is_multiple_of(2);
        let lang = targets[t].as_str();
        let (src, tgt) = if to_english { (language_name(lang), "English") } else { ("English", language_name(lang)) };
        let mut prompt = String::new();
        for _ in 0..=shots {
            let pool = &pools[t];
            let (x, en) = pool[cursors[t] % pool.len()];
            cursors[t] += 1;
            let (s, g) = if to_english { (x, en) } else { (en, x) };
            prompt.push_str(&format!("{src}: {s}{sep}{tgt}: {g}{sep}"));
        }
        prompts.push(prompt);
    }
    Ok(prompts)
}

/// `n` monolingual prompts, round robin over `langs`, each a document cut to `max_chars`.
pub fn monolingual_prompts(documents: &[Document], langs: &[String], n: usize, max_chars: usize, seed: u64) -> Result<Vec<String>> {
    let mut rng = SplitMix64::new(seed);
    let mut pools: Vec<Vec<&str>> = Vec::new();
    for lang in langs {
        let mut pool: Vec<&str> = documents.iter().filter(|d| &d.lang == lang).map(|d| d.text.as_str()).collect();
        if pool.is_empty() {
            return Err(DataError::Invalid(format!("no monolingual `{lang}` documents for calibration")));
        }
        rng.shuffle(&mut pool);
        pools.push(pool);
    }
    if pools.is_empty() {
        return Err(DataError::Invalid("monolingual calibration needs at least one language".into()));
    }
    Ok((0..n).map(|i| cut(pools[i % pools.len()][(i / pools.len()) % pools[i % pools.len()].len()], max_chars)).collect())
}

/// `n` code prompts: consecutive chunks of `max_chars` from `sources` (file contents), in order.
pub fn code_prompts(sources: &[String], n: usize, max_chars: usize) -> Result<Vec<String>> {
    let mut chunks = Vec::new();
    for source in sources {
        let chars: Vec<char> = source.chars().collect();
        for piece in chars.chunks(max_chars.max(1)) {
            let text: String = piece.iter().collect();
            if text.trim().len() > 40 {
                chunks.push(text);
            }
        }
    }
    if chunks.is_empty() {
        return Err(DataError::Invalid("no code text for calibration: give source files to read code prompts from".into()));
    }
    Ok((0..n).map(|i| chunks[i % chunks.len()].clone()).collect())
}

fn cut(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ParallelRecord;
    use std::collections::BTreeMap;

    fn corpus() -> ParallelCorpus {
        let records = (0..8)
            .map(|i| ParallelRecord {
                id: None,
                source: None,
                texts: BTreeMap::from([("en".to_string(), format!("one {i}")), ("hu".to_string(), format!("egy {i}"))]),
            })
            .collect();
        ParallelCorpus { records }
    }

    #[test]
    fn translation_prompts_have_shots_plus_one_pairs_in_alternating_directions() {
        let prompts = translation_prompts(&corpus(), &["hu".into(), "en".into()], 2, 4, "</s>", 0).unwrap();
        assert_eq!(prompts.len(), 2);
        assert_eq!(prompts[0].matches("Hungarian: egy").count(), 5);
        assert!(prompts[0].starts_with("Hungarian: egy") && prompts[0].contains("</s>English: one"));
        assert!(prompts[1].starts_with("English: one"));
    }

    #[test]
    fn too_few_pairs_or_languages_are_errors() {
        assert!(translation_prompts(&corpus(), &["hu".into()], 1, 8, "\n", 0).is_err());
        assert!(translation_prompts(&corpus(), &["en".into()], 1, 2, "\n", 0).is_err());
        assert!(code_prompts(&[], 3, 100).is_err());
        assert!(monolingual_prompts(&[], &["hu".into()], 3, 100, 0).is_err());
    }
}
