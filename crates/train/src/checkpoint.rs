//! Checkpoints: `<out>/checkpoints/step-000050/` with `model.bpk` (burn module record: every
//! parameter with its id, LoRA factors included), `optimizer.bpk` (AdamW moments, keyed by
//! parameter id) and `state.json` (step, data-stream position, config identity).
//!
//! A checkpoint directory is staged under a hidden name and renamed into place when complete, so
//! killing the process at any moment leaves every existing checkpoint intact; older ones are
//! pruned only after a newer one is committed, each renamed away before it is deleted (a crash
//! leaves no half-deleted checkpoint under a `step-` name). Staging directories of killed runs
//! are removed when the next run starts ([`rosetta_model::atomic::remove_stale`]).

use std::path::{Path, PathBuf};

use rosetta_model::CausalLm;
use rosetta_model::atomic::StagedDir;
use rosetta_model::burn::module::Module;
use rosetta_model::burn::optim::ModuleOptimizer;
use rosetta_model::burn::store::ModuleRecord;
use rosetta_model::burn::tensor::Bytes;

use crate::error::{Result, TrainError};
use crate::stream::StreamState;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RunState {
    pub step: usize,
    pub tokens_seen: u64,
    pub stream: StreamState,
    /// [`crate::config::TrainConfig::identity`] of the run that wrote it.
    pub config: serde_json::Value,
    pub rosetta_version: String,
    /// The training method's own state ([`crate::Method::state`]); null for plain runs.
    #[serde(default)]
    pub method: serde_json::Value,
    /// The data files' contents when the checkpoint was written ([`DataDigest::of_files`]):
    /// the stream position only means something over the same bytes. Empty in checkpoints of
    /// older versions (not checked then).
    #[serde(default)]
    pub data: Vec<DataDigest>,
    /// f16 runs' dynamic loss scale ([`crate::precision::LossScale`]); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<crate::precision::LossScale>,
}

/// One data file by content: its SHA-256 and length.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DataDigest {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

impl DataDigest {
    /// Hashes each file (streamed, in order).
    pub fn of_files<'a>(paths: impl IntoIterator<Item = &'a Path>) -> Result<Vec<DataDigest>> {
        use sha2::Digest;
        use std::io::Read;
        paths
            .into_iter()
            .map(|path| {
                let unreadable = |e: std::io::Error| TrainError::Invalid(format!("{}: {e}", path.display()));
                let mut file = std::fs::File::open(path).map_err(unreadable)?;
                let mut hasher = sha2::Sha256::new();
                let mut buffer = vec![0u8; 1 << 16];
                let mut bytes = 0u64;
                loop {
                    let n = file.read(&mut buffer).map_err(unreadable)?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buffer[..n]);
                    bytes += n as u64;
                }
                let sha256 = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
                Ok(DataDigest { path: path.display().to_string(), bytes, sha256 })
            })
            .collect()
    }

    /// The first file whose contents differ from what the checkpoint at `step` was trained
    /// on, as an error that says what to do.
    pub fn check_unchanged(saved: &[DataDigest], now: &[DataDigest], step: usize) -> Result<()> {
        if saved.is_empty() {
            return Ok(());
        }
        if saved.len() != now.len() {
            return Err(TrainError::Resume(format!(
                "the checkpoint at step {step} was trained on {} data file(s), the config now lists {}; resume with the same data or start a new run (another run.out)",
                saved.len(),
                now.len()
            )));
        }
        for (then, now) in saved.iter().zip(now) {
            if then.sha256 != now.sha256 {
                return Err(TrainError::Resume(format!(
                    "{} changed since the checkpoint at step {step} was written ({} bytes, SHA-256 {}… then; {} bytes, {}… now): \
                     the resumed run would not see the rows the interrupted one would have. Put the original file back, or start a new run (another run.out)",
                    now.path,
                    then.bytes,
                    &then.sha256[..then.sha256.len().min(12)],
                    now.bytes,
                    &now.sha256[..now.sha256.len().min(12)],
                )));
            }
        }
        Ok(())
    }
}

pub struct CheckpointStore {
    pub dir: PathBuf,
    pub keep_last: usize,
}

fn write_error(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Write { path: path.to_path_buf(), reason: e.to_string() }
}

impl CheckpointStore {
    pub fn new(out: &Path, keep_last: usize) -> Self {
        CheckpointStore { dir: out.join("checkpoints"), keep_last }
    }

    fn path_of(&self, step: usize) -> PathBuf {
        self.dir.join(format!("step-{step:06}"))
    }

    /// Committed checkpoints, oldest first.
    pub fn list(&self) -> Vec<(usize, PathBuf)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        let mut found: Vec<(usize, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let step = name.strip_prefix("step-")?.parse().ok()?;
                Some((step, e.path()))
            })
            .collect();
        found.sort();
        found
    }

    pub fn latest(&self) -> Option<(usize, PathBuf)> {
        self.list().pop()
    }

    pub fn save(&self, model: &CausalLm, optimizer: &ModuleOptimizer, state: &RunState) -> Result<PathBuf> {
        let target = self.path_of(state.step);
        let staged = StagedDir::new(&target, true)?;
        let model_bytes = model.clone().into_record().into_bytes().map_err(|e| write_error(&target, e))?;
        staged.write("model.bpk", &model_bytes)?;
        let optimizer_bytes = optimizer.into_bytes().map_err(|e| write_error(&target, e))?;
        staged.write("optimizer.bpk", &optimizer_bytes)?;
        staged.write("state.json", &serde_json::to_vec_pretty(state).map_err(|e| write_error(&target, e))?)?;
        let path = staged.commit()?;
        let all = self.list();
        if all.len() > self.keep_last {
            for (_, old) in &all[..all.len() - self.keep_last] {
                rosetta_model::atomic::crash_point("an older checkpoint not yet pruned");
                rosetta_model::atomic::remove_dir(old)?;
            }
        }
        Ok(path)
    }

    /// Loads a checkpoint into `model` (same structure: base, LoRA and all) and `optimizer`.
    pub fn load(&self, path: &Path, model: CausalLm, optimizer: ModuleOptimizer) -> Result<(CausalLm, ModuleOptimizer, RunState)> {
        let (model, state) = self.load_model(path, model)?;
        let optimizer = optimizer
            .from_bytes(Bytes::from_bytes_vec(self.read(path, "optimizer.bpk")?))
            .map_err(|e| self.corrupt(path, "optimizer.bpk", e.to_string()))?;
        Ok((model, optimizer, state))
    }

    /// A checkpoint's `state.json` alone (what a resume checks before loading anything).
    pub fn read_state(&self, path: &Path) -> Result<RunState> {
        serde_json::from_slice(&self.read(path, "state.json")?).map_err(|e| self.corrupt(path, "state.json", e.to_string()))
    }

    /// Loads a checkpoint's model and state, without the optimizer (exporting a run's adapter).
    pub fn load_model(&self, path: &Path, model: CausalLm) -> Result<(CausalLm, RunState)> {
        let state = self.read_state(path)?;
        let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(self.read(path, "model.bpk")?))
            .map_err(|e| self.corrupt(path, "model.bpk", e.to_string()))?;
        let model = model.try_load_record(record).map_err(|e| self.corrupt(path, "model.bpk", e.to_string()))?;
        Ok((model, state))
    }

    fn read(&self, path: &Path, file: &str) -> Result<Vec<u8>> {
        std::fs::read(path.join(file)).map_err(|e| self.corrupt(path, file, e.to_string()))
    }

    /// A checkpoint file that cannot be used, with the older checkpoint to fall back on.
    fn corrupt(&self, path: &Path, file: &str, reason: String) -> TrainError {
        let fallback = self
            .list()
            .into_iter()
            .rev()
            .find(|(_, p)| p != path)
            .map(|(_, p)| p.display().to_string())
            .unwrap_or_else(|| "the start (no older checkpoint)".into());
        TrainError::CorruptCheckpoint { path: path.join(file), reason, fallback }
    }
}
