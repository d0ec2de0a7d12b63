//! Instruction data: JSONL `{"lang": "hu", "instruction": "…", "response": "…"}`. Alpaca
//! (`instruction`, `input`, `output`) and ShareGPT (`conversations: [{from, value}]`) records are
//! accepted too, for users who bring standard data; their language comes from `lang` if present,
//! else from the reader's default.

use std::path::Path;

use serde_json::{Map, Value};

use crate::error::{DataError, Result};
use crate::jsonl::{self, BadLines, SkipReport};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InstructionRecord {
    pub lang: String,
    pub instruction: String,
    pub response: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

fn text(object: &Map<String, Value>, key: &str) -> Option<String> {
    object.get(key).and_then(Value::as_str).map(str::to_string)
}

fn parse_instruction(object: &Map<String, Value>, default_lang: Option<&str>) -> std::result::Result<InstructionRecord, String> {
    let lang =
        text(object, "lang").or_else(|| default_lang.map(str::to_string)).ok_or("missing field `lang` (or give a default language)")?;
    let (instruction, response) = if let Some(conversations) = object.get("conversations").and_then(Value::as_array) {
        let turn = |role: &[&str]| {
            conversations.iter().find_map(|t| {
                let from = t.get("from").or_else(|| t.get("role")).and_then(Value::as_str)?;
                role.contains(&from).then(|| t.get("value").or_else(|| t.get("content")).and_then(Value::as_str))?
            })
        };
        (
            turn(&["human", "user"]).ok_or("ShareGPT record without a human turn")?.to_string(),
            turn(&["gpt", "assistant"]).ok_or("ShareGPT record without a gpt turn")?.to_string(),
        )
    } else {
        let instruction = text(object, "instruction").ok_or("missing field `instruction`")?;
        let instruction = match text(object, "input").filter(|i| !i.trim().is_empty()) {
            Some(input) => format!("{instruction}\n\n{input}"),
            None => instruction,
        };
        let response = text(object, "response").or_else(|| text(object, "output")).ok_or("missing field `response` (or `output`)")?;
        (instruction, response)
    };
    if instruction.trim().is_empty() {
        return Err("empty instruction".into());
    }
    Ok(InstructionRecord { lang, instruction, response, id: text(object, "id"), source: text(object, "source") })
}

pub fn read_instructions(path: &Path, default_lang: Option<&str>, bad_lines: BadLines) -> Result<(Vec<InstructionRecord>, SkipReport)> {
    let (records, report) = jsonl::read_objects(jsonl::open(path)?, path, bad_lines, |o| parse_instruction(o, default_lang))?;
    if records.is_empty() {
        return Err(DataError::BadFile { path: path.to_path_buf(), reason: "no instruction records".into() });
    }
    Ok((records, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> std::result::Result<InstructionRecord, String> {
        let v: Value = serde_json::from_str(line).unwrap();
        parse_instruction(v.as_object().unwrap(), Some("en"))
    }

    #[test]
    fn native_alpaca_and_sharegpt() {
        let r = parse(r#"{"lang": "hu", "instruction": "Mondj egy számot!", "response": "Hét."}"#).unwrap();
        assert_eq!((r.lang.as_str(), r.response.as_str()), ("hu", "Hét."));
        let r = parse(r#"{"instruction": "Add", "input": "2 and 3", "output": "5"}"#).unwrap();
        assert_eq!(r.instruction, "Add\n\n2 and 3");
        assert_eq!(r.lang, "en");
        let r = parse(r#"{"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}]}"#).unwrap();
        assert_eq!((r.instruction.as_str(), r.response.as_str()), ("Hi", "Hello!"));
    }

    #[test]
    fn missing_fields_are_named() {
        assert!(parse(r#"{"instruction": "x"}"#).unwrap_err().contains("`response`"));
        assert!(parse(r#"{"response": "x"}"#).unwrap_err().contains("`instruction`"));
    }
}
