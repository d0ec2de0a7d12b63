//! The shift itself (the training-free "LRP2" steering and ShifCon's forward pass): for an input
//! in language l, at site L_to add v_en − v_l (into the English subspace), at site L_bk add
//! v_l − v_en (back, so the head sees its own language again). English inputs are never shifted.
//!
//! Where a vector is added and what it is a mean of follow the plan's [`Conventions`]: under
//! Rosetta's, at the very site where it was measured, a mean of raw sentence states; under the
//! released code's, one site earlier (measured at `hidden_states[F]`, added to the input of layer
//! F−1), a mean of unit-length sentence states.

use std::collections::BTreeMap;

use rosetta_data::PackedRow;
use rosetta_model::burn::prelude::*;
use rosetta_model::{CausalLm, Interventions};
use serde::{Deserialize, Serialize};

use crate::conventions::Conventions;
use crate::error::{Result, ShifconError};

/// The language vectors at the two sites of a band.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteVectors {
    pub at_to: Vec<f32>,
    pub at_back: Vec<f32>,
}

/// Everything inference needs to shift: saved in `rosetta.json` under `shifcon.plan`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShiftPlan {
    pub english: String,
    /// Site where the vectors toward English were measured.
    pub to: usize,
    /// Site where the vectors back were measured.
    pub back: usize,
    /// Per language, English included.
    pub vectors: BTreeMap<String, SiteVectors>,
    /// How the vectors were made and where they are added (plans saved before the option existed
    /// are Rosetta's).
    #[serde(default)]
    pub conventions: Conventions,
}

/// `hu→en@12..15` (or `hu->en@12..15`): shift `hu` toward `en` from site 12 back at site 15.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShiftSpec {
    pub lang: String,
    pub english: String,
    pub to: usize,
    pub back: usize,
}

impl std::str::FromStr for ShiftSpec {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let usage = || format!("`{s}` is not a shift; write LANG→EN@L_TO..L_BK, e.g. hu→en@12..15 (ASCII: hu->en@12..15)");
        let (langs, band) = s.split_once('@').ok_or_else(usage)?;
        let (lang, english) = langs.split_once('→').or_else(|| langs.split_once("->")).ok_or_else(usage)?;
        let (to, back) = band.split_once("..").ok_or_else(usage)?;
        let (to, back) = (to.trim().parse::<usize>().map_err(|_| usage())?, back.trim().parse::<usize>().map_err(|_| usage())?);
        let (lang, english) = (lang.trim().to_string(), english.trim().to_string());
        if lang.is_empty() || english.is_empty() || lang == english {
            return Err(format!("`{s}`: name two different languages"));
        }
        if to >= back {
            return Err(format!("`{s}`: L_to ({to}) must be below L_bk ({back})"));
        }
        Ok(ShiftSpec { lang, english, to, back })
    }
}

/// Checks `to..back` against a model of `layers` layers (sites 0..=layers).
pub fn check_band(to: usize, back: usize, layers: usize) -> Result<()> {
    if to >= back || back > layers {
        return Err(ShifconError::BandOutOfRange { to, back, sites: layers });
    }
    Ok(())
}

/// [`check_band`] for vectors measured at `to` and `back` and added as `conventions` place them:
/// one site early needs `to ≥ 1`.
pub fn check_placed_band(to: usize, back: usize, layers: usize, conventions: Conventions) -> Result<()> {
    check_band(to, back, layers)?;
    if to < conventions.placement_offset() {
        return Err(ShifconError::Invalid(format!(
            "the released conventions add a vector measured at site {to} one site earlier; the area must start at site 1 or later"
        )));
    }
    Ok(())
}

fn difference(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x - y).collect()
}

impl ShiftPlan {
    /// From language vectors per site (`vectors[lang][site]`, e.g. [`crate::Geometry::vectors`]),
    /// made under `conventions`.
    pub fn from_site_vectors(
        english: &str,
        to: usize,
        back: usize,
        vectors: &BTreeMap<String, Vec<Vec<f32>>>,
        conventions: Conventions,
    ) -> Result<Self> {
        let sites = vectors.values().map(Vec::len).min().unwrap_or(0);
        if sites == 0 {
            return Err(ShifconError::Invalid("no language vectors".into()));
        }
        check_placed_band(to, back, sites - 1, conventions)?;
        if !vectors.contains_key(english) {
            return Err(ShifconError::Invalid(format!("no language vector for the dominant language `{english}`")));
        }
        let vectors = vectors
            .iter()
            .map(|(lang, per_site)| (lang.clone(), SiteVectors { at_to: per_site[to].clone(), at_back: per_site[back].clone() }))
            .collect();
        Ok(ShiftPlan { english: english.to_string(), to, back, vectors, conventions })
    }

    /// Estimates the vectors at `to` and `back` on `model` from aligned sentences per language
    /// (`texts[lang]`, English included): the mean sentence state of each language at each site,
    /// pooled as `conventions` say.
    pub async fn estimate(
        model: &CausalLm,
        tokenizer: &rosetta_model::TextTokenizer,
        texts: &BTreeMap<String, Vec<&str>>,
        english: &str,
        [to, back]: [usize; 2],
        conventions: Conventions,
    ) -> Result<Self> {
        check_placed_band(to, back, model.num_layers(), conventions)?;
        let mut vectors = BTreeMap::new();
        for (lang, sentences) in texts {
            if sentences.len() < crate::subspace::MIN_SENTENCES {
                return Err(ShifconError::TooFewSentences {
                    what: "language vector".into(),
                    lang: lang.clone(),
                    count: sentences.len(),
                    dims: 0,
                    needed: crate::subspace::MIN_SENTENCES,
                });
            }
            let states = crate::states::sentence_states(
                model,
                tokenizer,
                sentences,
                &[to, back],
                &crate::states::StateOptions { conventions, ..Default::default() },
                &Interventions::none(),
                |_| {},
            )
            .await?;
            let mean = |m: &crate::Matrix| m.column_means().iter().map(|&v| v as f32).collect::<Vec<f32>>();
            vectors.insert(lang.clone(), SiteVectors { at_to: mean(&states[0]), at_back: mean(&states[1]) });
        }
        let plan = ShiftPlan { english: english.to_string(), to, back, vectors, conventions };
        plan.check(model)?;
        Ok(plan)
    }

    /// [`ShiftPlan::estimate`] for native callers.
    #[cfg(not(target_family = "wasm"))]
    pub fn estimate_blocking(
        model: &CausalLm,
        tokenizer: &rosetta_model::TextTokenizer,
        texts: &BTreeMap<String, Vec<&str>>,
        english: &str,
        area: [usize; 2],
        conventions: Conventions,
    ) -> Result<Self> {
        rosetta_model::readback::block_on(Self::estimate(model, tokenizer, texts, english, area, conventions))
    }

    /// The sites where the shift toward English and the shift back are added.
    pub fn added_at(&self) -> (usize, usize) {
        let offset = self.conventions.placement_offset();
        (self.to - offset, self.back - offset)
    }

    /// "toward `en` at site 10, back at site 19", naming the measurement sites when the
    /// conventions add the vectors elsewhere.
    pub fn describe(&self) -> String {
        let (to, back) = self.added_at();
        let measured = if (to, back) == (self.to, self.back) {
            String::new()
        } else {
            format!(" (vectors measured at sites {} and {}, {} conventions)", self.to, self.back, self.conventions)
        };
        format!("toward `{}` at site {to}, back at site {back}{measured}", self.english)
    }

    /// Checks the plan against a model: band inside its sites, vectors of its width.
    pub fn check(&self, model: &CausalLm) -> Result<()> {
        check_placed_band(self.to, self.back, model.num_layers(), self.conventions)?;
        let d = model.config().hidden_size;
        if let Some((lang, _)) = self.vectors.iter().find(|(_, v)| v.at_to.len() != d || v.at_back.len() != d) {
            return Err(ShifconError::Invalid(format!("the language vector of `{lang}` does not have the model's {d} dimensions")));
        }
        if !self.vectors.contains_key(&self.english) {
            return Err(ShifconError::Invalid(format!("the plan has no vector for `{}`", self.english)));
        }
        Ok(())
    }

    /// Languages the plan can shift (English excluded).
    pub fn langs(&self) -> Vec<&str> {
        self.vectors.keys().map(String::as_str).filter(|l| *l != self.english).collect()
    }

    /// `(toward at to, back at back)` for `lang`: v_en − v_l and v_l − v_en. `None` for English
    /// and for languages without vectors (left alone).
    pub fn deltas(&self, lang: &str) -> Option<(Vec<f32>, Vec<f32>)> {
        if lang == self.english {
            return None;
        }
        let (l, en) = (self.vectors.get(lang)?, self.vectors.get(&self.english)?);
        Some((difference(&en.at_to, &l.at_to), difference(&l.at_back, &en.at_back)))
    }

    /// The shift for a batch all in `lang` (no-op for English). An unknown language is an error:
    /// a caller asking for a shift must get one.
    pub fn interventions(&self, lang: &str, device: &Device) -> Result<Interventions> {
        self.scaled_interventions(lang, 1.0, device)
    }

    /// [`ShiftPlan::interventions`] with both vectors multiplied by `strength`: 0 leaves the
    /// model alone, 1 is the full shift (the lab's slider).
    pub fn scaled_interventions(&self, lang: &str, strength: f32, device: &Device) -> Result<Interventions> {
        if lang == self.english {
            return Ok(Interventions::none());
        }
        let (toward, back) = self.deltas(lang).ok_or_else(|| {
            ShifconError::Invalid(format!(
                "no language vector for `{lang}` (the plan has: {})",
                self.vectors.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        let row = |v: Vec<f32>| {
            let d = v.len();
            let v: Vec<f32> = v.into_iter().map(|x| x * strength).collect();
            Tensor::<2>::from_data(TensorData::new(v, [1, d]), device)
        };
        let (to_site, back_site) = self.added_at();
        Ok(Interventions::none().shift(to_site, row(toward)).shift(back_site, row(back)))
    }

    /// Only the shift toward English (no shift back): states stay in the English subspace up to
    /// the head. For analysis; ShifCon always shifts back.
    pub fn toward_only(&self, lang: &str, device: &Device) -> Result<Interventions> {
        let full = self.interventions(lang, device)?;
        let (to, _) = self.added_at();
        Ok(Interventions { shifts: full.shifts.into_iter().filter(|s| s.site == to).collect(), ..full })
    }

    /// Per-token shifts for packed rows that mix languages: every token gets its segment's shift;
    /// English and languages without vectors get none.
    pub fn per_token_interventions(&self, rows: &[PackedRow], device: &Device) -> Interventions {
        let (b, s) = (rows.len(), rows.first().map_or(0, |r| r.ids.len()));
        let langs: Vec<&str> = self.langs();
        let Some(d) = self.vectors.values().next().map(|v| v.at_to.len()) else { return Interventions::none() };
        let index: Vec<i64> = rows
            .iter()
            .flat_map(|r| (0..r.ids.len()).map(move |t| r.lang_at(t)))
            .map(|lang| langs.iter().position(|l| *l == lang).map_or(0, |i| i as i64 + 1))
            .collect();
        if index.iter().all(|&i| i == 0) {
            return Interventions::none();
        }
        // Row 0 of each table is the zero shift.
        let table = |pick: fn(&(Vec<f32>, Vec<f32>)) -> &Vec<f32>| {
            let mut data = vec![0.0f32; d];
            for lang in &langs {
                match self.deltas(lang) {
                    Some(deltas) => data.extend_from_slice(pick(&deltas)),
                    None => data.extend(std::iter::repeat_n(0.0, d)),
                }
            }
            Tensor::<2>::from_data(TensorData::new(data, [langs.len() + 1, d]), device)
        };
        let index = Tensor::<1, Int>::from_data(TensorData::new(index, [b * s]), device);
        let per_token = |t: Tensor<2>| t.select(0, index.clone()).reshape([b, s, d]);
        let (to, back) = self.added_at();
        Interventions::none().shift_per_token(to, per_token(table(|d| &d.0))).shift_per_token(back, per_token(table(|d| &d.1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> ShiftPlan {
        let v = |a: f32, b: f32| SiteVectors { at_to: vec![a, a + 1.0], at_back: vec![b, b - 1.0] };
        ShiftPlan {
            english: "en".into(),
            to: 1,
            back: 3,
            vectors: [("en".into(), v(1.0, 2.0)), ("hu".into(), v(4.0, -3.0))].into(),
            conventions: Conventions::Rosetta,
        }
    }

    #[test]
    fn specs_parse_and_bad_ones_explain_themselves() {
        let spec: ShiftSpec = "hu→en@12..15".parse().unwrap();
        assert_eq!(spec, ShiftSpec { lang: "hu".into(), english: "en".into(), to: 12, back: 15 });
        assert_eq!("sw->en@3..9".parse::<ShiftSpec>().unwrap().back, 9);
        assert!("hu@12..15".parse::<ShiftSpec>().unwrap_err().contains("LANG→EN"));
        assert!("hu→en@15..12".parse::<ShiftSpec>().unwrap_err().contains("below"));
    }

    #[test]
    fn shifting_toward_then_back_at_one_site_is_the_identity() {
        let p = plan();
        let (toward, back) = p.deltas("hu").unwrap();
        assert_eq!(toward, vec![-3.0, -3.0]);
        assert_eq!(back, vec![-5.0, -5.0]);
        // The same site: v_en − v_l then v_l − v_en sums to zero.
        let same_site = ShiftPlan {
            back: 1,
            vectors: p.vectors.iter().map(|(l, v)| (l.clone(), SiteVectors { at_to: v.at_to.clone(), at_back: v.at_to.clone() })).collect(),
            ..p.clone()
        };
        let (toward, back) = same_site.deltas("hu").unwrap();
        assert!(toward.iter().zip(&back).all(|(a, b)| a + b == 0.0));
        assert!(p.deltas("en").is_none() && p.deltas("xx").is_none());
    }

    #[test]
    fn bands_outside_the_model_are_refused() {
        assert!(check_band(3, 2, 30).is_err());
        let err = check_band(10, 31, 30).unwrap_err().to_string();
        assert!(err.contains("0..=30"), "{err}");
        check_band(0, 30, 30).unwrap();
        assert!(check_placed_band(0, 30, 30, Conventions::Released).unwrap_err().to_string().contains("site 1"));
        check_placed_band(1, 30, 30, Conventions::Released).unwrap();
    }

    #[test]
    fn released_plans_add_their_vectors_one_site_early() {
        let released = ShiftPlan { conventions: Conventions::Released, ..plan() };
        assert_eq!(released.added_at(), (0, 2));
        assert_eq!(plan().added_at(), (1, 3));
        let sites: Vec<usize> = released.interventions("hu", &Device::flex()).unwrap().shifts.iter().map(|s| s.site).collect();
        assert_eq!(sites, vec![0, 2]);
    }
}
