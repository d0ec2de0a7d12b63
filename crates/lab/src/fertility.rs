//! The tokenizer room's numbers: a sentence cut into tokens by the base and an extended
//! tokenizer, and fertility (tokens per whitespace word, and per character) per language — what
//! vocabulary extension (Csaki et al. 2023) sets out to lower for the target language.

use rosetta_data::monolingual::Document;
use rosetta_model::TextTokenizer;
use rosetta_vocab::fertility::{Fertility, fertility};

use crate::error::{LabError, Result};
/// Plain data the page shows: defined beside the page–worker messages.
pub use rosetta_lab_protocol::TokenPiece;
use rosetta_viz::{BarChart, BarGroup};

pub fn pieces(tokenizer: &TextTokenizer, text: &str, base_vocab: usize) -> rosetta_model::Result<Vec<TokenPiece>> {
    tokenizer
        .encode_with_spans(text)?
        .into_iter()
        .map(|(id, span)| {
            let decoded = tokenizer.decode(&[id], false)?;
            let covered = text.get(span).unwrap_or_default();
            let partial = decoded.contains('\u{FFFD}') && !covered.is_empty() && !covered.contains('\u{FFFD}');
            let text = if partial { covered.to_string() } else { decoded };
            Ok(TokenPiece { id, text, partial, is_new: id as usize >= base_vocab })
        })
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

/// Tokens per character per language, base next to extended. Per character, not per word:
/// Chinese and Thai put no spaces between words, so "tokens per word" would count a whole
/// sentence as one word there.
pub fn fertility_chart(rows: &[FertilityRow], extended_label: &str) -> String {
    let mut series = vec!["base".to_string()];
    if rows.iter().any(|r| r.extended.is_some()) {
        series.push(extended_label.to_string());
    }
    BarChart {
        title: "Fertility: tokens per character (lower is cheaper)".into(),
        y_label: "tokens / character".into(),
        series,
        groups: rows
            .iter()
            .map(|r| BarGroup {
                label: r.lang.clone(),
                values: std::iter::once(r.base.tokens_per_char()).chain(r.extended.as_ref().map(Fertility::tokens_per_char)).collect(),
            })
            .collect(),
    }
    .to_svg()
}

/// What the same parallel sentences cost in each language against `reference` (English): the
/// ratio of token counts (base tokenizer), a "tokenization premium". `None` when the reference
/// language is not among the rows.
pub fn premiums(rows: &[FertilityRow], reference: &str) -> Option<Vec<(String, f64)>> {
    let base = rows.iter().find(|r| r.lang == reference)?.base.tokens.max(1) as f64;
    Some(rows.iter().filter(|r| r.lang != reference).map(|r| (r.lang.clone(), r.base.tokens as f64 / base)).collect())
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
        assert!(shown.iter().all(|p| !p.partial));
    }

    /// `ő` has no token of its own in the byte-level tiny vocabulary: its two byte pieces show
    /// the character they spell, marked partial, and never U+FFFD.
    #[test]
    fn byte_pieces_of_a_character_show_the_character_not_a_replacement_sign() {
        let (_, tokenizer) = tiny_model_and_tokenizer(2);
        let shown = pieces(&tokenizer, "kő és 你", tokenizer.vocab_size()).unwrap();
        assert!(shown.iter().all(|p| !p.text.contains('\u{FFFD}')), "{shown:?}");
        let o: Vec<&TokenPiece> = shown.iter().filter(|p| p.text == "ő").collect();
        assert_eq!(o.len(), 2, "{shown:?}");
        assert!(o.iter().all(|p| p.partial));
        assert_eq!(shown.iter().filter(|p| p.text == "你").count(), 3, "{shown:?}");
        assert!(shown.iter().any(|p| p.text == "k" && !p.partial));
    }

    /// Fertility per character: the same for a language with and without spaces between words.
    #[test]
    fn premiums_compare_parallel_sentences_with_english() {
        let (_, tokenizer) = tiny_model_and_tokenizer(2);
        let texts = vec![("en".to_string(), vec!["the cat"]), ("hu".to_string(), vec!["a macska"]), ("zh".to_string(), vec!["猫"])];
        let rows = fertility_rows(&tokenizer, None, &texts).unwrap();
        let premium = premiums(&rows, "en").unwrap();
        let by_lang = |l: &str| premium.iter().find(|(lang, _)| lang == l).unwrap().1;
        assert!((by_lang("hu") - rows[1].base.tokens as f64 / rows[0].base.tokens as f64).abs() < 1e-12);
        assert_eq!(rows[2].base.tokens_per_char(), 3.0, "one Han character, three byte tokens");
        assert!(premiums(&rows, "sw").is_none());
        assert!(fertility_chart(&rows, "extended").contains("tokens per character"));
    }
}
