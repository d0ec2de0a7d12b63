//! `data/manifest.json`: what a lab build serves next to the page — the model files, an optional
//! extended tokenizer, and the texts the rooms work on. `rosetta lab` writes it; the page reads it
//! first. Everything it names is a path relative to the manifest (same origin, nothing remote).

use serde::{Deserialize, Serialize};

pub const SCHEMA: &str = "rosetta-lab/1";
pub const FILE_NAME: &str = "manifest.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelFormat {
    /// One `.gguf` file.
    Gguf,
    /// `config.json`, `tokenizer.json`, optional `tokenizer_config.json` and safetensors shards.
    Hf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelFiles {
    /// Shown to the visitor.
    pub name: String,
    pub format: ModelFormat,
    /// Relative paths; for HF the file name says what each is.
    pub files: Vec<String>,
    /// Total size, for the progress bar when a server sends no Content-Length.
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExtendedTokenizer {
    /// e.g. "SmolLM2 + 1000 hu tokens".
    pub label: String,
    /// A `tokenizer.json` (HF format), relative path.
    pub file: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema: String,
    /// The model the page loads on open; `None` serves the page with only the file picker.
    pub model: Option<ModelFiles>,
    pub extended_tokenizer: Option<ExtendedTokenizer>,
    /// The dominant language (the shift's destination, the teacher's language).
    pub english: String,
    /// `english` first, then the target languages.
    pub langs: Vec<String>,
    /// Parallel sentences, each row aligned with `langs`.
    pub parallel: Vec<Vec<String>>,
    /// Few-shot translation prompts (Kim et al.'s calibration) and monolingual text, for the
    /// magnitude-feature room.
    pub translation_prompts: Vec<String>,
    pub monolingual_prompts: Vec<String>,
    /// Where the texts come from (licences are in data/corpus/manifest.json).
    pub sources: String,
    /// Analyses the CLI exported for the served model, shown at once next to the page's own
    /// (smaller) live measurement.
    #[serde(default)]
    pub exports: Exports,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Exports {
    /// `rosetta geometry`'s `geometry.json` (relative path).
    pub geometry: Option<String>,
    /// `rosetta features`' `features.json` (relative path).
    pub features: Option<String>,
}

impl Manifest {
    /// Checks what the rooms rely on, naming the fix.
    pub fn validate(&self) -> Result<(), String> {
        if self.schema != SCHEMA {
            return Err(format!("manifest schema `{}` is not `{SCHEMA}`: rebuild it with `rosetta lab`", self.schema));
        }
        if self.langs.first() != Some(&self.english) || self.langs.len() < 2 {
            return Err(format!("manifest languages {:?} must start with `{}` and name a target language", self.langs, self.english));
        }
        if let Some(row) = self.parallel.iter().position(|r| r.len() != self.langs.len()) {
            return Err(format!("manifest parallel row {row} has {} texts for {} languages", self.parallel[row].len(), self.langs.len()));
        }
        if self.parallel.is_empty() {
            return Err("the manifest has no parallel sentences".into());
        }
        Ok(())
    }

    /// The texts of `lang` in the parallel rows (empty for an unknown language).
    pub fn sentences(&self, lang: &str) -> Vec<&str> {
        match self.langs.iter().position(|l| l == lang) {
            Some(i) => self.parallel.iter().map(|r| r[i].as_str()).collect(),
            None => Vec::new(),
        }
    }

    pub fn targets(&self) -> &[String] {
        &self.langs[1..]
    }
}

/// What `rosetta lab` puts in a manifest besides the model.
#[derive(Debug, Clone)]
pub struct ManifestOptions {
    pub langs: Vec<String>,
    /// Parallel rows (all languages present, each text at most `max_chars`).
    pub rows: usize,
    pub max_chars: usize,
    /// Few-shot translation and monolingual prompts for the feature room, each.
    pub prompts: usize,
}

impl Default for ManifestOptions {
    fn default() -> Self {
        ManifestOptions { langs: ["en", "hu", "de", "zh"].map(String::from).to_vec(), rows: 48, max_chars: 160, prompts: 8 }
    }
}

/// The texts of a manifest from a corpus directory (the held-out splits: nothing the trainer saw).
#[cfg(not(target_family = "wasm"))]
pub fn build(corpus: &crate::corpus::CorpusDir, options: &ManifestOptions) -> Result<Manifest, String> {
    use crate::BadLines;
    use crate::parallel::{ParallelCorpus, ParallelRecord};

    let english = options.langs.first().cloned().ok_or("no languages given")?;
    let (parallel, _) = ParallelCorpus::read(&corpus.parallel_test(), BadLines::Skip).map_err(|e| e.to_string())?;
    let aligned = parallel.aligned(&options.langs).map_err(|e| e.to_string())?;
    let rows: Vec<(&ParallelRecord, Vec<&str>)> =
        aligned.into_iter().filter(|(_, texts)| texts.iter().all(|t| t.chars().count() <= options.max_chars)).take(options.rows).collect();
    if rows.len() < options.rows {
        return Err(format!(
            "{} has only {} rows with all of {:?} under {} characters (asked for {}): ask for fewer rows or other languages",
            corpus.parallel_test().display(),
            rows.len(),
            options.langs,
            options.max_chars,
            options.rows
        ));
    }
    // Short few-shot prompts from the same rows keep the feature room fast.
    let short = ParallelCorpus { records: rows.iter().map(|(r, _)| (*r).clone()).collect() };
    let translation_prompts =
        crate::prompts::translation_prompts(&short, &options.langs, options.prompts, 1, "\n", 0).map_err(|e| e.to_string())?;
    let documents = corpus.read_monolingual_test().map_err(|e| e.to_string())?;
    let monolingual_prompts = crate::prompts::monolingual_prompts(&documents, &options.langs, options.prompts, options.max_chars * 2, 0)
        .map_err(|e| e.to_string())?;
    Ok(Manifest {
        schema: SCHEMA.into(),
        model: None,
        extended_tokenizer: None,
        english,
        langs: options.langs.clone(),
        parallel: rows.iter().map(|(_, texts)| texts.iter().map(|t| t.to_string()).collect()).collect(),
        translation_prompts,
        monolingual_prompts,
        sources: format!("held-out splits of {} (licences in its manifest.json)", corpus.root.display()),
        exports: Exports::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            schema: SCHEMA.into(),
            model: None,
            extended_tokenizer: None,
            english: "en".into(),
            langs: vec!["en".into(), "hu".into()],
            parallel: vec![vec!["Hello".into(), "Szia".into()]],
            translation_prompts: vec![],
            monolingual_prompts: vec![],
            sources: String::new(),
            exports: Exports::default(),
        }
    }

    #[test]
    fn sentences_follow_the_language_columns() {
        let m = manifest();
        assert!(m.validate().is_ok());
        assert_eq!(m.sentences("hu"), vec!["Szia"]);
        assert!(m.sentences("de").is_empty());
        assert_eq!(m.targets(), &["hu".to_string()]);
    }

    #[test]
    fn ragged_rows_and_foreign_schemas_are_named() {
        let mut m = manifest();
        m.parallel.push(vec!["only one".into()]);
        assert!(m.validate().unwrap_err().contains("row 1"));
        let mut m = manifest();
        m.schema = "other".into();
        assert!(m.validate().unwrap_err().contains("rosetta lab"));
    }

    #[test]
    fn the_embedded_corpus_gives_aligned_short_rows_and_prompts() {
        let corpus = crate::corpus::CorpusDir::embedded();
        let m = build(&corpus, &ManifestOptions::default()).unwrap();
        m.validate().unwrap();
        assert_eq!(m.parallel.len(), 48);
        assert!(m.parallel.iter().flatten().all(|t| t.chars().count() <= 160 && !t.is_empty()));
        assert_eq!(m.translation_prompts.len(), 8);
        assert!(m.translation_prompts[0].contains("English: "));
        let too_many = ManifestOptions { rows: 1_000_000, ..ManifestOptions::default() };
        assert!(build(&corpus, &too_many).unwrap_err().contains("fewer rows"));
    }
}
