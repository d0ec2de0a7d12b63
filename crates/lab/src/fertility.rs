//! The tokenizer room's numbers: a sentence cut into tokens by the base and an extended
//! tokenizer, and fertility (tokens per whitespace word, and per character) per language — what
//! vocabulary extension (Csaki et al. 2023) sets out to lower for the target language.

use rosetta_data::monolingual::Document;
use rosetta_model::TextTokenizer;
use rosetta_vocab::fertility::{Fertility, fertility};

use crate::error::{LabError, Result};
use rosetta_viz::{BarChart, BarGroup};

/// One token as the visitor sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenPiece {
    pub id: u32,
    /// The decoded text of this token alone (a byte-level piece of a multi-byte character shows
    /// as U+FFFD).
    pub text: String,
    /// Ids at or above the base vocabulary size are the extension's new tokens.
    pub is_new: bool,
}

pub fn pieces(tokenizer: &TextTokenizer, text: &str, base_vocab: usize) -> rosetta_model::Result<Vec<TokenPiece>> {
    tokenizer
        .encode(text, false)?
        .into_iter()
        .map(|id| Ok(TokenPiece { id, text: tokenizer.decode(&[id], false)?, is_new: id as usize >= base_vocab }))
        .collect()
}

/// Fertility per language under the base tokenizer and, when given, the extended one — the
/// counting is `rosetta-vocab`'s, the same as `rosetta vocab report`.
#[derive(Debug, Clone, PartialEq)]
pub struct FertilityRow {
    pub lang: String,
    pub base: Fertility,
    pub extended: Option<Fertility>,
}

pub fn fertility_rows(base: &TextTokenizer, extended: Option<&TextTokenizer>, texts: &[(String, Vec<&str>)]) -> Result<Vec<FertilityRow>> {
    let documents: Vec<Document> = texts
        .iter()
        .flat_map(|(lang, texts)| texts.iter().map(move |t| Document { lang: lang.clone(), text: t.to_string(), source: None, id: None }))
        .collect();
    let count = |t: &TextTokenizer| fertility(t.inner(), &documents).map_err(|e| LabError::Invalid(e.to_string()));
    let base_counts = count(base)?;
    let extended_counts = extended.map(count).transpose()?;
    Ok(texts
        .iter()
        .map(|(lang, _)| FertilityRow {
            lang: lang.clone(),
            base: base_counts.get(lang).cloned().unwrap_or_default(),
            extended: extended_counts.as_ref().map(|c| c.get(lang).cloned().unwrap_or_default()),
        })
        .collect())
}

/// Tokens per word per language, base next to extended.
pub fn fertility_chart(rows: &[FertilityRow], extended_label: &str) -> String {
    let mut series = vec!["base".to_string()];
    if rows.iter().any(|r| r.extended.is_some()) {
        series.push(extended_label.to_string());
    }
    BarChart {
        title: "Fertility: tokens per word (lower is cheaper)".into(),
        y_label: "tokens / word".into(),
        series,
        groups: rows
            .iter()
            .map(|r| BarGroup {
                label: r.lang.clone(),
                values: std::iter::once(r.base.tokens_per_word()).chain(r.extended.as_ref().map(Fertility::tokens_per_word)).collect(),
            })
            .collect(),
    }
    .to_svg()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::tiny_model_and_tokenizer;

    #[test]
    fn the_extended_tokenizer_is_counted_beside_the_base() {
        let (_, base) = tiny_model_and_tokenizer(2);
        let extended = crate::test_support::tiny_extended_tokenizer();
        let texts = vec![("en".to_string(), vec!["the thin thing", "then"])];
        let rows = fertility_rows(&base, Some(&extended), &texts).unwrap();
        assert_eq!(rows[0].base.words, 4);
        let ext = rows[0].extended.as_ref().unwrap();
        assert!(ext.tokens < rows[0].base.tokens, "the extension's merges must save tokens: {rows:?}");
        let svg = fertility_chart(&rows, "extended");
        assert!(svg.contains("extended") && svg.starts_with("<svg"));
        let shown = pieces(&extended, "the thin", base.vocab_size()).unwrap();
        assert!(shown.iter().any(|p| p.is_new), "{shown:?}");
        assert_eq!(shown.iter().map(|p| p.text.as_str()).collect::<String>(), "the thin");
    }
}
