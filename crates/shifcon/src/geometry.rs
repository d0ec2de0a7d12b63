//! Language geometry per layer: where do a model's languages live, how far apart, and which band
//! of layers should ShifCon work in?
//!
//! Input: the sentence states ([`crate::states`]) of parallel sentences, one matrix per language
//! and residual site, row i of every language being a translation of row i of the others.
//! Per site and non-English language:
//! - the **language vector** v_l (mean sentence state) and the shift's size ‖v_en − v_l‖;
//! - the **subspace distance** ([`crate::subspace`]) to English of the raw states and of the
//!   *shifted* ones. A shift changes no covariance, so both covariance terms are the one measured
//!   on all sentences. The shifted mean term is 0 when the vectors are measured on the same
//!   sentences (the paper's setting), so it is measured held out — vectors fitted on the
//!   even-numbered sentences, applied to the odd-numbered ones — and reported with its expected
//!   split-half noise, tr Σ_o·(1/n_even + 1/n_odd), o = e − x the per-pair offset;
//! - the mean **cosine** of parallel pairs and of mismatched pairs (i with i+1), and top-1
//!   **retrieval** of the translation among all candidates on the mean-centred states;
//! - a 2-D **PCA** of every language's states (shared axes per site) for the plots and the lab.
//!
//! **The band criterion** is the shifted distance at its expected mean term, 0: the covariance
//! term. The held-out mean term's expectation *is* its noise when one vector describes a
//! language (on SmolLM2-135M en/hu the observed term matches the predicted noise at every site,
//! to within 10 %): it shrinks as 1/√n, and adding it made the band follow the number of
//! sentences ([10, 19) at 40 sentences, [1, 10) at 120).
//!
//! **The band** [L_to, L_bk) is the contiguous window of ⌈β·L⌉ sites, starting no earlier than
//! ⌈`earliest_start`·L⌉ (and never at site 0 or ending past site L−1), with the smallest summed
//! criterion (averaged over languages). It is chosen with its uncertainty: the sentences are
//! resampled with replacement (`bootstrap` times, pairs kept together, the covariances recomputed
//! in each site's principal subspace), the window that wins most often is the band, and how often
//! each window won is part of the result ([`BandStability`]); a modal window winning fewer than
//! half of the resamples is marked uncertain. The paper takes the β% individually closest layers
//! and observes they are contiguous; the window guarantees it, and the result says whether the
//! individually closest sites agree.
//!
//! **Why no early band.** On SmolLM2-135M the covariance term is smallest at sites 3–9, where
//! translation retrieval is at its *lowest* (hu 0.06–0.11, below the embeddings' 0.14) and climbs
//! to its plateau only from site 10–11: those layers still map tokens into the model's shared
//! space, and the English-like latent space ShifCon shifts into appears in the middle layers
//! (Wendler et al., ACL 2024). The released area starts at 12 of 32 layers (37.5 %); the default
//! `earliest_start` is ⅓ of the depth. The window chosen without the rule is reported beside it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use rosetta_rng::SplitMix64;

use crate::conventions::Conventions;
use crate::error::{Result, ShifconError};
use crate::linalg::{Matrix, dot, norm, principal_axes};
use crate::subspace::{DistanceOptions, MIN_SENTENCES, SubspaceDistance, covariance_term, subspace_distance_projected, total_variance};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GeometryOptions {
    pub english: String,
    pub distance: DistanceOptions,
    pub beta: f64,
    /// Sentences per language in the PCA scatter.
    pub pca_points: usize,
    /// The band starts at site ⌈earliest_start · L⌉ or later (0: anywhere from site 1).
    #[serde(default = "default_earliest_start")]
    pub earliest_start: f64,
    /// Resamples of the sentences for the band's uncertainty (0: no resampling).
    #[serde(default = "default_bootstrap")]
    pub bootstrap: usize,
    /// Seed of the resampling.
    #[serde(default)]
    pub seed: u64,
}

fn default_earliest_start() -> f64 {
    1.0 / 3.0
}
fn default_bootstrap() -> usize {
    200
}

impl Default for GeometryOptions {
    fn default() -> Self {
        GeometryOptions {
            english: "en".into(),
            distance: DistanceOptions::default(),
            beta: 0.3,
            pca_points: 60,
            earliest_start: default_earliest_start(),
            bootstrap: default_bootstrap(),
            seed: 0,
        }
    }
}

/// A modal window that wins fewer than this share of the resamples is reported as uncertain.
pub const CERTAIN_FREQUENCY: f64 = 0.5;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LanguageAtSite {
    /// Distance of the shifted states to English: the covariance term of all sentences, the mean
    /// term held out (vectors from the even sentences, measured on the odd ones) with its
    /// expected split-half noise.
    pub shifted: SubspaceDistance,
    /// Distance of the raw states to English (all sentences; the mean term's noise from the
    /// spread of the per-pair offsets).
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
    /// The band criterion: the mean over target languages of the shifted distance at its
    /// expected mean term (0), i.e. of the covariance term.
    pub band_criterion: f64,
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
    /// The earliest site the band may start at.
    #[serde(default = "one")]
    pub earliest: usize,
    /// The ⌈β·L⌉ sites from `earliest` on with the smallest criterion, each on its own (sorted).
    pub smallest_sites: Vec<usize>,
    /// Whether those form the band's window.
    pub contiguous: bool,
    /// The window the criterion of all sentences picks (the band unless resampling disagrees).
    #[serde(default)]
    pub point_estimate: [usize; 2],
    /// The window the criterion picks with no earliest-start rule.
    #[serde(default)]
    pub unrestricted: [usize; 2],
    /// How often each window won under resampling (`None`: not resampled).
    #[serde(default)]
    pub stability: Option<BandStability>,
}

fn one() -> usize {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BandStability {
    pub resamples: usize,
    /// Windows `[to, back]` with the share of resamples each won, most frequent first.
    pub wins: Vec<WindowWins>,
    /// The share of the modal window (the band).
    pub frequency: f64,
    /// The modal window won fewer than [`CERTAIN_FREQUENCY`] of the resamples.
    pub uncertain: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowWins {
    pub window: [usize; 2],
    pub frequency: f64,
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
    /// How the sentence states and vectors were made.
    #[serde(default)]
    pub conventions: Conventions,
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
    // Per site and target language, both languages' states in their shared principal subspace:
    // what the resampled covariance terms are computed from.
    let mut projected: Vec<Vec<(Matrix, Matrix)>> = Vec::with_capacity(site_count);
    for site in 0..site_count {
        let en = &states[english][site];
        let v_en = en.column_means();
        let mut langs = BTreeMap::new();
        let mut site_projections = Vec::with_capacity(targets.len());
        for lang in &targets {
            let x = &states[lang][site];
            let v_l = x.column_means();
            let (raw, shifted, projection) = raw_and_shifted(en, x, &even, &odd, &options.distance)?;
            site_projections.push(projection);
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
                LanguageAtSite { shifted, raw, parallel_cosine, mismatched_cosine, retrieval_top1: hits as f64 / n as f64, shift_norm },
            );
        }
        projected.push(site_projections);
        for (lang, per_site) in states {
            vectors.entry(lang.clone()).or_default().push(per_site[site].column_means().iter().map(|&v| v as f32).collect());
        }
        let band_criterion = langs.values().map(|l| l.shifted.covariance).sum::<f64>() / langs.len() as f64;
        let all_norms: Vec<f64> = states.values().flat_map(|m| (0..n).map(move |i| norm(m[site].row(i)))).collect();
        let mean_state_norm = all_norms.iter().sum::<f64>() / all_norms.len() as f64;
        let (pca, pca_variance, pca_axes, pca_center) = pca_2d(states, site, options.pca_points.min(n));
        sites.push(SiteGeometry { site, langs, band_criterion, mean_state_norm, pca, pca_variance, pca_axes, pca_center });
    }
    let scores: Vec<f64> = sites.iter().map(|s| s.band_criterion).collect();
    let mut band = choose_band(&scores, options.beta, earliest_site(options.earliest_start, site_count - 1))?;
    if options.bootstrap > 0 {
        // `choose_band` pulls an earliest start back to the last window that fits: resample there.
        let stability = resample_band(&projected, n, options, band.earliest)?;
        band = band.with_stability(stability);
    }
    Ok(Geometry {
        english: english.to_string(),
        langs: states.keys().cloned().collect(),
        sentences: n,
        num_layers: site_count - 1,
        options: options.clone(),
        sites,
        band,
        vectors,
        conventions: Conventions::default(),
    })
}

/// The raw and the shifted distance of target states `x` to English states `en` (row i of each a
/// pair): see the module documentation. Also both in their shared subspace, for the resamples.
fn raw_and_shifted(
    en: &Matrix,
    x: &Matrix,
    even: &[usize],
    odd: &[usize],
    options: &DistanceOptions,
) -> Result<(SubspaceDistance, SubspaceDistance, (Matrix, Matrix))> {
    let (mut raw, projection) = subspace_distance_projected(x, en, options)?;
    // The pairs' offsets o_i = e_i − x_i: their spread is the noise of every mean term here.
    let offsets = Matrix { rows: en.rows, cols: en.cols, data: en.data.iter().zip(&x.data).map(|(e, v)| e - v).collect() };
    let spread = total_variance(&offsets.minus_row(&offsets.column_means()));
    raw.mean_noise = (spread / en.rows as f64).sqrt();
    let fitted = offsets.select_rows(even).column_means();
    let held_out = offsets.select_rows(odd).column_means();
    let mean = norm(&fitted.iter().zip(&held_out).map(|(f, h)| f - h).collect::<Vec<_>>());
    let mean_noise = (spread * (1.0 / even.len() as f64 + 1.0 / odd.len() as f64)).sqrt();
    Ok((raw, SubspaceDistance { covariance: raw.covariance, mean, mean_noise, dims: raw.dims }, projection))
}

/// ⌈fraction · layers⌉, at least 1.
pub fn earliest_site(fraction: f64, layers: usize) -> usize {
    ((fraction.clamp(0.0, 1.0) * layers as f64).ceil() as usize).max(1)
}

/// The band of every resample: sentence indices drawn with replacement (pairs together), the
/// covariance terms recomputed in each site's subspace, the cheapest window counted.
fn resample_band(projected: &[Vec<(Matrix, Matrix)>], n: usize, options: &GeometryOptions, earliest: usize) -> Result<BandStability> {
    let layers = projected.len() - 1;
    let width = band_width(options.beta, layers);
    let mut rng = SplitMix64::new(options.seed ^ 0x5348_4946_434f_4e00);
    let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
    for _ in 0..options.bootstrap {
        let picks: Vec<usize> = (0..n).map(|_| rng.below(n)).collect();
        let mut scores = vec![0.0; projected.len()];
        for (site, per_lang) in projected.iter().enumerate() {
            for (px, pe) in per_lang {
                scores[site] += covariance_term(&px.select_rows(&picks), &pe.select_rows(&picks), options.distance.shrinkage)?;
            }
            scores[site] /= per_lang.len() as f64;
        }
        *counts.entry(cheapest_window(&scores, width, earliest)).or_default() += 1;
    }
    let mut wins: Vec<WindowWins> = counts
        .into_iter()
        .map(|(to, count)| WindowWins { window: [to, to + width], frequency: count as f64 / options.bootstrap as f64 })
        .collect();
    wins.sort_by(|a, b| b.frequency.total_cmp(&a.frequency).then(a.window.cmp(&b.window)));
    let frequency = wins[0].frequency;
    Ok(BandStability { resamples: options.bootstrap, wins, frequency, uncertain: frequency < CERTAIN_FREQUENCY })
}

/// Every row scaled to unit length (zero rows stay zero).
fn unit_rows(m: &Matrix) -> Matrix {
    let mut out = m.clone();
    out.data.chunks_mut(m.cols.max(1)).for_each(crate::states::unit_length);
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

/// ⌈β·L⌉ sites, at least 1 and at most the L−1 candidate sites.
fn band_width(beta: f64, layers: usize) -> usize {
    ((beta * layers as f64).ceil() as usize).clamp(1, layers.saturating_sub(1).max(1))
}

/// The start of the window of `width` sites in `first..L` (L = `scores.len() − 1`) with the
/// smallest sum; the earliest start on ties.
fn cheapest_window(scores: &[f64], width: usize, first: usize) -> usize {
    let layers = scores.len() - 1;
    let (mut best, mut best_sum) = (first, f64::INFINITY);
    for start in first..=layers - width {
        let sum: f64 = scores[start..start + width].iter().sum();
        if sum < best_sum {
            best = start;
            best_sum = sum;
        }
    }
    best
}

/// The band from per-site scores (`scores[site]`, sites `0..=L`): the contiguous window of
/// ⌈β·L⌉ sites inside `earliest..L` with the smallest sum. Site 0 (the embeddings) and site L
/// (the last layer's output) are never in it: a band starts after the first layer and ends before
/// the head. An `earliest` that leaves no room for the window moves back until it fits.
pub fn choose_band(scores: &[f64], beta: f64, earliest: usize) -> Result<Band> {
    let layers = scores.len().saturating_sub(1);
    if layers < 3 {
        return Err(ShifconError::Invalid(format!("a band needs a model of at least 3 layers (this one has {layers})")));
    }
    let width = band_width(beta, layers);
    let earliest = earliest.clamp(1, layers - width);
    let best = cheapest_window(scores, width, earliest);
    let free = cheapest_window(scores, width, 1);
    let mut ranked: Vec<usize> = (earliest..layers).collect();
    ranked.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut smallest_sites: Vec<usize> = ranked.into_iter().take(width).collect();
    smallest_sites.sort_unstable();
    let contiguous = smallest_sites == (best..best + width).collect::<Vec<_>>();
    Ok(Band {
        to: best,
        back: best + width,
        beta,
        earliest,
        smallest_sites,
        contiguous,
        point_estimate: [best, best + width],
        unrestricted: [free, free + width],
        stability: None,
    })
}

impl Band {
    /// The band moved to the modal window of `stability` (the point estimate stays recorded).
    fn with_stability(self, stability: BandStability) -> Band {
        let [to, back] = stability.wins[0].window;
        let contiguous = self.smallest_sites == (to..back).collect::<Vec<_>>();
        Band { to, back, contiguous, stability: Some(stability), ..self }
    }

    /// "won 87 % of 200 resamples" or "was not resampled".
    pub fn confidence(&self) -> String {
        match &self.stability {
            Some(s) => format!(
                "won {:.0} % of {} resamples{}",
                100.0 * s.frequency,
                s.resamples,
                if s.uncertain { " — uncertain: no window wins a majority" } else { "" }
            ),
            None => "was not resampled".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_band_is_the_cheapest_window() {
        let scores = [9.0, 5.0, 4.0, 1.0, 1.5, 2.0, 6.0, 7.0, 8.0, 9.0, 9.5];
        let band = choose_band(&scores, 0.3, 1).unwrap();
        assert_eq!((band.to, band.back), (3, 6));
        assert!(band.contiguous);
        assert_eq!(band.unrestricted, [3, 6]);
        // Site 0 and site L are never chosen, however small.
        let edges = [0.0, 5.0, 5.0, 5.0, 0.0];
        let band = choose_band(&edges, 0.3, 1).unwrap();
        assert!(band.to >= 1 && band.back <= 4);
        assert!(choose_band(&[1.0, 2.0], 0.3, 1).is_err());
    }

    #[test]
    fn the_earliest_start_is_enforced_and_the_free_choice_reported() {
        let scores = [9.0, 1.0, 1.0, 1.0, 3.0, 2.0, 2.0, 2.0, 8.0, 9.0, 9.5];
        let band = choose_band(&scores, 0.3, earliest_site(1.0 / 3.0, 10)).unwrap();
        assert_eq!((band.earliest, band.to, band.back), (4, 5, 8));
        assert_eq!(band.unrestricted, [1, 4]);
        // An earliest start past the last window that fits is pulled back to it.
        let late = choose_band(&scores, 0.3, 9).unwrap();
        assert_eq!((late.to, late.back), (7, 10));
    }
}
