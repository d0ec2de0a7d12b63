//! Row reductions of the fused softmax kernels: a polynomial `exp` that vectorises (libm's
//! `expf` is a call per value and was 5 % of a training step's profile) and max / log-sum-exp
//! over a row, each in 16 independent lanes so the compiler keeps them in vector registers.

const LANES: usize = 16;

/// `e^x` within 2 ulp on [-87.3, 88.3]; 0 below (so `-∞`, a masked score, gives exactly 0),
/// `+∞` above, NaN for NaN. Range reduction `x = k·ln 2 + r`, |r| ≤ ln 2 / 2, then a degree-6
/// Taylor polynomial of `e^r` (error ≤ r⁷/7! < 1.2e-7 relative) scaled by `2^k` through the
/// exponent bits.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding and subtracting 1.5·2²³ rounds to the nearest integer without a libm call.
    const ROUND: f32 = 12_582_912.0;
    let clamped = x.clamp(-87.3, 88.3);
    let k = (clamped * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = (clamped - k * LN2_HI) - k * LN2_LO;
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let scale = f32::from_bits(((k as i32 + 127) as u32) << 23);
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

/// The largest value of `row` (`-∞` for an empty row); NaN if any value is NaN.
pub fn max(row: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let mut nan = false;
    let chunks = row.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (m, &v) in lanes.iter_mut().zip(chunk) {
            nan |= v.is_nan();
            *m = if v > *m { v } else { *m };
        }
    }
    for &v in tail {
        nan |= v.is_nan();
        lanes[0] = if v > lanes[0] { v } else { lanes[0] };
    }
    if nan { f32::NAN } else { lanes.iter().copied().fold(f32::NEG_INFINITY, f32::max) }
}

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

/// `ln Σ e^x` over `row`, shifted by its maximum; `-∞` when every value is `-∞` (a row with
/// nothing to attend to), NaN when a value is.
pub fn log_sum_exp(row: &[f32]) -> f32 {
    let m = max(row);
    if m == f32::NEG_INFINITY || m.is_nan() {
        return m;
    }
    m + sum_exp(row, m).ln()
}

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
}
