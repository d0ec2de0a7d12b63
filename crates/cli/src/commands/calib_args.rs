//! The calibration arguments `rosetta features` and `rosetta prune` share, and building the
//! prompts they describe from the corpus (and code files).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rosetta_data::BadLines;
use rosetta_data::corpus::CorpusDir;
use rosetta_data::parallel::ParallelCorpus;
use rosetta_data::prompts::{CalibKind, code_prompts, monolingual_prompts, translation_prompts};
use rosetta_model::{CausalLm, TextTokenizer};
use rosetta_prune::Calibration;

#[derive(clap::Args, Debug, Clone)]
pub struct CalibArgs {
    /// Languages of the prompts (translation pairs each with English).
    #[arg(long, value_delimiter = ',', default_value = "hu,de,zh,th,sw,ny,yo,zu")]
    pub langs: Vec<String>,
    /// Number of calibration prompts per setting.
    #[arg(long, default_value_t = 32)]
    pub prompts: usize,
    /// Solved examples before the last pair of a translation prompt.
    #[arg(long, default_value_t = 4)]
    pub shots: usize,
    /// Longest prompt allowed, in tokens (default: the model's context, at most 2048).
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// Longest monolingual or code prompt, in characters (600 ≈ the tokens of a 4-shot
    /// translation prompt in most languages; Thai takes ~1.7 tokens per character).
    #[arg(long, default_value_t = 600)]
    pub prompt_chars: usize,
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Corpus directory (`rosetta data build` layout). Default: the embedded corpus.
    #[arg(long)]
    pub corpus: Option<PathBuf>,
    /// Code files or directories for code prompts. Default: this repository's Rust sources.
    #[arg(long)]
    pub code: Vec<PathBuf>,
}

impl CalibArgs {
    fn corpus(&self) -> CorpusDir {
        self.corpus.clone().map(CorpusDir::new).unwrap_or_else(CorpusDir::embedded)
    }

    pub fn prompts(&self, kind: CalibKind, tokenizer: &TextTokenizer) -> Result<Vec<String>> {
        anyhow::ensure!(self.prompts > 0, "--prompts must be at least 1: an empty calibration set tells nothing");
        let corpus = self.corpus();
        Ok(match kind {
            CalibKind::Translation => {
                let (parallel, _) = ParallelCorpus::read(&corpus.parallel_train(), BadLines::Fail)?;
                let separator = tokenizer.eos_token.clone().unwrap_or_else(|| "\n".into());
                translation_prompts(&parallel, &self.langs, self.prompts, self.shots, &separator, self.seed)?
            }
            CalibKind::Monolingual => {
                let docs = corpus.read_monolingual_train()?;
                monolingual_prompts(&docs, &self.langs, self.prompts, self.prompt_chars, self.seed)?
            }
            CalibKind::Code => {
                let sources = read_code(&self.code)?;
                code_prompts(&sources, self.prompts, self.prompt_chars)?
            }
        })
    }

    pub fn calibration(&self, kind: CalibKind, model: &CausalLm, tokenizer: &TextTokenizer) -> Result<Calibration> {
        let context = model.config().max_position_embeddings.min(2048);
        let limit = self.max_tokens.unwrap_or(context);
        anyhow::ensure!(
            limit <= model.config().max_position_embeddings,
            "--max-tokens {limit} exceeds the model's context of {}",
            model.config().max_position_embeddings
        );
        let prompts = self.prompts(kind, tokenizer)?;
        Calibration::new(tokenizer, &prompts, self.batch_size, limit).with_context(|| format!("{kind} calibration"))
    }
}

/// The text of code files: the given files/directories, or this repository's `crates/`.
fn read_code(paths: &[PathBuf]) -> Result<Vec<String>> {
    let roots: Vec<PathBuf> = if paths.is_empty() { vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("..")] } else { paths.to_vec() };
    let mut files = Vec::new();
    for root in &roots {
        collect(root, &mut files).with_context(|| format!("reading code from {}", root.display()))?;
    }
    files.sort();
    anyhow::ensure!(!files.is_empty(), "no .rs or .py files under {:?}; pass --code DIR", roots);
    files.iter().map(|f| std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))).collect()
}

fn collect(path: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if path.is_dir() {
        for entry in std::fs::read_dir(path)? {
            collect(&entry?.path(), out)?;
        }
    } else if path.extension().is_some_and(|e| e == "rs" || e == "py") {
        out.push(path.to_path_buf());
    }
    Ok(())
}
