//! Labelled multiple-choice items built from the corpus, for zero-shot evaluation by mean
//! per-token log-probability (`rosetta_model::choice`). No XNLI or MARC can be downloaded here;
//! these two tasks use real labelled multilingual text that can:
//!
//! - **translation choice**: `"{Language}: {x}\nEnglish:"` → the true English translation among
//!   `distractors + 1` English sentences of other records (cross-lingual understanding);
//! - **language identification**: `"Text: {x}\nLanguage:"` → the document's language name among
//!   the languages in play (labels from the corpus metadata).

use crate::error::{DataError, Result};
use crate::languages::language_name;
use crate::monolingual::Document;
use crate::parallel::ParallelCorpus;
use rosetta_rng::SplitMix64;

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ChoiceItem {
    pub lang: String,
    pub prompt: String,
    pub choices: Vec<String>,
    pub answer: usize,
}

/// Up to `n` translation-choice items for `lang`, the answer at a seeded random position.
pub fn translation_choice(corpus: &ParallelCorpus, lang: &str, n: usize, distractors: usize, seed: u64) -> Result<Vec<ChoiceItem>> {
    let pairs: Vec<(&str, &str)> =
        corpus.records.iter().filter_map(|r| Some((r.texts.get(lang)?.as_str(), r.texts.get("en")?.as_str()))).collect();
    if pairs.len() < distractors + 1 {
        return Err(DataError::Invalid(format!("{} {lang}–en pairs cannot make items with {distractors} distractors", pairs.len())));
    }
    let mut rng = SplitMix64::new(seed);
    let step = (pairs.len() / n.max(1)).max(1);
    let mut items = Vec::new();
    for (i, &(x, en)) in pairs.iter().enumerate().step_by(step).take(n) {
        let mut others: Vec<&str> = pairs.iter().enumerate().filter(|(j, p)| *j != i && p.1 != en).map(|(_, p)| p.1).collect();
        rng.shuffle(&mut others);
        let mut choices: Vec<String> = others.into_iter().take(distractors).map(|e| format!(" {e}")).collect();
        let answer = rng.below(choices.len() + 1);
        choices.insert(answer, format!(" {en}"));
        items.push(ChoiceItem { lang: lang.to_string(), prompt: format!("{}: {x}\nEnglish:", language_name(lang)), choices, answer });
    }
    Ok(items)
}

/// Up to `n` language-identification items per language of `langs`.
pub fn language_id(documents: &[Document], langs: &[String], n: usize, max_chars: usize) -> Result<Vec<ChoiceItem>> {
    let labels: Vec<String> = langs.iter().map(|l| format!(" {}", language_name(l))).collect();
    let mut items = Vec::new();
    for (answer, lang) in langs.iter().enumerate() {
        let docs: Vec<&Document> = documents.iter().filter(|d| &d.lang == lang).take(n).collect();
        if docs.is_empty() {
            return Err(DataError::Invalid(format!("no `{lang}` documents for language identification")));
        }
        for d in docs {
            let text: String = d.text.chars().take(max_chars).collect();
            items.push(ChoiceItem { lang: lang.clone(), prompt: format!("Text: {text}\nLanguage:"), choices: labels.clone(), answer });
        }
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ParallelRecord;
    use std::collections::BTreeMap;

    #[test]
    fn translation_items_hold_the_true_translation_once() {
        let records = (0..10)
            .map(|i| ParallelRecord {
                id: None,
                source: None,
                texts: BTreeMap::from([("en".into(), format!("e{i}")), ("hu".into(), format!("h{i}"))]),
            })
            .collect();
        let items = translation_choice(&ParallelCorpus { records }, "hu", 5, 3, 1).unwrap();
        assert_eq!(items.len(), 5);
        for item in &items {
            let x = item.prompt.trim_start_matches("Hungarian: h").split('\n').next().unwrap().to_string();
            assert_eq!(item.choices[item.answer], format!(" e{x}"));
            assert_eq!(item.choices.len(), 4);
            assert_eq!(item.choices.iter().filter(|c| **c == item.choices[item.answer]).count(), 1);
        }
    }
}
