//! Language codes as people read them.

/// The English name of a language code (for prompts, labels and reports).
pub fn language_name(code: &str) -> &str {
    match code {
        "en" => "English",
        "hu" => "Hungarian",
        "de" => "German",
        "zh" => "Chinese",
        "th" => "Thai",
        "sw" => "Swahili",
        "ny" => "Chichewa",
        "yo" => "Yoruba",
        "zu" => "Zulu",
        other => other,
    }
}
