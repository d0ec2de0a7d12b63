//! TensorBoard event files beside `metrics.jsonl`, so a run opens in TensorBoard (or anything
//! else that reads its event files) as it trains.
//!
//! The format (TensorFlow's `TFRecord` framing of `tensorflow.Event` protobufs): each record is
//! `u64 length · u32 masked CRC32C(length) · data · u32 masked CRC32C(data)`, little-endian. The
//! first event carries `file_version = "brain.Event:2"`; every later one a wall time, a step and a
//! `Summary` of `(tag, simple_value)` pairs. No Rust crate for this is maintained, and the two
//! messages we write are five fields, so they are encoded here by hand.
//!
//! Scalars are the metrics records themselves: every number in a record but `step`, nested
//! objects joined with `/` (`loss`, `lr`, `parts/contrastive`, `eval/hu/bits_per_char`), so the
//! events and the JSON lines say the same thing. The file is rewritten from the kept JSON lines
//! when a run resumes (see [`crate::metrics::MetricsLog::open`]), so the two stay equal.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Result, TrainError};

/// The file-name prefix TensorBoard looks for.
pub const EVENT_FILE_PREFIX: &str = "events.out.tfevents.";

/// The suffix that marks an event file as Rosetta's (rewritten on resume).
const OWN_SUFFIX: &str = ".rosetta";

/// TFRecord's CRC mask: checksums of data that itself holds checksums stay useful.
fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One TFRecord: length, its checksum, the data, its checksum.
fn record(data: &[u8]) -> Vec<u8> {
    let length = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend(length);
    out.extend(masked_crc(&length).to_le_bytes());
    out.extend(data);
    out.extend(masked_crc(data).to_le_bytes());
    out
}

fn varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A length-delimited protobuf field (wire type 2).
fn bytes_field(field: u32, bytes: &[u8], out: &mut Vec<u8>) {
    varint(u64::from(field << 3 | 2), out);
    varint(bytes.len() as u64, out);
    out.extend(bytes);
}

/// `Event { wall_time = 1 (double), step = 2 (int64), file_version = 3, summary = 5 }`.
fn event(wall_time: f64, step: i64, body: EventBody<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    out.push(1 << 3 | 1);
    out.extend(wall_time.to_le_bytes());
    out.push(2 << 3);
    varint(step as u64, &mut out);
    match body {
        EventBody::FileVersion(version) => bytes_field(3, version.as_bytes(), &mut out),
        EventBody::Scalars(scalars) => {
            // `Summary { repeated Value value = 1 }`, `Value { tag = 1, simple_value = 2 (float) }`.
            let mut summary = Vec::new();
            for (tag, value) in scalars {
                let mut entry = Vec::new();
                bytes_field(1, tag.as_bytes(), &mut entry);
                entry.push(2 << 3 | 5);
                entry.extend((*value as f32).to_le_bytes());
                bytes_field(1, &entry, &mut summary);
            }
            bytes_field(5, &summary, &mut out);
        }
    }
    out
}

enum EventBody<'a> {
    FileVersion(&'a str),
    Scalars(&'a [(String, f64)]),
}

/// The key of a record's wall time (seconds since the epoch), the event's own timestamp.
pub const WALL_TIME: &str = "wall_time";

/// The scalars of one metrics record: every finite number but `step` and `wall_time`, nested
/// keys joined by `/`.
pub fn scalars_of(record: &Value) -> Vec<(String, f64)> {
    fn walk(prefix: &str, value: &Value, out: &mut Vec<(String, f64)>) {
        match value {
            Value::Number(n) => {
                if let Some(x) = n.as_f64().filter(|x| x.is_finite()) {
                    out.push((prefix.to_string(), x));
                }
            }
            Value::Object(map) => {
                for (key, inner) in map {
                    let tag = if prefix.is_empty() { key.clone() } else { format!("{prefix}/{key}") };
                    if !(prefix.is_empty() && (key == "step" || key == WALL_TIME)) {
                        walk(&tag, inner, out);
                    }
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk("", record, &mut out);
    out
}

/// An open event file in a run directory.
pub struct EventWriter {
    path: PathBuf,
    file: std::fs::File,
}

impl EventWriter {
    /// Removes the directory's earlier event files and starts a new one.
    pub fn create(dir: &Path) -> Result<Self> {
        let err = |path: &Path, e: std::io::Error| TrainError::Write { path: path.to_path_buf(), reason: e.to_string() };
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                // Only our own: another tool's event files in the directory are left alone.
                if name.starts_with(EVENT_FILE_PREFIX) && name.ends_with(OWN_SUFFIX) {
                    std::fs::remove_file(entry.path()).map_err(|e| err(&entry.path(), e))?;
                }
            }
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
        let host = if host.is_empty() { "localhost".to_string() } else { host };
        let path = dir.join(format!("{EVENT_FILE_PREFIX}{}.{host}{OWN_SUFFIX}", now.as_secs()));
        let file = std::fs::File::create(&path).map_err(|e| err(&path, e))?;
        let mut writer = EventWriter { path, file };
        writer.append(&event(now.as_secs_f64(), 0, EventBody::FileVersion("brain.Event:2")))?;
        Ok(writer)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one metrics record's scalars as one event at the record's `step`, stamped with its
    /// `wall_time` (`fallback` for records written before they carried one).
    pub fn write_record(&mut self, record: &Value, fallback: f64) -> Result<()> {
        let scalars = scalars_of(record);
        if scalars.is_empty() {
            return Ok(());
        }
        let step = record.get("step").and_then(Value::as_i64).unwrap_or(0);
        let wall_time = record.get(WALL_TIME).and_then(Value::as_f64).unwrap_or(fallback);
        self.append(&event(wall_time, step, EventBody::Scalars(&scalars)))
    }

    fn append(&mut self, data: &[u8]) -> Result<()> {
        self.file
            .write_all(&record(data))
            .and_then(|_| self.file.flush())
            .map_err(|e| TrainError::Write { path: self.path.clone(), reason: e.to_string() })
    }
}

/// Seconds since the epoch, as TensorBoard's `wall_time`.
pub fn wall_time_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_published_check_value() {
        // CRC-32C of "123456789" is 0xE3069283 (RFC 3720, appendix B.4).
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn records_frame_data_with_checksums() {
        let framed = record(b"abc");
        assert_eq!(framed.len(), 8 + 4 + 3 + 4);
        assert_eq!(&framed[..8], &3u64.to_le_bytes());
        assert_eq!(&framed[12..15], b"abc");
        assert_eq!(u32::from_le_bytes(framed[15..19].try_into().unwrap()), masked_crc(b"abc"));
    }

    #[test]
    fn varints_encode_like_protobuf() {
        let mut out = Vec::new();
        varint(300, &mut out);
        assert_eq!(out, [0xac, 0x02]);
    }

    #[test]
    fn scalars_flatten_nested_records_without_the_step() {
        let record =
            serde_json::json!({"step": 3, "loss": 2.5, "parts": {"gen": 1.0}, "eval": {"hu": {"bits_per_char": 1.5}}, "note": "x"});
        let mut scalars = scalars_of(&record);
        scalars.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(scalars, vec![("eval/hu/bits_per_char".to_string(), 1.5), ("loss".to_string(), 2.5), ("parts/gen".to_string(), 1.0)]);
    }
}
