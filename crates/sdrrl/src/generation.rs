//! Batched generation that survives interruption: every finished batch is appended to a JSONL
//! log (one line per prompt, flushed and synced), and a rerun skips the ids already there. A
//! line cut off by a crash is dropped on reopening, so at most one batch is redone.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rosetta_model::generate::{GenerationConfig, StopReason, generate_blocking};
use rosetta_model::{CausalLm, Interventions, TextTokenizer};
use serde::{Deserialize, Serialize};

use crate::error::{Result, SdrrlError};

/// One prompt to complete.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub prompt: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generated {
    pub id: String,
    pub text: String,
    /// Ended by a stop token (false: cut at the token limit).
    pub finished: bool,
    pub tokens: usize,
}

/// Throughput of one [`GenerationLog::run`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GenerationStats {
    pub prompts: usize,
    pub new_tokens: usize,
    pub seconds: f64,
    pub batch_size: usize,
}

impl GenerationStats {
    pub fn tokens_per_second(&self) -> f64 {
        self.new_tokens as f64 / self.seconds.max(1e-9)
    }
}

pub struct GenerationLog {
    path: PathBuf,
    done: HashMap<String, Generated>,
}

impl GenerationLog {
    /// Opens (or starts) the log at `path`, keeping every complete line.
    pub fn open(path: &Path) -> Result<Self> {
        let mut done = HashMap::new();
        if path.exists() {
            let text = std::fs::read_to_string(path).map_err(|e| SdrrlError::File { path: path.to_path_buf(), reason: e.to_string() })?;
            let complete = if text.ends_with('\n') { text.as_str() } else { text.rsplit_once('\n').map_or("", |(head, _)| head) };
            for (n, line) in complete.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                let g: Generated = serde_json::from_str(line).map_err(|e| SdrrlError::File {
                    path: path.to_path_buf(),
                    reason: format!("line {} is not a generation record ({e}); delete the file to regenerate", n + 1),
                })?;
                done.insert(g.id.clone(), g);
            }
            if complete.len() != text.len() {
                // Drop the torn last line so appends start on a fresh line.
                let keep = if complete.is_empty() { String::new() } else { format!("{complete}\n") };
                std::fs::write(path, keep).map_err(|e| SdrrlError::File { path: path.to_path_buf(), reason: e.to_string() })?;
            }
        }
        Ok(GenerationLog { path: path.to_path_buf(), done })
    }

    pub fn get(&self, id: &str) -> Option<&Generated> {
        self.done.get(id)
    }

    pub fn len(&self) -> usize {
        self.done.len()
    }

    pub fn is_empty(&self) -> bool {
        self.done.is_empty()
    }

    /// Generates every job not yet in the log, `batch_size` prompts at a time (similar lengths
    /// together). `progress(done, total)` hears each batch; `stop_after_batches` stops early
    /// (tests of resumption).
    pub fn run(
        &mut self,
        model: &CausalLm,
        tokenizer: &TextTokenizer,
        jobs: &[Job],
        config: &GenerationConfig,
        batch_size: usize,
        stop_after_batches: Option<usize>,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<GenerationStats> {
        if batch_size == 0 {
            return Err(SdrrlError::Invalid("batch_size must be at least 1".into()));
        }
        let mut todo: Vec<&Job> = jobs.iter().filter(|j| !self.done.contains_key(&j.id)).collect();
        todo.sort_by_key(|j| j.prompt.len());
        let total = jobs.len();
        let mut stats = GenerationStats { batch_size, ..Default::default() };
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| SdrrlError::File { path: self.path.clone(), reason: e.to_string() })?;
        let mut done = total - todo.len();
        progress(done, total);
        for (b, chunk) in todo.chunks(batch_size).enumerate() {
            if stop_after_batches == Some(b) {
                break;
            }
            let prompts: Vec<Vec<u32>> = chunk.iter().map(|j| j.prompt.clone()).collect();
            let start = Instant::now();
            let output = generate_blocking(model, &prompts, config, &Interventions::none(), |_, _| {})?;
            stats.seconds += start.elapsed().as_secs_f64();
            stats.new_tokens += output.new_tokens();
            stats.prompts += chunk.len();
            let mut lines = String::new();
            for ((job, tokens), stop) in chunk.iter().zip(&output.tokens).zip(&output.stop_reasons) {
                let text = tokenizer.decode(tokens, true)?.trim().to_string();
                let g = Generated { id: job.id.clone(), text, finished: *stop == StopReason::StopToken, tokens: tokens.len() };
                lines.push_str(&serde_json::to_string(&g).map_err(|e| SdrrlError::Invalid(e.to_string()))?);
                lines.push('\n');
                self.done.insert(g.id.clone(), g);
            }
            file.write_all(lines.as_bytes())
                .and_then(|_| file.sync_data())
                .map_err(|e| SdrrlError::File { path: self.path.clone(), reason: e.to_string() })?;
            done += chunk.len();
            progress(done, total);
        }
        Ok(stats)
    }
}
