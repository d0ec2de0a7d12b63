//! Row reductions of the fused softmax kernels: a polynomial `exp` that vectorises (libm's
//! `expf` is a call per value and was 5 % of a training step's profile) and max / log-sum-exp
//! over a row, each in 16 independent lanes so the compiler keeps them in vector registers.

use super::simd::vectorized;

const LANES: usize = 16;

/// `e^x` within 2 ulp on [-87.3, 88.3]; 0 below (so `-∞`, a masked score, gives exactly 0),
/// `+∞` above, NaN for NaN. Range reduction `x = k·ln 2 + r`, |r| ≤ ln 2 / 2, then a degree-6
/// Taylor polynomial of `e^r` (error ≤ r⁷/7! < 1.2e-7 relative) scaled by `2^k` through the
/// exponent bits.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding 1.5·2²³ rounds to the nearest integer without a libm call, and leaves that integer
    // in the low bits of the sum: its bits minus ROUND's are `k` (|k| ≤ 127), so no float → int
    // conversion is needed (`as i32` saturates, which compiles to scalar code per value).
    const ROUND: f32 = 12_582_912.0;
    let clamped = x.clamp(-87.3, 88.3);
    let rounded = clamped * std::f32::consts::LOG2_E + ROUND;
    let k = rounded - ROUND;
    let r = (clamped - k * LN2_HI) - k * LN2_LO;
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let k_bits = rounded.to_bits().wrapping_sub(ROUND.to_bits());
    let scale = f32::from_bits(k_bits.wrapping_add(127) << 23);
    let y = p * scale;
    if x < -87.3 {
        0.0
    } else if x > 88.3 {
        f32::INFINITY
    } else {
        // NaN reaches here and stays NaN (clamp keeps it, so `p` is NaN).
        y
    }
}

vectorized! {
    /// The largest value of `row` (`-∞` for an empty row); NaN if any value is NaN.
    pub fn max(row: &[f32]) -> f32 {
        let mut lanes = [f32::NEG_INFINITY; LANES];
        let mut nan = [false; LANES];
        let chunks = row.chunks_exact(LANES);
        let tail = chunks.remainder();
        for chunk in chunks {
            for ((m, n), &v) in lanes.iter_mut().zip(&mut nan).zip(chunk) {
                *n |= v.is_nan();
                *m = if v > *m { v } else { *m };
            }
        }
        for &v in tail {
            nan[0] |= v.is_nan();
            lanes[0] = if v > lanes[0] { v } else { lanes[0] };
        }
        if nan.contains(&true) { f32::NAN } else { lanes.iter().copied().fold(f32::NEG_INFINITY, f32::max) }
    }
}

vectorized! {
    /// `Σ e^(x − shift)` over `row`, in f32 lanes (each lane sums a sixteenth of the row).
    pub fn sum_exp(row: &[f32], shift: f32) -> f32 {
        let mut lanes = [0.0f32; LANES];
        let chunks = row.chunks_exact(LANES);
        let tail = chunks.remainder();
        for chunk in chunks {
            for (s, &v) in lanes.iter_mut().zip(chunk) {
                *s += exp(v - shift);
            }
        }
        for &v in tail {
            lanes[0] += exp(v - shift);
        }
        lanes.iter().sum()
    }
}

/// `ln Σ e^x` over `row`, shifted by its maximum; `-∞` when every value is `-∞` (a row with
/// nothing to attend to), NaN when a value is.
pub fn log_sum_exp(row: &[f32]) -> f32 {
    let m = max(row);
    if m == f32::NEG_INFINITY || m.is_nan() {
        return m;
    }
    m + sum_exp(row, m).ln()
}

vectorized! {
    /// `row ← factor · e^(row − shift)`: softmax probabilities (times `factor`) from a row's
    /// log-sum-exp. A `-∞` shift (a row with nothing to attend to) gives zeros.
    pub fn exp_shifted(row: &mut [f32], shift: f32, factor: f32) {
        if shift == f32::NEG_INFINITY {
            row.fill(0.0);
            return;
        }
        for v in row.iter_mut() {
            *v = factor * exp(*v - shift);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp_of_libm_over_its_range_and_exact_at_the_edges() {
        let mut worst = 0.0f64;
        let mut x = -87.3f32;
        while x < 88.3 {
            let (ours, libm) = (exp(x) as f64, (x as f64).exp());
            worst = worst.max(((ours - libm) / libm).abs());
            x += 0.0137;
        }
        assert!(worst < 2.5e-7, "worst relative error {worst}");
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-1000.0), 0.0);
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn log_sum_exp_matches_f64_and_propagates_nan_and_empty_rows() {
        let row: Vec<f32> = (0..37).map(|i| (i as f32 * 0.7).sin() * 30.0).collect();
        let m = row.iter().copied().fold(f64::NEG_INFINITY, |a, b| a.max(b as f64));
        let expected = m + row.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
        assert!((log_sum_exp(&row) as f64 - expected).abs() < 1e-5);
        assert_eq!(log_sum_exp(&[f32::NEG_INFINITY; 20]), f32::NEG_INFINITY);
        let mut with_nan = row.clone();
        with_nan[33] = f32::NAN;
        assert!(log_sum_exp(&with_nan).is_nan());
        let mut probabilities = row.clone();
        exp_shifted(&mut probabilities, log_sum_exp(&row), 1.0);
        assert!((probabilities.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }

    /// The vectorised variants (AVX-512 or AVX2 here) against `exp` one value at a time and a
    /// lane-ordered scalar sum: the same values bit for bit, tails and NaN anywhere included.
    #[test]
    fn vectorised_rows_equal_the_scalar_loop_bit_for_bit() {
        for len in [0usize, 1, 5, 15, 16, 17, 33, 100, 335] {
            let row: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin() * 40.0 - 3.0).collect();
            let shift = 2.5f32;
            let mut shifted = row.clone();
            exp_shifted(&mut shifted, shift, 0.75);
            for (got, &x) in shifted.iter().zip(&row) {
                assert_eq!(got.to_bits(), (0.75 * exp(x - shift)).to_bits());
            }
            let mut lanes = [0.0f32; LANES];
            for (i, &x) in row.iter().enumerate() {
                let lane = if i < len - len % LANES { i % LANES } else { 0 };
                lanes[lane] += exp(x - shift);
            }
            assert_eq!(sum_exp(&row, shift).to_bits(), lanes.iter().sum::<f32>().to_bits());
            let expected_max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(max(&row), expected_max);
            for at in [0, len / 2, len.saturating_sub(1)] {
                if len > 0 {
                    let mut with_nan = row.clone();
                    with_nan[at] = f32::NAN;
                    assert!(max(&with_nan).is_nan(), "NaN at {at} of {len}");
                }
            }
        }
    }
}
