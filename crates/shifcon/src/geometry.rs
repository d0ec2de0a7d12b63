//! Language geometry per layer: where do a model's languages live, how far apart, and which band
//! of layers should ShifCon work in?
//!
//! Input: the sentence states ([`crate::states`]) of parallel sentences, one matrix per language
//! and residual site, row i of every language being a translation of row i of the others.
//! Per site and non-English language:
//! - the **language vector** v_l (mean sentence state) and the shift's size ‖v_en − v_l‖;
//! - the **subspace distance** ([`crate::subspace`]) to English of the *shifted* states (the band
//!   criterion) and of the raw ones. Shifting by vectors estimated on the same sentences would make
//!   the mean term 0 by construction, so the vectors are estimated on the even-numbered sentences
//!   and the distance measured on the odd-numbered ones: the mean term then says how well the
//!   shift carries to new sentences;
//! - the mean **cosine** of parallel pairs and of mismatched pairs (i with i+1), and top-1
//!   **retrieval** of the translation among all candidates on the mean-centred states;
//! - a 2-D **PCA** of every language's states (shared axes per site) for the plots and the lab.
//!
//! The **band** [L_to, L_bk) is the contiguous window of ⌈β·L⌉ sites inside 1..L with the smallest
//! summed shifted distance (averaged over languages). The paper takes the β% smallest layers and
//! observes they are contiguous; the window guarantees it, and the report says whether the
//! individually smallest sites agree.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Result, ShifconError};
use crate::linalg::{Matrix, dot, norm, principal_axes};
use crate::subspace::{DistanceOptions, MIN_SENTENCES, SubspaceDistance, subspace_distance};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GeometryOptions {
    pub english: String,
    pub distance: DistanceOptions,
    pub beta: f64,
    /// Sentences per language in the PCA scatter.
    pub pca_points: usize,
}

impl Default for GeometryOptions {
    fn default() -> Self {
        GeometryOptions { english: "en".into(), distance: DistanceOptions::default(), beta: 0.3, pca_points: 60 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LanguageAtSite {
    /// Distance of the shifted (held-out) states to English: the band criterion.
    pub shifted: SubspaceDistance,
    /// Distance of the raw states to English (the same held-out sentences).
    pub raw: SubspaceDistance,
    pub parallel_cosine: f64,
    pub mismatched_cosine: f64,
    /// Fraction of English sentences whose nearest target sentence (cosine of mean-centred
    /// states) is their translation.
    pub retrieval_top1: f64,
    /// ‖v_en − v_l‖, the length of the shift.
    pub shift_norm: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SiteGeometry {
    pub site: usize,
    pub langs: BTreeMap<String, LanguageAtSite>,
    /// Mean over target languages of the shifted distance's total.
    pub mean_shifted_distance: f64,
    /// Mean sentence-state norm (all languages), for the scale of the mean terms.
    pub mean_state_norm: f64,
    /// 2-D PCA coordinates per language (shared axes), and the variance along each axis.
    pub pca: BTreeMap<String, Vec<[f32; 2]>>,
    pub pca_variance: [f64; 2],
    /// The two PCA axes as `[d_model]` rows of `[axis 1, axis 2]` coefficients: in memory only
    /// (the lab moves the scatter along a shift with them), not worth their size in the JSON.
    #[serde(skip)]
    pub pca_axes: Vec<[f32; 2]>,
    /// The mean the PCA coordinates are centred on (`[d_model]`, in memory only).
    #[serde(skip)]
    pub pca_center: Vec<f32>,
}

impl SiteGeometry {
    /// Where a direction in the residual stream (a shift) points in the 2-D PCA plane. PCA is
    /// linear, so a state moved by `v` moves by exactly this in the scatter.
    pub fn project_direction(&self, v: &[f32]) -> [f32; 2] {
        self.pca_axes.iter().zip(v).fold([0.0, 0.0], |[a, b], (axes, x)| [a + axes[0] * x, b + axes[1] * x])
    }

    /// A sentence state's place in the 2-D PCA plane (the coordinates of [`SiteGeometry::pca`]).
    pub fn project_state(&self, state: &[f32]) -> [f32; 2] {
        let centred: Vec<f32> = state.iter().zip(&self.pca_center).map(|(x, c)| x - c).collect();
        self.project_direction(&centred)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Band {
    /// Site where the shift toward English is added.
    pub to: usize,
    /// Site where the shift back is added; layers `to..back` run in the English subspace.
    pub back: usize,
    pub beta: f64,
    /// The ⌈β·L⌉ sites with the smallest distance, each on its own (sorted).
    pub smallest_sites: Vec<usize>,
    /// Whether those form the chosen window.
    pub contiguous: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Geometry {
    pub english: String,
    pub langs: Vec<String>,
    pub sentences: usize,
    pub num_layers: usize,
    pub options: GeometryOptions,
    pub sites: Vec<SiteGeometry>,
    pub band: Band,
    /// Language vectors per language (English included), per site: `[site][d_model]`.
    pub vectors: BTreeMap<String, Vec<Vec<f32>>>,
}

/// Checks the states: English present, every language with the same sentence count at every site.
fn check_states(states: &BTreeMap<String, Vec<Matrix>>, english: &str) -> Result<(usize, usize)> {
    let en = states.get(english).ok_or_else(|| ShifconError::Invalid(format!("no states for the dominant language `{english}`")))?;
    let sites = en.len();
    let n = en.first().map_or(0, |m| m.rows);
    for (lang, per_site) in states {
        if per_site.len() != sites || per_site.iter().any(|m| m.rows != n) {
            return Err(ShifconError::Invalid(format!(
                "`{lang}` has states of another shape than `{english}` (parallel sentences must align)"
            )));
        }
    }
    if states.len() < 2 {
        return Err(ShifconError::Invalid("the geometry needs English and at least one other language".into()));
    }
    Ok((sites, n))
}

/// The whole analysis. `states[lang][site]` is `n × d_model`, sites `0..=num_layers`.
pub fn analyse(states: &BTreeMap<String, Vec<Matrix>>, options: &GeometryOptions) -> Result<Geometry> {
    let english = options.english.as_str();
    let (site_count, n) = check_states(states, english)?;
    // Half the sentences estimate the vectors and the other half measure the shifted distance.
    let needed = 2 * MIN_SENTENCES;
    for lang in states.keys() {
        if n < needed {
            return Err(ShifconError::TooFewSentences {
                what: "geometry".into(),
                lang: lang.clone(),
                count: n,
                dims: options.distance.dims,
                needed,
            });
        }
    }
    if !(options.beta > 0.0 && options.beta < 1.0) {
        return Err(ShifconError::Invalid(format!("beta must be in (0, 1) (got {})", options.beta)));
    }
    let even: Vec<usize> = (0..n).step_by(2).collect();
    let odd: Vec<usize> = (1..n).step_by(2).collect();
    let targets: Vec<String> = states.keys().filter(|l| *l != english).cloned().collect();
    let mut vectors: BTreeMap<String, Vec<Vec<f32>>> = BTreeMap::new();
    let mut sites = Vec::with_capacity(site_count);
    for site in 0..site_count {
        let en = &states[english][site];
        let v_en = en.column_means();
        let fit_en = en.select_rows(&even).column_means();
        let held_en = en.select_rows(&odd);
        let mut langs = BTreeMap::new();
        for lang in &targets {
            let x = &states[lang][site];
            let v_l = x.column_means();
            let fit_l = x.select_rows(&even).column_means();
            let shift: Vec<f64> = fit_en.iter().zip(&fit_l).map(|(e, l)| e - l).collect();
            let shifted = x.select_rows(&odd).minus_row(&shift.iter().map(|v| -v).collect::<Vec<_>>());
            let shifted_distance = subspace_distance(&shifted, &held_en, &options.distance)?;
            let raw = subspace_distance(&x.select_rows(&odd), &held_en, &options.distance)?;
            let cosine = |a: &[f64], b: &[f64]| dot(a, b) / (norm(a) * norm(b)).max(f64::MIN_POSITIVE);
            let parallel_cosine = (0..n).map(|i| cosine(en.row(i), x.row(i))).sum::<f64>() / n as f64;
            let mismatched_cosine = (0..n).map(|i| cosine(en.row(i), x.row((i + 1) % n))).sum::<f64>() / n as f64;
            let (ce, cx) = (unit_rows(&en.minus_row(&v_en)), unit_rows(&x.minus_row(&v_l)));
            let similarity = ce.matmul(&cx.transpose());
            let hits = (0..n)
                .filter(|&i| {
                    let row = similarity.row(i);
                    (0..n).max_by(|&a, &b| row[a].total_cmp(&row[b])) == Some(i)
                })
                .count();
            let shift_norm = norm(&v_en.iter().zip(&v_l).map(|(e, l)| e - l).collect::<Vec<_>>());
            langs.insert(
                lang.clone(),
                LanguageAtSite {
                    shifted: shifted_distance,
                    raw,
                    parallel_cosine,
                    mismatched_cosine,
                    retrieval_top1: hits as f64 / n as f64,
                    shift_norm,
                },
            );
        }
        for (lang, per_site) in states {
            vectors.entry(lang.clone()).or_default().push(per_site[site].column_means().iter().map(|&v| v as f32).collect());
        }
        let mean_shifted_distance = langs.values().map(|l| l.shifted.total()).sum::<f64>() / langs.len() as f64;
        let all_norms: Vec<f64> = states.values().flat_map(|m| (0..n).map(move |i| norm(m[site].row(i)))).collect();
        let mean_state_norm = all_norms.iter().sum::<f64>() / all_norms.len() as f64;
        let (pca, pca_variance, pca_axes, pca_center) = pca_2d(states, site, options.pca_points.min(n));
        sites.push(SiteGeometry { site, langs, mean_shifted_distance, mean_state_norm, pca, pca_variance, pca_axes, pca_center });
    }
    let scores: Vec<f64> = sites.iter().map(|s| s.mean_shifted_distance).collect();
    let band = choose_band(&scores, options.beta)?;
    Ok(Geometry {
        english: english.to_string(),
        langs: states.keys().cloned().collect(),
        sentences: n,
        num_layers: site_count - 1,
        options: options.clone(),
        sites,
        band,
        vectors,
    })
}

/// Every row scaled to unit length (zero rows stay zero).
fn unit_rows(m: &Matrix) -> Matrix {
    let mut out = m.clone();
    for i in 0..m.rows {
        let len = norm(m.row(i));
        if len > 0.0 {
            out.data[i * m.cols..(i + 1) * m.cols].iter_mut().for_each(|v| *v /= len);
        }
    }
    out
}

/// PCA of the first `points` sentences of every language at `site`, on shared axes.
/// Coordinates per language, variance per axis, the axes (`[d_model]` rows) and the centre.
type Pca2d = (BTreeMap<String, Vec<[f32; 2]>>, [f64; 2], Vec<[f32; 2]>, Vec<f32>);

fn pca_2d(states: &BTreeMap<String, Vec<Matrix>>, site: usize, points: usize) -> Pca2d {
    let first: Vec<usize> = (0..points).collect();
    let parts: Vec<(String, Matrix)> = states.iter().map(|(l, m)| (l.clone(), m[site].select_rows(&first))).collect();
    let mut union = parts[0].1.clone();
    for (_, m) in &parts[1..] {
        union = union.stack(m);
    }
    let mean = union.column_means();
    let (axes, variance) = principal_axes(&union.minus_row(&mean), 2);
    let coords = parts
        .into_iter()
        .map(|(lang, m)| {
            let projected = m.minus_row(&mean).matmul(&axes);
            let points = (0..projected.rows)
                .map(|i| [projected.get(i, 0) as f32, projected.data.get(i * projected.cols + 1).copied().unwrap_or(0.0) as f32])
                .collect();
            (lang, points)
        })
        .collect();
    let axis = |c: usize, j: usize| if j < axes.cols { axes.get(c, j) as f32 } else { 0.0 };
    let axes_rows = (0..axes.rows).map(|c| [axis(c, 0), axis(c, 1)]).collect();
    let center = mean.iter().map(|&v| v as f32).collect();
    (coords, [variance.first().copied().unwrap_or(0.0), variance.get(1).copied().unwrap_or(0.0)], axes_rows, center)
}

/// The band from per-site scores (`scores[site]`, sites `0..=L`): the contiguous window of
/// ⌈β·L⌉ sites inside `1..L` with the smallest sum. Site 0 (the embeddings) and site L (the last
/// layer's output) are never in it: a band must start after the first layer and end before the head.
pub fn choose_band(scores: &[f64], beta: f64) -> Result<Band> {
    let layers = scores.len().saturating_sub(1);
    if layers < 3 {
        return Err(ShifconError::Invalid(format!("a band needs a model of at least 3 layers (this one has {layers})")));
    }
    let candidates = layers - 1; // sites 1..L
    let width = ((beta * layers as f64).ceil() as usize).clamp(1, candidates);
    let (mut best, mut best_sum) = (1, f64::INFINITY);
    for start in 1..=layers - width {
        let sum: f64 = scores[start..start + width].iter().sum();
        if sum < best_sum {
            best = start;
            best_sum = sum;
        }
    }
    let mut ranked: Vec<usize> = (1..layers).collect();
    ranked.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut smallest_sites: Vec<usize> = ranked.into_iter().take(width).collect();
    smallest_sites.sort_unstable();
    let contiguous = smallest_sites == (best..best + width).collect::<Vec<_>>();
    Ok(Band { to: best, back: best + width, beta, smallest_sites, contiguous })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_band_is_the_cheapest_window() {
        let scores = [9.0, 5.0, 4.0, 1.0, 1.5, 2.0, 6.0, 7.0, 8.0, 9.0, 9.5];
        let band = choose_band(&scores, 0.3).unwrap();
        assert_eq!((band.to, band.back), (3, 6));
        assert!(band.contiguous);
        // Site 0 and site L are never chosen, however small.
        let edges = [0.0, 5.0, 5.0, 5.0, 0.0];
        let band = choose_band(&edges, 0.3).unwrap();
        assert!(band.to >= 1 && band.back <= 4);
        assert!(choose_band(&[1.0, 2.0], 0.3).is_err());
    }
}
