//! A small character-trigram language identifier, trained on the embedded monolingual corpus,
//! for the transfer set's "wrong language" filter: a generation meant to be Hungarian that comes
//! out English (a common failure of small models asked to translate) is dropped.

use std::collections::{BTreeMap, HashMap};

/// Trigram profiles per language.
pub struct LanguageId {
    profiles: BTreeMap<String, HashMap<String, f64>>,
}

/// Letters under this count are too short to judge.
pub const MIN_LETTERS: usize = 12;

fn trigrams(text: &str) -> HashMap<String, f64> {
    let chars: Vec<char> = std::iter::once(' ')
        .chain(text.to_lowercase().chars().map(|c| if c.is_alphabetic() { c } else { ' ' }))
        .chain(std::iter::once(' '))
        .collect();
    let mut counts: HashMap<String, f64> = HashMap::new();
    for w in chars.windows(3) {
        if w.iter().all(|c| *c == ' ') || (w[1] == ' ' && (w[0] == ' ' || w[2] == ' ')) {
            continue;
        }
        *counts.entry(w.iter().collect()).or_default() += 1.0;
    }
    let norm = counts.values().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
    counts.values_mut().for_each(|v| *v /= norm);
    counts
}

impl LanguageId {
    /// Profiles from `(lang, text)` samples.
    pub fn train<'a>(samples: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut text: BTreeMap<String, String> = BTreeMap::new();
        for (lang, t) in samples {
            let entry = text.entry(lang.to_string()).or_default();
            if entry.len() < 200_000 {
                entry.push(' ');
                entry.push_str(t);
            }
        }
        LanguageId { profiles: text.into_iter().map(|(l, t)| (l, trigrams(&t))).collect() }
    }

    pub fn languages(&self) -> Vec<&str> {
        self.profiles.keys().map(String::as_str).collect()
    }

    /// The most similar language and its cosine similarity; `None` for text with too few letters.
    pub fn detect(&self, text: &str) -> Option<(&str, f64)> {
        if text.chars().filter(|c| c.is_alphabetic()).count() < MIN_LETTERS {
            return None;
        }
        let probe = trigrams(text);
        self.profiles
            .iter()
            .map(|(lang, profile)| (lang.as_str(), probe.iter().map(|(k, v)| v * profile.get(k).copied().unwrap_or(0.0)).sum::<f64>()))
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }

    /// Whether `text` reads as `lang` (true when too short to judge, or `lang` has no profile).
    pub fn is(&self, text: &str, lang: &str) -> bool {
        if !self.profiles.contains_key(lang) {
            return true;
        }
        self.detect(text).is_none_or(|(found, _)| found == lang)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_hungarian_from_english() {
        let id = LanguageId::train([
            ("en", "the quick brown fox jumps over the lazy dog and then the dog sleeps in the house with the cat"),
            ("hu", "a gyors barna róka átugrik a lusta kutyán és aztán a kutya alszik a házban a macskával együtt"),
        ]);
        assert_eq!(id.detect("the dog is in the house").map(|d| d.0), Some("en"));
        assert_eq!(id.detect("a kutya a házban alszik").map(|d| d.0), Some("hu"));
        assert!(id.is("ok", "hu"), "too short to judge");
        assert!(!id.is("the dog sleeps in the house", "hu"));
    }
}
