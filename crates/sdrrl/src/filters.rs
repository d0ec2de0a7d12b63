//! What keeps degenerate generations out of a transfer set: empty text, runaway repetition, a
//! generation cut off at the token limit, and text in the wrong language. Every drop is counted
//! by reason, so a filtered-out set says why.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::langid::LanguageId;
use crate::lexicon::words;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Drop texts whose word 3-grams repeat more than this fraction (a model stuck in a loop).
    #[serde(default = "default_repeat")]
    pub max_repeated_trigrams: f64,
    /// Drop generations that hit the token limit instead of ending (after trimming, below).
    #[serde(default = "yes")]
    pub drop_unfinished: bool,
    /// Cut a generation that hit the token limit back to its last full sentence, when that keeps
    /// at least half of it; only what cannot be trimmed counts as unfinished.
    #[serde(default = "yes")]
    pub trim_unfinished: bool,
    /// Drop target-language text the language identifier places elsewhere.
    #[serde(default = "yes")]
    pub check_language: bool,
}

fn default_repeat() -> f64 {
    0.3
}
fn yes() -> bool {
    true
}

impl Default for FilterConfig {
    fn default() -> Self {
        FilterConfig { max_repeated_trigrams: default_repeat(), drop_unfinished: true, trim_unfinished: true, check_language: true }
    }
}

/// Why a candidate was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Skip {
    Empty,
    Repetitive,
    Unfinished,
    WrongLanguage,
}

/// Fraction of word 3-grams that repeat an earlier one.
pub fn repeated_trigram_fraction(text: &str) -> f64 {
    let w = words(text);
    if w.len() < 6 {
        return 0.0;
    }
    let mut seen: HashMap<&[String], usize> = HashMap::new();
    let mut repeats = 0;
    for g in w.windows(3) {
        let count = seen.entry(g).or_default();
        if *count > 0 {
            repeats += 1;
        }
        *count += 1;
    }
    repeats as f64 / (w.len() - 2) as f64
}

/// `text` cut after its last sentence end (`.`, `!`, `?`, `。`, `！`, `？`), if that keeps at least half.
pub fn last_full_sentence(text: &str) -> Option<&str> {
    let end = text
        .char_indices()
        .filter(|(_, c)| matches!(c, '.' | '!' | '?' | '。' | '！' | '？'))
        .map(|(i, c)| i + c.len_utf8())
        .next_back()?;
    (end * 2 >= text.len()).then(|| text[..end].trim_end())
}

impl FilterConfig {
    /// A generation as the transfer set uses it: `(text, finished)` after trimming an unfinished
    /// one to its last full sentence.
    pub fn settle<'a>(&self, text: &'a str, finished: bool) -> (&'a str, bool) {
        if !finished
            && self.trim_unfinished
            && let Some(trimmed) = last_full_sentence(text)
        {
            return (trimmed, true);
        }
        (text, finished)
    }

    /// `None` if `text` (generated, in `lang`; `finished` = it ended by itself) is usable.
    pub fn check(&self, text: &str, lang: &str, finished: bool, langid: Option<&LanguageId>) -> Option<Skip> {
        if text.trim().is_empty() {
            return Some(Skip::Empty);
        }
        if self.drop_unfinished && !finished {
            return Some(Skip::Unfinished);
        }
        if repeated_trigram_fraction(text) > self.max_repeated_trigrams {
            return Some(Skip::Repetitive);
        }
        if self.check_language
            && let Some(id) = langid
            && !id.is(text, lang)
        {
            return Some(Skip::WrongLanguage);
        }
        None
    }
}

/// Counts of dropped candidates per kind and reason.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SkipLog(pub BTreeMap<String, BTreeMap<Skip, usize>>);

impl SkipLog {
    pub fn add(&mut self, what: &str, skip: Skip) {
        *self.0.entry(what.to_string()).or_default().entry(skip).or_default() += 1;
    }

    pub fn total(&self) -> usize {
        self.0.values().flat_map(|m| m.values()).sum()
    }
}

impl std::fmt::Display for SkipLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().flat_map(|(what, m)| m.iter().map(move |(s, n)| format!("{what}: {n} {s:?}"))).collect();
        write!(f, "{}", if parts.is_empty() { "nothing dropped".into() } else { parts.join(", ") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfinished_text_is_trimmed_to_its_last_sentence_when_that_keeps_half() {
        let f = FilterConfig::default();
        assert_eq!(f.settle("One. Two three four five. Six sev", false), ("One. Two three four five.", true));
        assert!(!f.settle("One. Two three four five six seven eight nine", false).1);
        assert_eq!(f.settle("Done", true), ("Done", true));
    }

    #[test]
    fn degenerate_text_is_dropped_with_its_reason() {
        let f = FilterConfig::default();
        assert_eq!(f.check("   ", "en", true, None), Some(Skip::Empty));
        assert_eq!(f.check("fine", "en", false, None), Some(Skip::Unfinished));
        let looped = "I am a bot. I am a bot. I am a bot. I am a bot. I am a bot.";
        assert_eq!(f.check(looped, "en", true, None), Some(Skip::Repetitive));
        assert_eq!(f.check("Budapest is the capital of Hungary.", "en", true, None), None);
        let id = LanguageId::train([("en", "the house is big and the dog is small"), ("hu", "a ház nagy és a kutya kicsi")]);
        assert_eq!(f.check("the dog and the house are big", "hu", true, Some(&id)), Some(Skip::WrongLanguage));
    }
}
