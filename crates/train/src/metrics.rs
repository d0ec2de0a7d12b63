//! Metrics as JSON lines (`<out>/metrics.jsonl`): one line per optimizer step (`loss`, `lr`,
//! `grad_norm`, `tokens_per_second`, ...) and one per evaluation (`eval`: bits/char per
//! language). On resume, lines past the checkpoint's step (and a torn last line) are dropped, so
//! the file reads as one uninterrupted run. Every record is also a TensorBoard event
//! ([`crate::tensorboard`]) in the same directory; on resume the event file is rewritten from the
//! kept lines, so the two always hold the same numbers.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Result, TrainError};
use crate::tensorboard::{EventWriter, WALL_TIME, wall_time_now};

pub struct MetricsLog {
    path: PathBuf,
    file: std::fs::File,
    events: EventWriter,
}

impl MetricsLog {
    /// Opens the log, keeping only whole lines with `step <= keep_through` (all when `None`
    /// and the file is new).
    pub fn open(path: &Path, keep_through: Option<usize>) -> Result<Self> {
        let err = |e: std::io::Error| TrainError::Write { path: path.to_path_buf(), reason: e.to_string() };
        let kept: Vec<String> = match (std::fs::read_to_string(path), keep_through) {
            (Ok(text), Some(limit)) => text
                .lines()
                .filter(|line| {
                    serde_json::from_str::<Value>(line)
                        .ok()
                        .and_then(|v| v.get("step").and_then(Value::as_u64))
                        .is_some_and(|s| s as usize <= limit)
                })
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        };
        let mut contents = kept.join("\n");
        if !contents.is_empty() {
            contents.push('\n');
        }
        rosetta_model::atomic::write_file(path, contents.as_bytes())?;
        let file = std::fs::OpenOptions::new().append(true).open(path).map_err(err)?;
        let mut events = EventWriter::create(path.parent().unwrap_or(Path::new(".")))?;
        let now = wall_time_now();
        for line in &kept {
            if let Ok(record) = serde_json::from_str::<Value>(line) {
                events.write_record(&record, now)?;
            }
        }
        Ok(MetricsLog { path: path.to_path_buf(), file, events })
    }

    /// Appends a record, stamped with its wall time (TensorBoard's time axis, kept across a
    /// resume's rewrite).
    pub fn write(&mut self, record: &Value) -> Result<()> {
        let mut record = record.clone();
        if let Some(fields) = record.as_object_mut() {
            fields.insert(WALL_TIME.into(), wall_time_now().into());
        }
        let mut line = record.to_string();
        line.push('\n');
        rosetta_model::atomic::crash_point("metrics line not yet written");
        // Synced per record (one small write per step): a line the log shows is on disk.
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.sync_data())
            .map_err(|e| TrainError::Write { path: self.path.clone(), reason: e.to_string() })?;
        self.events.write_record(&record, wall_time_now())
    }

    /// The TensorBoard event file written beside the JSON lines.
    pub fn events_path(&self) -> &Path {
        self.events.path()
    }
}

/// Reads a metrics file back (for plots and tests).
pub fn read_metrics(path: &Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::Invalid(format!("{}: {e}", path.display())))?;
    Ok(text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
}
