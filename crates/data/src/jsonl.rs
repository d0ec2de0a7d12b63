//! Line-by-line JSONL reading with errors that name the line, shared by every record format.

use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{DataError, Result};

/// What to do with a line that does not parse or lacks a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BadLines {
    #[default]
    Fail,
    Skip,
}

/// Lines skipped while reading, for the caller to report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SkipReport {
    pub skipped: usize,
    /// The first few reasons, as `line N: reason`.
    pub examples: Vec<String>,
}

impl SkipReport {
    pub fn record(&mut self, line: usize, reason: &str) {
        self.skipped += 1;
        if self.examples.len() < 5 {
            self.examples.push(format!("line {line}: {reason}"));
        }
    }
}

/// The longest line a JSONL reader takes (a record is a document or a sentence pair; 64 MiB
/// is far beyond any).
pub const MAX_LINE_BYTES: usize = 64 << 20;

/// Reads JSON objects from `reader`, one per non-blank line, passing each with its line number
/// to `parse`. Non-UTF-8 input, invalid JSON and `parse` errors are bad lines.
pub fn read_objects<T>(
    reader: impl BufRead,
    path: &Path,
    bad_lines: BadLines,
    mut parse: impl FnMut(&Map<String, Value>) -> std::result::Result<T, String>,
) -> Result<(Vec<T>, SkipReport)> {
    let mut out = Vec::new();
    let mut report = SkipReport::default();
    let bad = |line: usize, reason: String, report: &mut SkipReport| -> Result<()> {
        match bad_lines {
            BadLines::Fail => Err(DataError::BadLine { path: path.to_path_buf(), line, reason }),
            BadLines::Skip => {
                report.record(line, &reason);
                Ok(())
            }
        }
    };
    let mut reader = reader;
    let mut raw = Vec::new();
    for index in 0.. {
        let line_no = index + 1;
        raw.clear();
        // At most MAX_LINE_BYTES + 1 per line: a file without newlines must not be read whole
        // into one line.
        let read = (&mut reader)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut raw)
            .map_err(|error| DataError::Io { path: path.to_path_buf(), error })?;
        if read == 0 {
            break;
        }
        if raw.len() > MAX_LINE_BYTES && raw.last() != Some(&b'\n') {
            return Err(DataError::BadLine {
                path: path.to_path_buf(),
                line: line_no,
                reason: format!("longer than {MAX_LINE_BYTES} bytes: one record per line is expected (is this JSONL?)"),
            });
        }
        if raw.last() == Some(&b'\n') {
            raw.pop();
        }
        let text = match std::str::from_utf8(&raw) {
            Ok(t) => t.trim(),
            Err(e) => {
                bad(line_no, format!("not UTF-8 ({e})"), &mut report)?;
                continue;
            }
        };
        if text.is_empty() {
            continue;
        }
        let object = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(o)) => o,
            Ok(_) => {
                bad(line_no, "expected a JSON object".into(), &mut report)?;
                continue;
            }
            Err(e) => {
                bad(line_no, format!("invalid JSON: {e}"), &mut report)?;
                continue;
            }
        };
        match parse(&object) {
            Ok(record) => out.push(record),
            Err(reason) => bad(line_no, reason, &mut report)?,
        }
    }
    Ok((out, report))
}

/// Opens `path` for buffered reading.
pub fn open(path: &Path) -> Result<std::io::BufReader<std::fs::File>> {
    std::fs::File::open(path).map(std::io::BufReader::new).map_err(|error| DataError::Io { path: PathBuf::from(path), error })
}

/// A string field, or an error naming it.
pub fn string_field(object: &Map<String, Value>, key: &str) -> std::result::Result<String, String> {
    match object.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!("field `{key}` must be a string")),
        None => Err(format!("missing field `{key}`")),
    }
}
