//! The embedded default corpus in `data/corpus/` (see its `manifest.json`), and the statistics
//! `rosetta data stats` prints for it or any other file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::jsonl::BadLines;
use crate::monolingual::{Document, read_documents};
use crate::parallel::ParallelCorpus;

/// The files of a corpus directory.
#[derive(Debug, Clone)]
pub struct CorpusDir {
    pub root: PathBuf,
}

impl CorpusDir {
    /// The corpus that ships with the repository: `ROSETTA_CORPUS` when set, else the checkout the
    /// binary was built from, else `data/corpus` under the working directory — a binary copied to
    /// another machine (the GPU run) or built from another worktree of the same target directory
    /// finds the checkout it runs in.
    pub fn embedded() -> Self {
        if let Some(root) = std::env::var_os("ROSETTA_CORPUS") {
            return CorpusDir { root: root.into() };
        }
        let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/corpus");
        let root = match built_from.canonicalize() {
            Ok(root) => root,
            Err(_) if Path::new("data/corpus/manifest.json").is_file() => PathBuf::from("data/corpus"),
            // Messages then name the path the binary was built with.
            Err(_) => built_from,
        };
        CorpusDir { root }
    }

    pub fn new(root: impl Into<PathBuf>) -> Self {
        CorpusDir { root: root.into() }
    }

    pub fn parallel_train(&self) -> PathBuf {
        self.root.join("parallel.train.jsonl")
    }

    pub fn parallel_test(&self) -> PathBuf {
        self.root.join("parallel.test.jsonl")
    }

    pub fn monolingual_train(&self) -> PathBuf {
        self.root.join("monolingual.train.jsonl")
    }

    pub fn monolingual_test(&self) -> PathBuf {
        self.root.join("monolingual.test.jsonl")
    }

    /// English instructions with reference answers (chatterbot-corpus): SDRRL's source.
    pub fn instructions_train(&self) -> PathBuf {
        self.root.join("instructions.train.jsonl")
    }

    pub fn instructions_test(&self) -> PathBuf {
        self.root.join("instructions.test.jsonl")
    }

    pub fn read_monolingual_train(&self) -> Result<Vec<Document>> {
        Ok(read_documents(&self.monolingual_train(), None, BadLines::Fail)?.0)
    }

    pub fn read_monolingual_test(&self) -> Result<Vec<Document>> {
        Ok(read_documents(&self.monolingual_test(), None, BadLines::Fail)?.0)
    }
}

/// Counts per language: documents (or records), characters, and per source.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct LanguageStats {
    pub items: usize,
    pub chars: usize,
    pub by_source: BTreeMap<String, usize>,
}

pub fn parallel_stats(corpus: &ParallelCorpus) -> BTreeMap<String, LanguageStats> {
    let mut stats: BTreeMap<String, LanguageStats> = BTreeMap::new();
    for record in &corpus.records {
        for (lang, text) in &record.texts {
            let entry = stats.entry(lang.clone()).or_default();
            entry.items += 1;
            entry.chars += text.chars().count();
            *entry.by_source.entry(record.source.clone().unwrap_or_else(|| "-".into())).or_insert(0) += 1;
        }
    }
    stats
}

pub fn document_stats(documents: &[Document]) -> BTreeMap<String, LanguageStats> {
    let mut stats: BTreeMap<String, LanguageStats> = BTreeMap::new();
    for d in documents {
        let entry = stats.entry(d.lang.clone()).or_default();
        entry.items += 1;
        entry.chars += d.text.chars().count();
        *entry.by_source.entry(d.source.clone().unwrap_or_else(|| "-".into())).or_insert(0) += 1;
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_corpus_has_every_promised_language() {
        let dir = CorpusDir::embedded();
        let (test, _) = ParallelCorpus::read(&dir.parallel_test(), BadLines::Fail).unwrap();
        let langs = test.language_counts();
        for lang in ["en", "hu", "th", "sw", "zh", "de", "ny", "yo", "zu"] {
            assert!(langs.get(lang).copied().unwrap_or(0) >= 50, "{lang}: {langs:?}");
        }
        let mono = dir.read_monolingual_train().unwrap();
        let stats = document_stats(&mono);
        assert!(stats["hu"].chars > 100_000 && stats["en"].chars > 100_000, "{stats:?}");
        let held_out = dir.read_monolingual_test().unwrap();
        assert!(held_out.iter().all(|d| d.source.as_deref() == Some("lingua")));
    }

    #[test]
    fn test_and_train_splits_share_no_text() {
        let dir = CorpusDir::embedded();
        let (train, _) = ParallelCorpus::read(&dir.parallel_train(), BadLines::Fail).unwrap();
        let (test, _) = ParallelCorpus::read(&dir.parallel_test(), BadLines::Fail).unwrap();
        let train_ids: std::collections::HashSet<_> = train.records.iter().filter_map(|r| r.id.clone()).collect();
        assert!(test.records.iter().all(|r| !train_ids.contains(r.id.as_ref().unwrap())));
        // Held out by document: no help page or catalogue appears on both sides.
        let document = |id: &str| id.split(['#', ':']).next().unwrap_or("").to_string();
        let train_docs: std::collections::HashSet<_> =
            train.records.iter().filter(|r| r.source.as_deref() != Some("bible")).map(|r| document(r.id.as_ref().unwrap())).collect();
        let leaked: Vec<_> = test
            .records
            .iter()
            .filter(|r| r.source.as_deref() != Some("bible"))
            .map(|r| document(r.id.as_ref().unwrap()))
            .filter(|d| train_docs.contains(d))
            .collect();
        assert!(leaked.is_empty(), "documents on both sides: {:?}", &leaked[..leaked.len().min(5)]);
    }
}
