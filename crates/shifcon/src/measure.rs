//! The one path from parallel sentences to a [`Geometry`]: sentence states of every language at
//! every residual site ([`crate::states`]), then the analysis ([`crate::geometry::analyse`]).
//! `rosetta geometry`, ShifCon's band choice in training and the lab's shift room all measure
//! through [`measure_geometry`], so they agree on the states, the minimum number of sentences and
//! the band.

use std::collections::BTreeMap;
use std::future::Future;

use rosetta_model::{CausalLm, Interventions, TextTokenizer};

use crate::error::{Result, ShifconError};
use crate::geometry::{Geometry, GeometryOptions, analyse};
use crate::linalg::Matrix;
use crate::states::{StateOptions, sentence_states_paced};
use crate::subspace::MIN_SENTENCES;

/// Sentences per language a geometry needs: the language vectors are fitted on half of them and
/// the distances measured on the other half, each half at least the subspace estimator's minimum.
pub const MIN_GEOMETRY_SENTENCES: usize = 2 * MIN_SENTENCES;

#[derive(Debug, Clone, Default)]
pub struct MeasureOptions {
    pub states: StateOptions,
    pub geometry: GeometryOptions,
}

/// Checks `texts` (per language, row i of each a translation of row i of the others) against the
/// rule every caller shares: the dominant language and at least one other, the same number of
/// sentences in each, at least [`MIN_GEOMETRY_SENTENCES`].
pub fn check_sentences(texts: &BTreeMap<String, Vec<&str>>, english: &str) -> Result<usize> {
    if !texts.contains_key(english) || texts.len() < 2 {
        let langs: Vec<&str> = texts.keys().map(String::as_str).collect();
        return Err(ShifconError::Invalid(format!(
            "the geometry needs the dominant language `{english}` and at least one other among the languages (got {})",
            langs.join(", ")
        )));
    }
    let counts: Vec<usize> = texts.values().map(Vec::len).collect();
    let n = counts.iter().copied().min().unwrap_or(0);
    if counts.iter().any(|&c| c != n) {
        return Err(ShifconError::Invalid(format!("parallel sentences must be aligned: the languages have {counts:?} sentences")));
    }
    if n < MIN_GEOMETRY_SENTENCES {
        let lang = texts.iter().find(|(_, t)| t.len() == n).map(|(l, _)| l.clone()).unwrap_or_default();
        return Err(ShifconError::TooFewSentences {
            what: "language geometry".into(),
            lang,
            count: n,
            dims: 0,
            needed: MIN_GEOMETRY_SENTENCES,
        });
    }
    Ok(n)
}

/// The language geometry of `model` on `texts`. `pause` is awaited after every batch of forward
/// passes (the browser yields there); `progress` hears (sentences done, sentences in all).
pub async fn measure_geometry<F: Future<Output = ()>>(
    model: &CausalLm,
    tokenizer: &TextTokenizer,
    texts: &BTreeMap<String, Vec<&str>>,
    options: &MeasureOptions,
    pause: impl Fn() -> F,
    mut progress: impl FnMut(usize, usize),
) -> Result<Geometry> {
    let n = check_sentences(texts, &options.geometry.english)?;
    let sites: Vec<usize> = (0..=model.num_layers()).collect();
    let total = n * texts.len();
    let mut states: BTreeMap<String, Vec<Matrix>> = BTreeMap::new();
    let mut before = 0;
    for (lang, sentences) in texts {
        let per_site =
            sentence_states_paced(model, tokenizer, sentences, &sites, &options.states, &Interventions::none(), &pause, |done| {
                progress(before + done, total)
            })
            .await?;
        before += sentences.len();
        states.insert(lang.clone(), per_site);
    }
    let mut geometry = analyse(&states, &options.geometry)?;
    geometry.conventions = options.states.conventions;
    Ok(geometry)
}

/// [`measure_geometry`] for native callers.
#[cfg(not(target_family = "wasm"))]
pub fn measure_geometry_blocking(
    model: &CausalLm,
    tokenizer: &TextTokenizer,
    texts: &BTreeMap<String, Vec<&str>>,
    options: &MeasureOptions,
    progress: impl FnMut(usize, usize),
) -> Result<Geometry> {
    rosetta_model::readback::block_on(measure_geometry(model, tokenizer, texts, options, || std::future::ready(()), progress))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sentence_rule_is_named() {
        let texts = |n: usize, m: usize| -> BTreeMap<String, Vec<&'static str>> {
            [("en".to_string(), vec!["a"; n]), ("hu".to_string(), vec!["b"; m])].into()
        };
        assert_eq!(check_sentences(&texts(16, 16), "en").unwrap(), 16);
        let err = check_sentences(&texts(15, 15), "en").unwrap_err().to_string();
        assert!(err.contains("15 sentences") && err.contains("16"), "{err}");
        assert!(check_sentences(&texts(20, 18), "en").unwrap_err().to_string().contains("aligned"));
        assert!(check_sentences(&texts(20, 20), "de").unwrap_err().to_string().contains("`de`"));
    }
}
