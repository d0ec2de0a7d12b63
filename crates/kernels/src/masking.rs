//! Magnitude masking for pruning (Kim et al., EMNLP Findings 2024, on Wanda — Sun et al. 2024):
//! - Wanda score `S_ij = |W_ij| · ‖X_j‖₂` (per input feature norms broadcast over output rows);
//! - per output row, prune exactly `⌊sparsity · width⌋` entries of smallest score (ties broken by
//!   the lower column index), or N:M — keep the N largest of every M consecutive columns;
//! - apply the mask (out of place, or in place where the weight buffer is not shared);
//! - accumulate per-feature Σx² over tokens, skipping masked (padding) tokens.
//!
//! Every function runs WGSL kernels (`shaders/*.wgsl`) on wgpu devices and the plain-tensor
//! reference (`*_reference`) elsewhere; the masks also have a host kernel on the CPU backend
//! (`cpu::masking`: selection, not a sort). Masks are `[out, in]` booleans, `true` = keep, or the
//! kernels' own float form (`prune_keep` / `apply_keep`: `1.0` keep, `0.0` prune).

use burn::prelude::*;

use crate::error::{KernelError, Result, shape_error};

/// How many weights a row loses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sparsity {
    /// Prune this fraction (in `[0, 1)`) of every row.
    Unstructured(f64),
    /// Keep `n` of every `m` consecutive weights of a row.
    NM { n: usize, m: usize },
}

impl Sparsity {
    pub fn validate(&self, width: usize) -> Result<()> {
        match *self {
            Sparsity::Unstructured(s) if !(0.0..1.0).contains(&s) => Err(KernelError::Sparsity(s)),
            Sparsity::NM { n, m } if n == 0 || n >= m || !width.is_multiple_of(m) => Err(KernelError::NM { n, m, width }),
            _ => Ok(()),
        }
    }

    /// Pruned entries per row (unstructured).
    pub fn pruned_per_row(&self, width: usize) -> usize {
        match *self {
            Sparsity::Unstructured(s) => (s * width as f64).floor() as usize,
            Sparsity::NM { n, m } => width / m * (m - n),
        }
    }
}

fn check_scores(weight: &Tensor<2>, norms: &Tensor<1>) -> Result<()> {
    let [_, width] = weight.dims();
    let [n] = norms.dims();
    if n != width {
        return Err(shape_error("wanda score", format!("weight is {:?} but the feature norms have {n} entries", weight.dims())));
    }
    Ok(())
}

/// `|W| ⊙ norms` broadcast over rows.
///
/// # Shapes
/// `weight: [out, in]`, `norms: [in]` → `[out, in]`.
pub fn wanda_scores_reference(weight: Tensor<2>, norms: Tensor<1>) -> Result<Tensor<2>> {
    check_scores(&weight, &norms)?;
    Ok(weight.abs() * norms.unsqueeze_dim::<2>(0))
}

pub fn wanda_scores(weight: Tensor<2>, norms: Tensor<1>) -> Result<Tensor<2>> {
    check_scores(&weight, &norms)?;
    #[cfg(feature = "wgpu")]
    if crate::is_wgpu(&weight.device()) {
        return Ok(crate::wgpu::masking::wanda_scores(weight.inner(), norms.inner()));
    }
    wanda_scores_reference(weight, norms)
}

/// Keep-mask from scores: exact-k pruning per row (or per group of M) with index tie-breaking,
/// from sort + cumulative sum.
///
/// # Shapes
/// `scores: [out, in]` → `[out, in]` (true = keep).
pub fn prune_mask_reference(scores: Tensor<2>, sparsity: Sparsity) -> Result<Tensor<2, Bool>> {
    let [rows, width] = scores.dims();
    sparsity.validate(width)?;
    match sparsity {
        Sparsity::Unstructured(_) => {
            let k = sparsity.pruned_per_row(width);
            if k == 0 {
                return Ok(scores.greater_equal_elem(f32::NEG_INFINITY));
            }
            Ok(exact_k_keep(scores, k).reshape([rows, width]))
        }
        Sparsity::NM { n, m } => {
            let groups = scores.reshape([rows * width / m, m]);
            Ok(exact_k_keep(groups, m - n).reshape([rows, width]))
        }
    }
}

/// Per row of `values` (`[r, w]`), marks the `k` smallest (ties: lower index first) false.
fn exact_k_keep(values: Tensor<2>, k: usize) -> Tensor<2, Bool> {
    let [r, w] = values.dims();
    let sorted = values.clone().sort(1);
    let kth = sorted.slice([0..r, k - 1..k]);
    let less = values.clone().lower(kth.clone().expand([r, w]));
    let equal = values.equal(kth.expand([r, w]));
    let pruned_less = less.clone().int().sum_dim(1);
    let still_to_prune = pruned_less.neg().add_scalar(k as i64);
    let rank_among_equal = equal.clone().int().cumsum(1);
    let prune_equal = equal.bool_and(rank_among_equal.lower_equal(still_to_prune.expand([r, w])));
    less.bool_or(prune_equal).bool_not()
}

/// [`prune_mask_reference`]'s masks: the WGSL kernel on wgpu, selection on the host on the CPU
/// backend ([`crate::cpu::masking`]), the reference elsewhere.
pub fn prune_mask(scores: Tensor<2>, sparsity: Sparsity) -> Result<Tensor<2, Bool>> {
    #[cfg(feature = "wgpu")]
    if crate::is_wgpu(&scores.device()) {
        return Ok(prune_keep(scores, sparsity)?.greater_elem(0.5));
    }
    if crate::fused_cpu_supports(&scores.device(), &[scores.dtype()]) {
        return Ok(host_keep(scores, sparsity)?.greater_elem(0.5));
    }
    prune_mask_reference(scores, sparsity)
}

/// The masks of [`crate::cpu::masking::exact_k_keep`] on the scores' host values, as `1.0` keep
/// / `0.0` prune. Called only on the CPU backend.
fn host_keep(scores: Tensor<2>, sparsity: Sparsity) -> Result<Tensor<2>> {
    let [rows, width] = scores.dims();
    sparsity.validate(width)?;
    let (group, k) = match sparsity {
        Sparsity::Unstructured(_) => (width, sparsity.pruned_per_row(width)),
        Sparsity::NM { n, m } => (m, m - n),
    };
    let device = scores.device();
    if k == 0 || rows * width == 0 {
        return Ok(Tensor::ones([rows, width], &device));
    }
    let values = crate::cpu_values(scores, "prune mask")?;
    let keep = crate::cpu::masking::exact_k_keep(&values, group, k);
    Ok(Tensor::from_data(TensorData::new(keep, [rows, width]), &device))
}

/// [`prune_mask`] in the form the masking kernel writes and [`apply_keep`] reads: `1.0` keep,
/// `0.0` prune, with no conversion to booleans on the way.
pub fn prune_keep(scores: Tensor<2>, sparsity: Sparsity) -> Result<Tensor<2>> {
    let [_, width] = scores.dims();
    sparsity.validate(width)?;
    #[cfg(feature = "wgpu")]
    if crate::is_wgpu(&scores.device()) {
        return Ok(crate::wgpu::masking::prune_keep(scores.inner(), sparsity));
    }
    if crate::fused_cpu_supports(&scores.device(), &[scores.dtype()]) {
        return host_keep(scores, sparsity);
    }
    Ok(prune_mask_reference(scores, sparsity)?.float())
}

fn check_mask(weight: &Tensor<2>, keep: [usize; 2]) -> Result<()> {
    if weight.dims() != keep {
        return Err(shape_error("apply mask", format!("weight is {:?} but the mask {keep:?}", weight.dims())));
    }
    Ok(())
}

/// `W` with pruned entries zeroed.
pub fn apply_mask_reference(weight: Tensor<2>, keep: Tensor<2, Bool>) -> Result<Tensor<2>> {
    check_mask(&weight, keep.dims())?;
    Ok(weight.mask_fill(keep.bool_not(), 0.0))
}

/// `W` with pruned entries zeroed. On wgpu the kernel writes into `weight`'s own buffer when no
/// other tensor shares it (in place), else into a new one.
pub fn apply_mask(weight: Tensor<2>, keep: Tensor<2, Bool>) -> Result<Tensor<2>> {
    check_mask(&weight, keep.dims())?;
    #[cfg(feature = "wgpu")]
    if crate::is_wgpu(&weight.device()) {
        return apply_keep(weight, keep.float());
    }
    apply_mask_reference(weight, keep)
}

/// [`apply_mask`] with the float mask [`prune_keep`] gives (`0.0` = prune): no conversion to
/// booleans, in place on wgpu where `weight`'s buffer is not shared.
pub fn apply_keep(weight: Tensor<2>, keep: Tensor<2>) -> Result<Tensor<2>> {
    check_mask(&weight, keep.dims())?;
    #[cfg(feature = "wgpu")]
    if crate::is_wgpu(&weight.device()) {
        return Ok(crate::wgpu::masking::apply_keep(weight.inner(), keep.inner()));
    }
    Ok(weight.mask_fill(keep.lower_elem(0.5), 0.0))
}

fn check_stats(x: &Tensor<2>, token_mask: Option<&Tensor<1>>) -> Result<()> {
    if let Some(mask) = token_mask
        && mask.dims()[0] != x.dims()[0]
    {
        return Err(shape_error("feature statistics", format!("{} tokens but a mask of {}", x.dims()[0], mask.dims()[0])));
    }
    Ok(())
}

/// Per-feature Σx² and max|x| over the tokens whose mask is 1.
///
/// # Shapes
/// `x: [tokens, d]`, `token_mask: [tokens]` (1.0 keep, 0.0 skip) → (`[d]`, `[d]`).
pub fn feature_stats_reference(x: Tensor<2>, token_mask: Option<Tensor<1>>) -> Result<(Tensor<1>, Tensor<1>)> {
    check_stats(&x, token_mask.as_ref())?;
    let x = match token_mask {
        Some(m) => x * m.unsqueeze_dim::<2>(1),
        None => x,
    };
    let sum_sq = x.clone().square().sum_dim(0).squeeze_dim(0);
    let max_abs = x.abs().max_dim(0).squeeze_dim(0);
    Ok((sum_sq, max_abs))
}

pub fn feature_stats(x: Tensor<2>, token_mask: Option<Tensor<1>>) -> Result<(Tensor<1>, Tensor<1>)> {
    check_stats(&x, token_mask.as_ref())?;
    #[cfg(feature = "wgpu")]
    if crate::is_wgpu(&x.device()) {
        return Ok(crate::wgpu::masking::feature_stats(x.inner(), token_mask.map(|m| m.inner())));
    }
    feature_stats_reference(x, token_mask)
}

fn check_sequence_stats(x: &Tensor<3>, valid: Option<&Tensor<2>>) -> Result<()> {
    let [batch, seq, _] = x.dims();
    if let Some(valid) = valid
        && valid.dims() != [batch, seq]
    {
        return Err(shape_error("sequence feature statistics", format!("x is {:?} but the valid-token mask {:?}", x.dims(), valid.dims())));
    }
    Ok(())
}

/// Per sequence and input feature, Σx² and max|x| over the sequence's valid tokens: what a
/// calibration trace keeps (Wanda's feature norms; Kim et al.'s per-sequence norms).
///
/// # Shapes
/// `x: [batch, seq, d]`, `valid: [batch, seq]` (1.0 real token, 0.0 padding) →
/// (`[batch, d]`, `[batch, d]`).
pub fn sequence_feature_stats_reference(x: Tensor<3>, valid: Option<Tensor<2>>) -> Result<(Tensor<2>, Tensor<2>)> {
    check_sequence_stats(&x, valid.as_ref())?;
    let x = match valid {
        Some(v) => x * v.unsqueeze_dim::<3>(2),
        None => x,
    };
    let sum_sq = x.clone().square().sum_dim(1).squeeze_dim(1);
    let max_abs = x.abs().max_dim(1).squeeze_dim(1);
    Ok((sum_sq, max_abs))
}

/// [`sequence_feature_stats_reference`] in one launch of the feature-statistics kernel on wgpu
/// (one chunk of tokens per sequence).
pub fn sequence_feature_stats(x: Tensor<3>, valid: Option<Tensor<2>>) -> Result<(Tensor<2>, Tensor<2>)> {
    check_sequence_stats(&x, valid.as_ref())?;
    let [batch, seq, _] = x.dims();
    // One workgroup row per sequence: at most 65,535 of them, and none empty.
    #[cfg(feature = "wgpu")]
    if crate::is_wgpu(&x.device()) && seq > 0 && batch <= 65_535 {
        return Ok(crate::wgpu::masking::sequence_feature_stats(x.inner(), valid.map(|v| v.inner())));
    }
    let _ = (batch, seq);
    sequence_feature_stats_reference(x, valid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t2(values: &[f32], shape: [usize; 2]) -> Tensor<2> {
        Tensor::from_data(TensorData::new(values.to_vec(), shape), &Device::flex())
    }

    fn keep(mask: Tensor<2, Bool>) -> Vec<bool> {
        mask.into_data().convert::<bool>().try_to_vec::<bool>().unwrap()
    }

    #[test]
    fn exact_k_with_ties_by_index() {
        let scores = t2(&[3.0, 1.0, 1.0, 1.0, 5.0, 0.5, 2.0, 2.0], [2, 4]);
        let mask = prune_mask_reference(scores, Sparsity::Unstructured(0.5)).unwrap();
        // Row 0: prune 2 of the three 1.0s — the first two by index. Row 1: prune 0.5 and the first 2.0.
        assert_eq!(keep(mask), vec![true, false, false, true, true, false, false, true]);
    }

    /// Scores with many ties, zeros of both signs and odd widths, so the order's every rule counts.
    fn tied_scores(rows: usize, width: usize, seed: u64) -> Vec<f32> {
        let mut state = seed;
        (0..rows * width)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                [0.0, -0.0, 0.25, 0.5, 0.5, 1.0, 3.0, 1e-30][(state >> 33) as usize % 8]
            })
            .collect()
    }

    #[test]
    fn the_host_selection_matches_the_sorting_reference() {
        for (rows, width) in [(1, 1), (3, 7), (5, 33), (4, 100), (2, 1536)] {
            let values = tied_scores(rows, width, (rows * 1000 + width) as u64);
            let reference = |sparsity| keep(prune_mask_reference(t2(&values, [rows, width]), sparsity).unwrap());
            for sparsity in [0.0, 0.1, 0.5, 0.7, 0.99] {
                let s = Sparsity::Unstructured(sparsity);
                let host: Vec<bool> =
                    crate::cpu::masking::exact_k_keep(&values, width, s.pruned_per_row(width)).iter().map(|&k| k > 0.5).collect();
                assert_eq!(host, reference(s), "{rows}×{width} at {sparsity}");
                assert_eq!(keep(prune_mask(t2(&values, [rows, width]), s).unwrap()), host, "prune_mask {rows}×{width} at {sparsity}");
            }
            for (n, m) in [(2, 4), (1, 2)] {
                if width % m == 0 {
                    let s = Sparsity::NM { n, m };
                    let host: Vec<bool> = crate::cpu::masking::exact_k_keep(&values, m, m - n).iter().map(|&k| k > 0.5).collect();
                    assert_eq!(host, reference(s), "{rows}×{width} at {n}:{m}");
                    assert_eq!(keep(prune_mask(t2(&values, [rows, width]), s).unwrap()), host);
                }
            }
        }
    }

    #[test]
    fn n_m_keeps_n_per_group() {
        let scores = t2(&[4.0, 1.0, 3.0, 2.0, 0.0, 0.0, 0.0, 9.0], [1, 8]);
        let mask = prune_mask_reference(scores, Sparsity::NM { n: 2, m: 4 }).unwrap();
        assert_eq!(keep(mask), vec![true, false, true, false, false, false, true, true]);
    }

    #[test]
    fn zero_sparsity_keeps_all_and_bad_sparsity_is_refused() {
        let scores = t2(&[1.0, 2.0], [1, 2]);
        assert!(keep(prune_mask_reference(scores.clone(), Sparsity::Unstructured(0.0)).unwrap()).iter().all(|&k| k));
        for bad in [Sparsity::Unstructured(1.0), Sparsity::Unstructured(-0.1), Sparsity::NM { n: 2, m: 2 }, Sparsity::NM { n: 1, m: 3 }] {
            assert!(prune_mask(scores.clone(), bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn scores_and_stats() {
        let w = t2(&[-1.0, 2.0, 3.0, -4.0], [2, 2]);
        let norms = Tensor::<1>::from_data(TensorData::new(vec![10.0f32, 0.5], [2]), &Device::flex());
        let s = wanda_scores_reference(w, norms.clone()).unwrap().into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(s, vec![10.0, 1.0, 30.0, 2.0]);
        let bad = wanda_scores(t2(&[1.0; 6], [2, 3]), norms).unwrap_err().to_string();
        assert!(bad.contains("3") && bad.contains("2 entries"), "{bad}");
        let x = t2(&[1.0, -2.0, 3.0, 4.0, 100.0, 100.0], [3, 2]);
        let mask = Tensor::<1>::from_data(TensorData::new(vec![1.0f32, 1.0, 0.0], [3]), &Device::flex());
        let (sq, max) = feature_stats_reference(x, Some(mask)).unwrap();
        assert_eq!(sq.into_data().try_to_vec::<f32>().unwrap(), vec![10.0, 20.0]);
        assert_eq!(max.into_data().try_to_vec::<f32>().unwrap(), vec![3.0, 4.0]);
    }

    #[test]
    fn float_keep_masks_agree_with_the_boolean_ones() {
        let scores = t2(&[3.0, 1.0, 1.0, 1.0, 5.0, 0.5, 2.0, 2.0], [2, 4]);
        let half = Sparsity::Unstructured(0.5);
        let float_keep = prune_keep(scores.clone(), half).unwrap();
        assert_eq!(float_keep.clone().into_data().try_to_vec::<f32>().unwrap(), vec![1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0]);
        let w = t2(&[1.0, -2.0, 3.0, f32::INFINITY, 5.0, 6.0, -7.0, 8.0], [2, 4]);
        let by_float = apply_keep(w.clone(), float_keep).unwrap().into_data().try_to_vec::<f32>().unwrap();
        let by_bool = apply_mask(w.clone(), prune_mask(scores, half).unwrap()).unwrap().into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(by_float, vec![1.0, 0.0, 0.0, f32::INFINITY, 5.0, 0.0, 0.0, 8.0]);
        assert_eq!(by_float, by_bool);
        let wrong = apply_keep(w, t2(&[1.0; 4], [1, 4])).unwrap_err().to_string();
        assert!(wrong.contains("[2, 4]") && wrong.contains("[1, 4]"), "{wrong}");
        assert!(prune_keep(t2(&[1.0, 2.0], [1, 2]), Sparsity::Unstructured(1.0)).is_err());
    }
}
