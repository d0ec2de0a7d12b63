//! The subspace distance ShifCon uses to choose its layer band (§3.3 of the paper): between the
//! sentence states of two languages at one layer,
//!
//! ```text
//! Dist(a, b) = sqrt(Σᵢ log² λᵢ) + ‖μ_a − μ_b‖₂
//! ```
//!
//! where λᵢ are the generalised eigenvalues of the two covariance matrices (Σ_a v = λ Σ_b v: the
//! affine-invariant Riemannian distance between covariances) and μ the means.
//!
//! **Regularisation when n < d.** With a few hundred sentences and d_model = 576…4096 the
//! covariances are singular, so both are estimated in a shared k-dimensional principal subspace
//! (the paper's "subspaces estimated by PCA"): the top-k principal axes of the two languages'
//! states stacked, each centred on its own mean (so the mean difference does not claim an axis,
//! and the basis is symmetric in a and b). Inside it each covariance is shrunk toward a scaled
//! identity, Σ ← (1−α)Σ + α·(tr Σ / k)·I (α = 0.1 by default), and k ≤ n_min / 2 keeps the estimate
//! away from rank deficiency. Identical inputs give exactly 0; swapping a and b inverts every λ,
//! so the distance is symmetric.
//!
//! **Sampling noise of the mean term.** ‖μ̂_a − μ̂_b‖ overestimates ‖μ_a − μ_b‖: its square has
//! expectation ‖μ_a − μ_b‖² + tr Σ_a/n_a + tr Σ_b/n_b for independent samples. Every distance carries
//! that expected noise (`mean_noise`, the square root of the added term) and the unbiased
//! estimate of the squared term ([`SubspaceDistance::unbiased_mean`]), so a reader can tell a
//! mean difference from sampling noise.

use serde::{Deserialize, Serialize};

use crate::error::{Result, ShifconError};
use crate::linalg::{Matrix, cholesky, norm, principal_axes, symmetric_eigen, whiten};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DistanceOptions {
    /// Dimensions of the shared principal subspace.
    pub dims: usize,
    /// Shrinkage α toward the scaled identity.
    pub shrinkage: f64,
}

impl Default for DistanceOptions {
    fn default() -> Self {
        DistanceOptions { dims: 16, shrinkage: 0.1 }
    }
}

/// The fewest sentences per language [`subspace_distance`] accepts.
pub const MIN_SENTENCES: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SubspaceDistance {
    /// sqrt(Σ log² λ).
    pub covariance: f64,
    /// ‖μ_a − μ_b‖₂ as observed.
    pub mean: f64,
    /// The root of the noise the sample means add to `mean²` in expectation.
    #[serde(default)]
    pub mean_noise: f64,
    /// Dimensions actually used (≤ the requested ones).
    pub dims: usize,
}

impl SubspaceDistance {
    /// The paper's distance as observed: covariance term + observed mean term.
    pub fn total(&self) -> f64 {
        self.covariance + self.mean
    }

    /// sqrt(max(0, mean² − mean_noise²)): the mean term with its expected sampling noise taken
    /// out (unbiased for the squared term; 0 where the observed difference is all noise).
    pub fn unbiased_mean(&self) -> f64 {
        (self.mean * self.mean - self.mean_noise * self.mean_noise).max(0.0).sqrt()
    }
}

/// Σ‖row‖²/(n−1) of already-centred rows: the trace of their covariance.
pub fn total_variance(centred: &Matrix) -> f64 {
    centred.data.iter().map(|v| v * v).sum::<f64>() / (centred.rows.max(2) - 1) as f64
}

/// The rows of `a` and `b`, each centred on its own mean, projected into their shared top-k
/// principal subspace (`n_a × k`, `n_b × k`): what the covariance term compares.
pub fn shared_subspace(a: &Matrix, b: &Matrix, options: &DistanceOptions) -> (Matrix, Matrix) {
    let (ca, cb) = (a.minus_row(&a.column_means()), b.minus_row(&b.column_means()));
    let k = usable_dims(options, a.rows, b.rows, a.cols);
    let (basis, _) = principal_axes(&ca.stack(&cb), k);
    (ca.matmul(&basis), cb.matmul(&basis))
}

/// sqrt(Σ log² λ) between the shrunk covariances of two sets of rows in one k-dimensional
/// subspace (`n_a × k`, `n_b × k`; each centred on its own mean here).
pub fn covariance_term(pa: &Matrix, pb: &Matrix, shrinkage: f64) -> Result<f64> {
    let k = pa.cols;
    let covariance_in = |rows: &Matrix| {
        let centred = rows.minus_row(&rows.column_means());
        let mut cov = centred.transpose().matmul(&centred);
        let n = (centred.rows.max(2) - 1) as f64;
        cov.data.iter_mut().for_each(|v| *v /= n);
        let floor = shrinkage * cov.trace() / k as f64;
        cov.data.iter_mut().for_each(|v| *v *= 1.0 - shrinkage);
        (0..k).for_each(|i| cov.set(i, i, cov.get(i, i) + floor));
        cov
    };
    let eigenvalues = generalized_eigenvalues(&covariance_in(pa), &covariance_in(pb))?;
    Ok(eigenvalues.iter().map(|l| l.max(f64::MIN_POSITIVE).ln().powi(2)).sum::<f64>().sqrt())
}

/// The dimensions a pair of sets of `n_a` and `n_b` rows supports.
pub fn usable_dims(options: &DistanceOptions, n_a: usize, n_b: usize, d: usize) -> usize {
    options.dims.min(n_a.min(n_b) / 2).min(d).max(1)
}

/// The distance between the rows of `a` and those of `b` (`n × d` each; n may differ).
pub fn subspace_distance(a: &Matrix, b: &Matrix, options: &DistanceOptions) -> Result<SubspaceDistance> {
    Ok(subspace_distance_projected(a, b, options)?.0)
}

/// [`subspace_distance`], also handing back both sets in their shared subspace
/// ([`shared_subspace`]), for callers that recompute the covariance term on resamples.
pub fn subspace_distance_projected(a: &Matrix, b: &Matrix, options: &DistanceOptions) -> Result<(SubspaceDistance, (Matrix, Matrix))> {
    if a.cols != b.cols {
        return Err(ShifconError::Invalid(format!("states of width {} and {} cannot be compared", a.cols, b.cols)));
    }
    if !(0.0..1.0).contains(&options.shrinkage) || options.dims == 0 {
        return Err(ShifconError::Invalid(format!(
            "shrinkage must be in [0, 1) and dims ≥ 1 (got {} and {})",
            options.shrinkage, options.dims
        )));
    }
    let n_min = a.rows.min(b.rows);
    if n_min < MIN_SENTENCES {
        return Err(ShifconError::TooFewSentences {
            what: "subspace distance".into(),
            lang: if a.rows < b.rows { "the first set".into() } else { "the second set".into() },
            count: n_min,
            dims: options.dims,
            needed: MIN_SENTENCES,
        });
    }
    let (mu_a, mu_b) = (a.column_means(), b.column_means());
    let mean = norm(&mu_a.iter().zip(&mu_b).map(|(x, y)| x - y).collect::<Vec<_>>());
    let mean_noise = (total_variance(&a.minus_row(&mu_a)) / a.rows as f64 + total_variance(&b.minus_row(&mu_b)) / b.rows as f64).sqrt();
    let (pa, pb) = shared_subspace(a, b, options);
    let covariance = covariance_term(&pa, &pb, options.shrinkage)?;
    Ok((SubspaceDistance { covariance, mean, mean_noise, dims: pa.cols }, (pa, pb)))
}

/// λ with `a v = λ b v`, for symmetric `a` and symmetric positive definite `b`.
pub fn generalized_eigenvalues(a: &Matrix, b: &Matrix) -> Result<Vec<f64>> {
    let l = cholesky(b)?;
    let mut m = whiten(a, &l);
    // Rounding leaves m a hair asymmetric; the eigenproblem is of its symmetric part.
    for i in 0..m.rows {
        for j in 0..i {
            let s = 0.5 * (m.get(i, j) + m.get(j, i));
            m.set(i, j, s);
            m.set(j, i, s);
        }
    }
    Ok(symmetric_eigen(&m).0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(rows: usize, cols: usize, seed: u64, scale: f64) -> Matrix {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        Matrix { rows, cols, data: (0..rows * cols).map(|i| next() * scale * (1.0 + (i % cols) as f64 / cols as f64)).collect() }
    }

    #[test]
    fn identical_sets_are_at_distance_zero() {
        let a = random(40, 24, 1, 1.0);
        let d = subspace_distance(&a, &a, &DistanceOptions::default()).unwrap();
        assert!(d.total().abs() < 1e-9, "{d:?}");
    }

    #[test]
    fn the_distance_is_symmetric_and_grows_with_the_difference() {
        let a = random(60, 32, 2, 1.0);
        let b = random(50, 32, 3, 1.0);
        let options = DistanceOptions::default();
        let ab = subspace_distance(&a, &b, &options).unwrap();
        let ba = subspace_distance(&b, &a, &options).unwrap();
        assert!((ab.total() - ba.total()).abs() < 1e-9 * ab.total(), "{ab:?} vs {ba:?}");
        let far = random(50, 32, 3, 3.0);
        assert!(subspace_distance(&a, &far, &options).unwrap().covariance > ab.covariance);
    }

    #[test]
    fn the_mean_noise_is_what_two_samples_of_one_population_differ_by() {
        // Two independent samples of one distribution: the observed mean term is pure noise, of
        // the size `mean_noise` predicts, and the unbiased term is far below it.
        let options = DistanceOptions::default();
        let (mut observed, mut predicted, mut unbiased) = (0.0, 0.0, 0.0);
        for seed in 0..20 {
            let d = subspace_distance(&random(60, 32, 100 + seed, 1.0), &random(60, 32, 200 + seed, 1.0), &options).unwrap();
            observed += d.mean * d.mean;
            predicted += d.mean_noise * d.mean_noise;
            unbiased += d.unbiased_mean();
        }
        assert!((observed / predicted - 1.0).abs() < 0.15, "observed {observed} vs predicted {predicted}");
        assert!(unbiased / 20.0 < 0.5 * (predicted / 20.0).sqrt(), "{unbiased}");
    }

    #[test]
    fn too_few_sentences_are_refused() {
        let err = subspace_distance(&random(5, 8, 1, 1.0), &random(30, 8, 2, 1.0), &DistanceOptions::default()).unwrap_err();
        assert!(err.to_string().contains("5 sentences"), "{err}");
    }
}
