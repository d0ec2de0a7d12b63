//! Monolingual text: JSONL `{"lang": "hu", "text": "…", "source": …, "id": …}`, one document per
//! line, or a plain text file (one document per non-empty line) with its language given.

use std::io::BufRead;
use std::path::Path;

use serde_json::{Map, Value};

use crate::error::{DataError, Result};
use crate::jsonl::{self, BadLines, SkipReport, string_field};
use crate::parallel::looks_like_language_code;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Document {
    pub lang: String,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

fn parse_document(object: &Map<String, Value>) -> std::result::Result<Document, String> {
    let lang = string_field(object, "lang")?;
    if !looks_like_language_code(&lang) {
        return Err(format!("`lang` is {lang:?}, not a language code"));
    }
    let text = string_field(object, "text")?;
    if text.trim().is_empty() {
        return Err("`text` is empty".into());
    }
    let optional = |k: &str| object.get(k).and_then(Value::as_str).map(str::to_string);
    Ok(Document { lang, text, source: optional("source"), id: optional("id") })
}

/// Reads `path`: `.jsonl` as documents with their own `lang`, anything else as plain text in
/// `plain_text_lang`. An empty result is an error.
pub fn read_documents(path: &Path, plain_text_lang: Option<&str>, bad_lines: BadLines) -> Result<(Vec<Document>, SkipReport)> {
    let is_jsonl = path.extension().is_some_and(|e| e == "jsonl" || e == "json");
    let (docs, report) = if is_jsonl {
        jsonl::read_objects(jsonl::open(path)?, path, bad_lines, parse_document)?
    } else {
        let lang = plain_text_lang.ok_or_else(|| DataError::BadFile {
            path: path.to_path_buf(),
            reason: "plain text has no language field; give its language (`data.lang` in a training config, --lang on the command line) or use JSONL".into(),
        })?;
        let mut docs = Vec::new();
        let mut report = SkipReport::default();
        for (i, line) in jsonl::open(path)?.split(b'\n').enumerate() {
            let line = line.map_err(|error| DataError::Io { path: path.to_path_buf(), error })?;
            match String::from_utf8(line) {
                Ok(text) if !text.trim().is_empty() => docs.push(Document {
                    lang: lang.to_string(),
                    text: text.trim().to_string(),
                    source: None,
                    id: Some(format!("line-{}", i + 1)),
                }),
                Ok(_) => {}
                Err(e) => match bad_lines {
                    BadLines::Fail => {
                        return Err(DataError::BadLine { path: path.to_path_buf(), line: i + 1, reason: format!("not UTF-8 ({e})") });
                    }
                    BadLines::Skip => report.record(i + 1, "not UTF-8"),
                },
            }
        }
        (docs, report)
    };
    if docs.is_empty() {
        return Err(DataError::BadFile {
            path: path.to_path_buf(),
            reason: "no documents (the file is empty or every line was skipped)".into(),
        });
    }
    Ok((docs, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("rosetta-mono-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn reads_jsonl_and_plain_text() {
        let p = write("m.jsonl", b"{\"lang\": \"hu\", \"text\": \"Szia\"}\n{\"lang\": \"en\", \"text\": \"Hi\", \"source\": \"x\"}\n");
        let (docs, _) = read_documents(&p, None, BadLines::Fail).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].source.as_deref(), Some("x"));
        let p = write("m.txt", b"first doc\n\nsecond doc\n");
        let err = read_documents(&p, None, BadLines::Fail).unwrap_err().to_string();
        assert!(err.contains("--lang"), "{err}");
        let (docs, _) = read_documents(&p, Some("en"), BadLines::Fail).unwrap();
        assert_eq!(docs.len(), 2);
    }

    #[test]
    fn empty_and_non_utf8_input_are_errors() {
        let p = write("empty.txt", b"\n\n");
        assert!(read_documents(&p, Some("hu"), BadLines::Fail).unwrap_err().to_string().contains("no documents"));
        let p = write("bad.txt", b"ok\n\xff\xfe\n");
        let err = read_documents(&p, Some("hu"), BadLines::Fail).unwrap_err().to_string();
        assert!(err.contains("bad.txt:2") && err.contains("UTF-8"), "{err}");
        assert_eq!(read_documents(&p, Some("hu"), BadLines::Skip).unwrap().1.skipped, 1);
    }
}
