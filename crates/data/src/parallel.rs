//! Parallel text: JSONL with one field per language code and optional `id` and `source`:
//!
//! ```json
//! {"id": "GEN.1.1", "source": "bible", "en": "In the beginning…", "hu": "Kezdetben…"}
//! ```
//!
//! A record may lack some languages (many-way corpora are rarely complete); consumers ask for
//! the languages they need with [`ParallelCorpus::aligned`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::{Map, Value};

use crate::error::{DataError, Result};
use crate::jsonl::{self, BadLines, SkipReport};

/// Fields of a parallel record that are not language codes.
const RESERVED: [&str; 3] = ["id", "source", "split"];

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ParallelRecord {
    pub id: Option<String>,
    pub source: Option<String>,
    /// Language code → text.
    pub texts: BTreeMap<String, String>,
}

/// Is `key` shaped like a language code (`en`, `hu`, `zh-CN`, `sw_TZ`, `ach`)?
pub fn looks_like_language_code(key: &str) -> bool {
    let (base, region) = match key.split_once(['-', '_']) {
        Some((b, r)) => (b, Some(r)),
        None => (key, None),
    };
    (2..=3).contains(&base.len())
        && base.chars().all(|c| c.is_ascii_lowercase())
        && region.is_none_or(|r| (2..=4).contains(&r.len()) && r.chars().all(|c| c.is_ascii_alphanumeric()))
}

fn parse_record(object: &Map<String, Value>) -> std::result::Result<ParallelRecord, String> {
    let optional = |key: &str| -> std::result::Result<Option<String>, String> {
        match object.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(format!("field `{key}` must be a string")),
        }
    };
    let mut texts = BTreeMap::new();
    for (key, value) in object {
        if RESERVED.contains(&key.as_str()) {
            continue;
        }
        if !looks_like_language_code(key) {
            return Err(format!("field `{key}` is not a language code (expected e.g. `en`, `hu`, `zh-CN`)"));
        }
        match value {
            Value::String(s) => {
                texts.insert(key.clone(), s.clone());
            }
            Value::Null => {}
            _ => return Err(format!("field `{key}` must be a string")),
        }
    }
    if texts.is_empty() {
        return Err("no language fields".into());
    }
    Ok(ParallelRecord { id: optional("id")?, source: optional("source")?, texts })
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParallelCorpus {
    pub records: Vec<ParallelRecord>,
}

impl ParallelCorpus {
    pub fn parse(text: &str, path: &Path, bad_lines: BadLines) -> Result<(Self, SkipReport)> {
        let (records, report) = jsonl::read_objects(text.as_bytes(), path, bad_lines, parse_record)?;
        Ok((ParallelCorpus { records }, report))
    }

    pub fn read(path: &Path, bad_lines: BadLines) -> Result<(Self, SkipReport)> {
        let (records, report) = jsonl::read_objects(jsonl::open(path)?, path, bad_lines, parse_record)?;
        if records.is_empty() {
            return Err(DataError::BadFile {
                path: path.to_path_buf(),
                reason: "no parallel records (the file is empty or every line was skipped)".into(),
            });
        }
        Ok((ParallelCorpus { records }, report))
    }

    /// Every language with its number of texts.
    pub fn language_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for r in &self.records {
            for lang in r.texts.keys() {
                *counts.entry(lang.clone()).or_insert(0) += 1;
            }
        }
        counts
    }

    /// The records that have every language in `langs`, with the texts in that order.
    /// Errors if a language occurs nowhere in the corpus.
    pub fn aligned(&self, langs: &[String]) -> Result<Vec<(&ParallelRecord, Vec<&str>)>> {
        let present: BTreeSet<String> = self.language_counts().into_keys().collect();
        if let Some(missing) = langs.iter().find(|l| !present.contains(*l)) {
            return Err(DataError::Invalid(format!(
                "language `{missing}` does not occur in the parallel data (it has: {})",
                present.into_iter().collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(self
            .records
            .iter()
            .filter_map(|r| {
                let texts: Option<Vec<&str>> = langs.iter().map(|l| r.texts.get(l).map(String::as_str)).collect();
                texts.map(|t| (r, t))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{"id": "1", "source": "bible", "en": "In the beginning", "hu": "Kezdetben"}
{"en": "Hello", "sw": "Habari"}

{"en": "Only English"}
"#;

    #[test]
    fn reads_records_and_aligns_languages() {
        let (corpus, report) = ParallelCorpus::parse(SAMPLE, Path::new("p.jsonl"), BadLines::Fail).unwrap();
        assert_eq!(report.skipped, 0);
        assert_eq!(corpus.records.len(), 3);
        assert_eq!(corpus.language_counts()["en"], 3);
        let pairs = corpus.aligned(&["en".into(), "hu".into()]).unwrap();
        assert_eq!(pairs.len(), 1);
        assert_eq!(pairs[0].1, vec!["In the beginning", "Kezdetben"]);
        let err = corpus.aligned(&["th".into()]).unwrap_err().to_string();
        assert!(err.contains("`th`") && err.contains("en, hu, sw"), "{err}");
    }

    #[test]
    fn bad_lines_name_the_line_or_are_skipped() {
        let text = "{\"en\": \"ok\"}\n{\"en\": 5}\nnot json\n{\"english\": \"x\"}\n";
        let err = ParallelCorpus::parse(text, Path::new("p.jsonl"), BadLines::Fail).unwrap_err().to_string();
        assert!(err.starts_with("p.jsonl:2:") && err.contains("must be a string"), "{err}");
        let (corpus, report) = ParallelCorpus::parse(text, Path::new("p.jsonl"), BadLines::Skip).unwrap();
        assert_eq!(corpus.records.len(), 1);
        assert_eq!(report.skipped, 3);
        assert!(report.examples[2].contains("line 4") && report.examples[2].contains("`english`"));
    }

    #[test]
    fn non_utf8_is_a_bad_line() {
        let bytes = b"{\"en\": \"ok\"}\n{\"en\": \"\xff\xfe\"}\n";
        let (_, report) = jsonl::read_objects(&bytes[..], Path::new("b.jsonl"), BadLines::Skip, parse_record).unwrap();
        assert_eq!(report.skipped, 1);
        assert!(report.examples[0].contains("not UTF-8"));
    }

    #[test]
    fn language_codes() {
        for ok in ["en", "hu", "zh-CN", "sw_TZ", "ach", "pt-BR"] {
            assert!(looks_like_language_code(ok), "{ok}");
        }
        for bad in ["english", "EN", "x", "text", "en-"] {
            assert!(!looks_like_language_code(bad), "{bad}");
        }
    }
}
