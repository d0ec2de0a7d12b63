//! The fused CPU training kernels against their plain-tensor references, values and gradients
//! (f32, within 1e-5 of the largest magnitude): attention — causal, padded, packed documents,
//! queries after a cache, odd lengths, grouped key/value heads — and the LM head fused with the
//! cross-entropy loss — both head layouts, skipped rows, a frozen head, a head that is not a
//! leaf. Then the bad input each public function refuses.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests and fixtures: a panic is how they report")]

use rosetta_kernels::attention::{FUSED_MAX_SCORES, attention, attention_reference, fused_attention};
use rosetta_kernels::cross_entropy::{
    HeadLayout, fused_linear_cross_entropy, linear_cross_entropy_reference, target_log_probs, target_log_probs_reference,
};
use rosetta_model::burn::prelude::*;
use rosetta_model::burn::tensor::Distribution;

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// Asserts `ours` within `tol` of `reference`, relative to the reference's largest magnitude.
fn assert_close(what: &str, ours: &[f32], reference: &[f32], tol: f32) {
    assert_eq!(ours.len(), reference.len(), "{what}: lengths differ");
    assert!(!reference.is_empty(), "{what}: nothing to compare");
    assert_eq!(ours.len(), reference.len(), "{what}: sizes differ");
    let scale = reference.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    assert!(scale > 0.0, "{what}: an all-zero reference compares nothing");
    // A NaN on either side is an infinite difference (`f32::max` would skip it).
    let worst =
        ours.iter().zip(reference).map(|(a, b)| if (a - b).is_nan() { f32::INFINITY } else { (a - b).abs() }).fold(0.0f32, f32::max);
    assert!(worst <= tol * scale, "{what}: max |Δ| {worst} > {tol} × {scale}");
}

fn random<const D: usize>(shape: [usize; D], seed: u64, device: &Device) -> Tensor<D> {
    let cpu = Device::flex();
    cpu.seed(seed);
    Tensor::<D>::from_data(Tensor::<D>::random(shape, Distribution::Normal(0.0, 1.0), &cpu).into_data(), device)
}

/// `t` as a leaf that wants its gradient, where there is autodiff.
fn leaf<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    if t.device().is_autodiff() { t.require_grad() } else { t }
}

/// `t` on a grid bf16 holds exactly, also times 1.5: multiples of 1/64 in [-1, 1] (at most 7
/// significant bits).
fn on_bf16_grid(t: Tensor<2>) -> Tensor<2> {
    t.mul_scalar(32.0).round().clamp(-64.0, 64.0).div_scalar(64.0)
}

/// A `[b, 1, s, t]` mask (true = blocked) from a per-(row, query, key) rule.
fn mask(b: usize, s: usize, t: usize, blocked: impl Fn(usize, usize, usize) -> bool, device: &Device) -> Tensor<4, Bool> {
    let values: Vec<bool> =
        (0..b).flat_map(|r| (0..s).flat_map(move |i| (0..t).map(move |j| (r, i, j)))).map(|(r, i, j)| blocked(r, i, j)).collect();
    Tensor::from_data(TensorData::new(values, [b, 1, s, t]), device)
}

type AttentionFn = fn(Tensor<4>, Tensor<4>, Tensor<4>, Option<Tensor<4, Bool>>) -> rosetta_kernels::Result<Tensor<4>>;

/// Output and the gradients of q, k, v for `Σ output ∘ weights`.
fn run_attention(f: AttentionFn, dims: (usize, usize, usize, usize, usize, usize), mask: Option<Tensor<4, Bool>>) -> [Vec<f32>; 4] {
    let (b, h, kvh, s, t, d) = dims;
    let device = Device::flex().autodiff();
    let q = random([b, h, s, d], 1, &device).require_grad();
    let k = random([b, kvh, t, d], 2, &device).require_grad();
    let v = random([b, kvh, t, d], 3, &device).require_grad();
    let weights = random([b, h, s, d], 4, &device);
    let out = f(q.clone(), k.clone(), v.clone(), mask).unwrap();
    let grads = (out.clone() * weights).sum().backward();
    let grad = |x: &Tensor<4>| values(x.grad(&grads).expect("a gradient"));
    [values(out), grad(&q), grad(&k), grad(&v)]
}

#[test]
fn fused_attention_matches_the_reference_in_values_and_gradients() {
    let device = Device::flex();
    // (batch, heads, kv_heads, seq, kv_len, head_dim)
    let cases: Vec<(&str, (usize, usize, usize, usize, usize, usize), Option<Tensor<4, Bool>>)> = vec![
        ("causal, one head", (1, 1, 1, 5, 5, 8), None),
        ("causal, GQA 9/3, odd length", (2, 9, 3, 37, 37, 16), None),
        ("causal, multi-head without groups", (1, 4, 4, 64, 64, 32), None),
        ("queries after a cache", (2, 6, 2, 7, 19, 8), None),
        ("left padding", (2, 4, 2, 13, 13, 8), Some(mask(2, 13, 13, |r, i, j| j > i || (r == 1 && j < 4 && j != i), &device))),
        ("packed documents", (2, 6, 3, 23, 23, 8), Some(mask(2, 23, 23, |r, i, j| j > i || (i >= 9 + r) != (j >= 9 + r), &device))),
        ("a sliding window", (1, 2, 1, 31, 31, 4), Some(mask(1, 31, 31, |_, i, j| j > i || i - j.min(i) >= 6, &device))),
        // Past one query block (64): later blocks, their key limits, dK/dV summed over blocks.
        ("causal, three query blocks after a cache", (2, 6, 2, 150, 170, 8), None),
        (
            "padding and documents over three blocks",
            (2, 4, 2, 130, 130, 8),
            Some(mask(2, 130, 130, |r, i, j| j > i || (r == 1 && j < 70 && j != i) || (i >= 100) != (j >= 100), &device)),
        ),
    ];
    for (name, dims, m) in cases {
        let to_autodiff =
            |m: &Option<Tensor<4, Bool>>| m.clone().map(|m| Tensor::<4, Bool>::from_data(m.into_data(), &Device::flex().autodiff()));
        let fused = run_attention(fused_attention, dims, to_autodiff(&m));
        let reference = run_attention(attention_reference, dims, to_autodiff(&m));
        for (what, (a, b)) in ["output", "∂q", "∂k", "∂v"].iter().zip(fused.iter().zip(&reference)) {
            assert_close(&format!("{name}: {what}"), a, b, 1e-5);
        }
        // The dispatcher takes the fused kernel on the CPU.
        let dispatched = run_attention(attention, dims, to_autodiff(&m));
        assert_eq!(dispatched[0], fused[0], "{name}: attention() did not run the fused kernel");
    }
}

#[test]
fn a_batch_row_with_every_key_blocked_gives_zeros_not_a_panic() {
    // burn's softmax over an all-`-inf` row is NaN; the fused kernel gives zeros and zero
    // gradients there, and the other row is unaffected.
    let device = Device::flex().autodiff();
    let (b, h, s, d) = (2, 2, 70, 4);
    let m = mask(b, s, s, |r, i, j| r == 1 || j > i, &device);
    let q = random([b, h, s, d], 1, &device).require_grad();
    let k = random([b, h, s, d], 2, &device).require_grad();
    let v = random([b, h, s, d], 3, &device).require_grad();
    let out = fused_attention(q.clone(), k.clone(), v.clone(), Some(m)).unwrap();
    let grads = out.clone().sum().backward();
    let out = values(out);
    let half = out.len() / 2;
    assert!(out.iter().all(|x| x.is_finite()));
    assert!(out[half..].iter().all(|&x| x == 0.0), "the blocked row attends to nothing");
    assert!(out[..half].iter().any(|&x| x != 0.0), "the other row still attends");
    let reference =
        values(attention_reference(q.clone().narrow(0, 0, 1), k.clone().narrow(0, 0, 1), v.clone().narrow(0, 0, 1), None).unwrap());
    assert_close("the unblocked row", &out[..half], &reference, 1e-5);
    for g in [q.grad(&grads), k.grad(&grads), v.grad(&grads)] {
        assert!(values(g.unwrap()).iter().all(|x| x.is_finite()));
    }
}

#[test]
fn fused_attention_without_autodiff_matches_the_reference() {
    let device = Device::flex();
    let (q, k, v) = (random([2, 9, 21, 16], 5, &device), random([2, 3, 21, 16], 6, &device), random([2, 3, 21, 16], 7, &device));
    let fused = fused_attention(q.clone(), k.clone(), v.clone(), None).unwrap();
    let reference = attention_reference(q, k, v, None).unwrap();
    assert_close("inference", &values(fused), &values(reference), 1e-5);
}

#[test]
fn attention_refuses_what_does_not_fit() {
    let device = Device::flex();
    let q = random([1, 4, 6, 8], 1, &device);
    let k = random([1, 2, 6, 8], 2, &device);
    let bad_mask = mask(1, 6, 5, |_, i, j| j > i, &device);
    let err = attention(q.clone(), k.clone(), k.clone(), Some(bad_mask)).unwrap_err().to_string();
    assert!(err.contains("mask") && err.contains("[1, 1, 6, 6]"), "{err}");
    let err = attention(q.clone(), random([1, 3, 6, 8], 3, &device), random([1, 3, 6, 8], 3, &device), None).unwrap_err().to_string();
    assert!(err.contains("4 query heads cannot share 3"), "{err}");
    let err = attention(q.clone(), random([1, 2, 4, 8], 3, &device), random([1, 2, 4, 8], 3, &device), None).unwrap_err().to_string();
    assert!(err.contains("6 queries over 4 keys"), "{err}");
    // Longer than the fused kernel holds: refused by the fused function (shapes only — no data
    // of that size is made: the check runs before any work).
    let s = (FUSED_MAX_SCORES as f64).sqrt() as usize + 1;
    let long = Tensor::<4>::zeros([1, 1, s, 1], &device);
    let err = fused_attention(long.clone(), long.clone(), long, None).unwrap_err().to_string();
    assert!(err.contains("exceed the fused kernel"), "{err}");
}

/// Loss and the gradients of hidden and head (where the head trains).
fn run_cross_entropy(fused: bool, layout: HeadLayout, head_trains: bool, head_leaf: bool) -> (f32, Vec<f32>, Option<Vec<f32>>) {
    let (n, d, vocab) = (150, 24, 301);
    let device = Device::flex().autodiff();
    let hidden = random([n, d], 11, &device).require_grad();
    let shape = match layout {
        HeadLayout::VocabRows => [vocab, d],
        HeadLayout::VocabColumns => [d, vocab],
    };
    let mut head = random(shape, 12, &device);
    if head_trains {
        head = head.require_grad();
    }
    // A non-leaf head: its need for a gradient is only known in backward.
    let used_head = if head_leaf { head.clone() } else { head.clone().mul_scalar(1.5) };
    let targets: Vec<u32> = (0..n).map(|i| ((i * 37) % vocab) as u32).collect();
    let weights: Vec<f32> = (0..n).map(|i| if i % 7 == 2 { 0.0 } else { 1.0 / 130.0 }).collect();
    type LossFn = fn(Tensor<2>, Tensor<2>, HeadLayout, &[u32], &[f32]) -> rosetta_kernels::Result<Tensor<1>>;
    let fused_f32: LossFn = |h, w, l, t, r| fused_linear_cross_entropy(h, w, l, t, r, rosetta_kernels::linear::Products::F32);
    let f = if fused { fused_f32 } else { linear_cross_entropy_reference };
    // The hidden states reach the op through another op, as the final norm's output does.
    let loss = f(hidden.clone().mul_scalar(2.0), used_head, layout, &targets, &weights).unwrap();
    let grads = loss.clone().mul_scalar(3.0).backward();
    let head_grad = head.grad(&grads).map(values);
    (values(loss)[0], values(hidden.grad(&grads).unwrap()), head_grad)
}

#[test]
fn fused_cross_entropy_matches_the_reference_in_values_and_gradients() {
    for layout in [HeadLayout::VocabRows, HeadLayout::VocabColumns] {
        for (head_trains, head_leaf) in [(true, true), (false, true), (true, false)] {
            let name = format!("{layout:?}, head trains: {head_trains}, leaf: {head_leaf}");
            let (loss, dh, dw) = run_cross_entropy(true, layout, head_trains, head_leaf);
            let (ref_loss, ref_dh, ref_dw) = run_cross_entropy(false, layout, head_trains, head_leaf);
            assert!((loss - ref_loss).abs() <= 1e-5 * ref_loss.abs(), "{name}: loss {loss} vs {ref_loss}");
            assert_close(&format!("{name}: ∂hidden"), &dh, &ref_dh, 1e-5);
            assert_eq!(dw.is_some(), head_trains, "{name}: a head gradient exactly when the head trains");
            assert_eq!(ref_dw.is_some(), head_trains, "{name}: the reference's head gradient");
            if let (Some(dw), Some(ref_dw)) = (dw, ref_dw) {
                assert_close(&format!("{name}: ∂head"), &dw, &ref_dw, 1e-5);
            }
        }
    }
}

#[test]
fn cross_entropy_refuses_bad_targets_and_shapes() {
    let device = Device::flex();
    let (hidden, head) = (random([3, 4], 1, &device), random([10, 4], 2, &device));
    let err = fused_linear_cross_entropy(
        hidden.clone(),
        head.clone(),
        HeadLayout::VocabRows,
        &[1, 10, 2],
        &[1.0; 3],
        rosetta_kernels::linear::Products::F32,
    )
    .unwrap_err();
    assert!(err.to_string().contains("target token 10 is outside the vocabulary of 10"), "{err}");
    let err = fused_linear_cross_entropy(
        hidden.clone(),
        head.clone(),
        HeadLayout::VocabColumns,
        &[1, 1, 2],
        &[1.0; 3],
        rosetta_kernels::linear::Products::F32,
    )
    .unwrap_err();
    assert!(err.to_string().contains("width"), "{err}");
    let err = fused_linear_cross_entropy(
        hidden.clone(),
        head.clone(),
        HeadLayout::VocabRows,
        &[1, 2],
        &[1.0; 2],
        rosetta_kernels::linear::Products::F32,
    )
    .unwrap_err();
    assert!(err.to_string().contains("3 rows but 2 targets"), "{err}");
    let err = fused_linear_cross_entropy(
        hidden,
        head,
        HeadLayout::VocabRows,
        &[1, 2, 3],
        &[1.0, f32::NAN, 1.0],
        rosetta_kernels::linear::Products::F32,
    )
    .unwrap_err();
    assert!(err.to_string().contains("not finite"), "{err}");
}

/// Scoring's per-token log-probabilities: the CPU pass equals the tensor formula on rows that
/// are not a multiple of its lanes (49 152 is; 1 003 is not), with large logits that overflow a
/// plain `exp`.
#[test]
fn target_log_probs_on_the_cpu_match_the_reference() {
    let device = Device::flex();
    for (n, vocab) in [(5, 1003), (3, 64)] {
        let logits = random([n, vocab], 7, &device) * 40.0;
        let targets: Vec<u32> = (0..n as u32).map(|i| (i * 131 + 5) % vocab as u32).collect();
        let ours = values(target_log_probs(logits.clone(), &targets).unwrap());
        let reference = values(target_log_probs_reference(logits, &targets).unwrap());
        assert!(ours.iter().all(|v| v.is_finite() && *v <= 0.0), "log-probabilities {ours:?}");
        assert_close("target log-probabilities", &ours, &reference, 1e-5);
    }
    let logits = random([2, 10], 1, &device);
    let err = target_log_probs(logits.clone(), &[1, 10]).unwrap_err();
    assert!(err.to_string().contains("target token 10 is outside the vocabulary of 10"), "{err}");
    let err = target_log_probs(logits, &[1]).unwrap_err();
    assert!(err.to_string().contains("1 targets for logits of shape [2, 10]"), "{err}");
}

#[test]
fn fused_swiglu_matches_the_reference_in_values_and_gradients() {
    use rosetta_kernels::swiglu::{fused_swiglu, swiglu, swiglu_reference};
    let run = |f: fn(Tensor<3>, Tensor<3>) -> rosetta_kernels::Result<Tensor<3>>| {
        let device = Device::flex().autodiff();
        // Past one parallel piece (2¹⁴ values), with gates far into both tails of the sigmoid.
        let gate = random([3, 41, 211], 21, &device).mul_scalar(6.0).require_grad();
        let up = random([3, 41, 211], 22, &device).require_grad();
        let out = f(gate.clone(), up.clone()).unwrap();
        let grads = (out.clone() * random([3, 41, 211], 23, &device)).sum().backward();
        [values(out), values(gate.grad(&grads).unwrap()), values(up.grad(&grads).unwrap())]
    };
    let (fused, reference) = (run(fused_swiglu), run(swiglu_reference));
    for (what, (a, b)) in ["output", "∂gate", "∂up"].iter().zip(fused.iter().zip(&reference)) {
        assert_close(what, a, b, 1e-5);
    }
    assert_eq!(run(swiglu)[0], fused[0], "swiglu() did not run the fused kernel on the CPU");
    let device = Device::flex();
    let err = swiglu(random([1, 2, 3], 1, &device), random([1, 2, 4], 1, &device)).unwrap_err().to_string();
    assert!(err.contains("same shape"), "{err}");
}

#[test]
fn fused_rms_norm_matches_the_reference_in_values_and_gradients() {
    use rosetta_kernels::rms_norm::{fused_rms_norm, rms_norm, rms_norm_reference};
    let run = |f: fn(Tensor<3>, Tensor<1>, f64) -> rosetta_kernels::Result<Tensor<3>>, gamma_trains: bool| {
        let device = Device::flex().autodiff();
        let x = random([3, 17, 96], 31, &device).mul_scalar(4.0).require_grad();
        let mut gamma = random([96], 32, &device);
        if gamma_trains {
            gamma = gamma.require_grad();
        }
        // The input reaches the norm through another op, as the residual stream does.
        let out = f(x.clone().mul_scalar(0.5), gamma.clone(), 1e-5).unwrap();
        let grads = (out.clone() * random([3, 17, 96], 33, &device)).sum().backward();
        (values(out), values(x.grad(&grads).unwrap()), gamma.grad(&grads).map(values))
    };
    for gamma_trains in [true, false] {
        let (fused, reference) = (run(fused_rms_norm, gamma_trains), run(rms_norm_reference, gamma_trains));
        assert_close("output", &fused.0, &reference.0, 1e-5);
        assert_close("∂x", &fused.1, &reference.1, 1e-5);
        assert_eq!(fused.2.is_some(), gamma_trains, "a weight gradient exactly when the weight trains");
        assert_eq!(reference.2.is_some(), gamma_trains, "the reference's weight gradient");
        if let (Some(a), Some(b)) = (&fused.2, &reference.2) {
            assert_close("∂γ", a, b, 1e-5);
        }
        assert_eq!(run(rms_norm, gamma_trains).0, fused.0, "rms_norm() did not run the fused kernel under autodiff");
    }
    let device = Device::flex();
    let err = rms_norm(random([2, 5], 1, &device), random([4], 2, &device), 1e-5).unwrap_err().to_string();
    assert!(err.contains("do not end in the 4 weights"), "{err}");
    let err = rms_norm(random([2, 4], 1, &device), random([4], 2, &device), f64::NAN).unwrap_err().to_string();
    assert!(err.contains("epsilon"), "{err}");
}

#[test]
fn fused_linear_matches_the_reference_in_values_and_gradients() {
    use rosetta_kernels::linear::{Lora, Products, fused_linear, linear, linear_reference};
    type LinearFn = fn(Tensor<2>, Tensor<2>, Option<Tensor<1>>, Option<Lora>) -> rosetta_kernels::Result<Tensor<2>>;
    let fused_linear: LinearFn = |x, w, bias, lora| fused_linear(x, w, bias, lora, Products::F32);
    let linear: LinearFn = |x, w, bias, lora| linear(x, w, bias, lora, Products::F32);
    let (n, d_in, d_out, r) = (37, 24, 19, 3);
    // (LoRA branch, base weight trains, bias)
    for (with_lora, base_trains, with_bias) in [(false, true, false), (false, true, true), (true, false, false), (true, true, true)] {
        let run = |f: LinearFn| {
            let device = Device::flex().autodiff();
            let x = random([n, d_in], 41, &device).require_grad();
            let mut w = random([d_in, d_out], 42, &device);
            if base_trains {
                w = w.require_grad();
            }
            let bias = with_bias.then(|| random([d_out], 43, &device).require_grad());
            let (a, b) = (random([d_in, r], 44, &device).require_grad(), random([r, d_out], 45, &device).require_grad());
            let lora = with_lora.then(|| Lora { a: a.clone(), b: b.clone(), scale: 2.5 });
            // The input reaches the projection through another op, as a norm's output does.
            let out = f(x.clone().mul_scalar(1.5), w.clone(), bias.clone(), lora).unwrap();
            let grads = (out.clone() * random([n, d_out], 46, &device)).sum().backward();
            let grad = |t: &Tensor<2>| t.grad(&grads).map(values);
            (values(out), [grad(&x), grad(&w), grad(&a), grad(&b), bias.as_ref().and_then(|b| b.grad(&grads)).map(values)])
        };
        let name = format!("LoRA {with_lora}, base trains {base_trains}, bias {with_bias}");
        let ((out, grads), (ref_out, ref_grads)) = (run(fused_linear), run(linear_reference));
        assert_close(&format!("{name}: output"), &out, &ref_out, 1e-5);
        for (what, (g, rg)) in ["∂x", "∂W", "∂A", "∂B", "∂bias"].iter().zip(grads.iter().zip(&ref_grads)) {
            assert_eq!(g.is_some(), rg.is_some(), "{name}: {what} present on one side only");
            if let (Some(g), Some(rg)) = (g, rg) {
                assert_close(&format!("{name}: {what}"), g, rg, 1e-5);
            }
        }
        assert_eq!(grads[1].is_some(), base_trains, "{name}: a base gradient exactly when the base trains");
        assert_eq!(run(linear).0, out, "{name}: linear() did not run the fused kernel under autodiff");
    }
    let device = Device::flex();
    let err = linear(random([2, 5], 1, &device), random([4, 3], 2, &device), None, None).unwrap_err().to_string();
    assert!(err.contains("width 5 for a 4×3 weight"), "{err}");
    let bad = Lora { a: random([4, 2], 3, &device), b: random([3, 3], 4, &device), scale: 1.0 };
    let err = linear(random([2, 4], 1, &device), random([4, 3], 2, &device), None, Some(bad)).unwrap_err().to_string();
    assert!(err.contains("do not fit"), "{err}");
}

/// A frozen packed weight (QLoRA's base) against the dense reference on its dequantised values:
/// outputs and the gradients of the input, the LoRA factors and the bias within 1e-5 (f32
/// products), with and without a LoRA branch, for 4- and 8-bit blocks and an odd number of
/// outputs; the weight itself gets no gradient. With `Products::Bf16` (where the CPU has it)
/// within bf16's rounding. Without autodiff the op gives the same output.
#[test]
fn packed_linear_matches_the_dense_reference_in_values_and_gradients() {
    use rosetta_kernels::linear::{Lora, Products, linear_reference, packed_linear};
    use rosetta_kernels::quant::{PackedMatrix, QuantizeTo};
    use std::sync::Arc;
    let (n, d_in, r) = (37, 64, 3);
    let mut cases = vec![(QuantizeTo::Q4_1, 19, Products::F32, 1e-5), (QuantizeTo::Q8_0, 19, Products::F32, 1e-5)];
    if Products::bf16_available() {
        // 96 outputs: ∂x sums over them, so whole blocks let it take the bf16 route too.
        cases.push((QuantizeTo::Q4_0, 96, Products::Bf16, 2e-2));
    }
    for (to, d_out, products, tolerance) in cases {
        let values_of = |t: Tensor<2>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        let packed = Arc::new(PackedMatrix::quantize(to, d_out, d_in, &values_of(random([d_out, d_in], 70, &Device::flex()))).unwrap());
        for (with_lora, with_bias) in [(false, false), (true, true)] {
            let run = |ours: bool, device: Device| {
                let x = leaf(random([n, d_in], 71, &device));
                let bias = with_bias.then(|| leaf(random([d_out], 72, &device)));
                let (a, b) = (leaf(random([d_in, r], 73, &device)), leaf(random([r, d_out], 74, &device)));
                let lora = with_lora.then(|| Lora { a: a.clone(), b: b.clone(), scale: 2.5 });
                let input = x.clone().mul_scalar(1.5);
                let out = if ours {
                    packed_linear(input, &packed, bias.clone(), lora, products)
                } else {
                    let dense = Tensor::<2>::from_data(TensorData::new(packed.dequantize(), [d_out, d_in]), &device).transpose();
                    linear_reference(input, dense, bias.clone(), lora)
                }
                .unwrap();
                if !device.is_autodiff() {
                    return (values(out), Vec::new());
                }
                let grads = (out.clone() * random([n, d_out], 75, &device)).sum().backward();
                let grad = |t: &Tensor<2>| t.grad(&grads).map(values);
                (
                    values(out),
                    vec![
                        grad(&x),
                        with_lora.then(|| grad(&a)).flatten(),
                        with_lora.then(|| grad(&b)).flatten(),
                        bias.and_then(|b| b.grad(&grads)).map(values),
                    ],
                )
            };
            let name = format!("{to:?}, {d_out} outputs, {products:?}, LoRA {with_lora}, bias {with_bias}");
            let ((out, grads), (ref_out, ref_grads)) = (run(true, Device::flex().autodiff()), run(false, Device::flex().autodiff()));
            assert_close(&format!("{name}: output"), &out, &ref_out, tolerance);
            for (what, (g, rg)) in ["∂x", "∂A", "∂B", "∂bias"].iter().zip(grads.iter().zip(&ref_grads)) {
                assert_eq!(g.is_some(), rg.is_some(), "{name}: {what} present on one side only");
                if let (Some(g), Some(rg)) = (g, rg) {
                    assert_close(&format!("{name}: {what}"), g, rg, tolerance);
                }
            }
            assert!(grads[0].is_some(), "{name}: no gradient reached the input");
            assert_eq!(run(true, Device::flex()).0, out, "{name}: the op without autodiff computes another output");
        }
    }
    let device = Device::flex();
    let packed = Arc::new(PackedMatrix::quantize(QuantizeTo::Q8_0, 4, 32, &[0.5; 128]).unwrap());
    let err = packed_linear(random([2, 31], 1, &device), &packed, None, None, Products::F32).unwrap_err().to_string();
    assert!(err.contains("width 31 for a 32×4 weight"), "{err}");
}

/// The checkpoint op grafts only what it can: an input on the CPU backend under autodiff, an
/// output computed outside the graph. Anything else is an error naming the fix, not a panic.
#[test]
fn checkpoint_refuses_what_it_cannot_graft() {
    use rosetta_kernels::checkpoint::{Replay, Replayed, checkpoint};
    use std::sync::Arc;
    #[derive(Debug)]
    struct Unused;
    impl Replay for Unused {
        fn gradients(&self, _: TensorData, _: TensorData, _: bool) -> Replayed {
            unreachable!("no backward runs in this test")
        }
    }
    let plain = Device::flex();
    let err = checkpoint(random([2, 3], 1, &plain), None, random([2, 3], 2, &plain), Arc::new(Unused)).unwrap_err().to_string();
    assert!(err.contains("CPU backend"), "{err}");
    let autodiff = Device::flex().autodiff();
    let err = checkpoint(random([2, 3], 1, &autodiff), None, random([2, 3], 2, &autodiff), Arc::new(Unused)).unwrap_err().to_string();
    assert!(err.contains("outside the graph"), "{err}");
}

/// The loss head with `Products::Bf16` (tied `[vocab, d]` and untied `[d, vocab]` layouts): on
/// hidden states and a head bf16 holds exactly, the logits and so the loss equal the f32
/// reference's within 1e-5; the gradients (whose softmax factor is rounded to bf16) within 2 % of
/// scale, and not bit-identical to the f32 kernel's.
#[test]
fn bf16_head_matches_the_reference() {
    use rosetta_kernels::linear::Products;
    if !Products::bf16_available() {
        eprintln!("this CPU has no AVX-512 BF16: Products::Bf16 runs in f32 here");
        return;
    }
    let (n, d, vocab) = (64, 32, 320);
    for layout in [HeadLayout::VocabRows, HeadLayout::VocabColumns] {
        let run = |products: Option<Products>| {
            let device = Device::flex().autodiff();
            let hidden = on_bf16_grid(random([n, d], 61, &device)).require_grad();
            let shape = if layout == HeadLayout::VocabRows { [vocab, d] } else { [d, vocab] };
            let head = on_bf16_grid(random(shape, 62, &device)).require_grad();
            let targets: Vec<u32> = (0..n).map(|i| ((i * 53) % vocab) as u32).collect();
            let weights = vec![1.0 / n as f32; n];
            let loss = match products {
                Some(p) => fused_linear_cross_entropy(hidden.clone(), head.clone(), layout, &targets, &weights, p),
                None => linear_cross_entropy_reference(hidden.clone(), head.clone(), layout, &targets, &weights),
            }
            .unwrap();
            let grads = loss.clone().backward();
            (values(loss), values(hidden.grad(&grads).unwrap()), values(head.grad(&grads).unwrap()))
        };
        let ((loss, dh, dw), (ref_loss, ref_dh, ref_dw)) = (run(Some(Products::Bf16)), run(None));
        assert_close(&format!("{layout:?}: loss"), &loss, &ref_loss, 1e-5);
        assert_close(&format!("{layout:?}: ∂hidden"), &dh, &ref_dh, 2e-2);
        assert_close(&format!("{layout:?}: ∂head"), &dw, &ref_dw, 2e-2);
        let (_, f32_dh, f32_dw) = run(Some(Products::F32));
        assert!(dh != f32_dh && dw != f32_dw, "{layout:?}: the bf16 head's gradients equal the f32 kernel's bit for bit");
    }
}

/// `Products::Bf16`: the weight's products (`x·W` forward, `g·Wᵀ` for ∂x, `xᵀ·g` for ∂W) on the
/// bf16 route.
/// On operands that bf16 holds exactly (multiples of 1/64 in [-1, 1], times the test's 1.5 still
/// exact) the products are exact and only the f32 sums' order differs from the f32 reference;
/// on general values they stay within bf16's rounding. Shapes with whole 32-value blocks in both
/// summed dimensions (d_in for `x·W`, d_out for `g·Wᵀ`) and rows that leave strip remainders.
#[test]
fn bf16_products_match_the_reference() {
    use rosetta_kernels::linear::{Lora, Products, fused_linear, linear_reference};
    if !Products::bf16_available() {
        eprintln!("this CPU has no AVX-512 BF16: Products::Bf16 runs in f32 here, as the f32 test checks");
        return;
    }
    // 64 rows: ∂W sums over the rows, which must be whole 32-value blocks too.
    let (n, d_in, d_out, r) = (64, 64, 96, 4);
    for (grid, tolerance) in [(true, 1e-5), (false, 2e-2)] {
        for with_lora in [false, true] {
            let run = |products: Option<Products>| {
                let device = Device::flex().autodiff();
                let shape = |t: Tensor<2>| if grid { on_bf16_grid(t) } else { t };
                let x = shape(random([n, d_in], 51, &device)).require_grad();
                let w = shape(random([d_in, d_out], 52, &device)).require_grad();
                let (a, b) = (random([d_in, r], 53, &device).require_grad(), random([r, d_out], 54, &device).require_grad());
                let lora = with_lora.then(|| Lora { a: a.clone(), b: b.clone(), scale: 0.5 });
                let input = x.clone().mul_scalar(1.5);
                let out = match products {
                    Some(p) => fused_linear(input, w.clone(), None, lora, p),
                    None => linear_reference(input, w.clone(), None, lora),
                }
                .unwrap();
                let upstream = shape(random([n, d_out], 55, &device));
                let grads = (out.clone() * upstream).sum().backward();
                (values(out), x.grad(&grads).map(values), w.grad(&grads).map(values))
            };
            let name = format!("bf16 products, {} operands, LoRA {with_lora}", if grid { "bf16-exact" } else { "general" });
            let ((out, dx, dw), (ref_out, ref_dx, ref_dw)) = (run(Some(Products::Bf16)), run(None));
            assert_close(&format!("{name}: output"), &out, &ref_out, tolerance);
            assert_close(&format!("{name}: ∂x"), &dx.unwrap(), &ref_dx.unwrap(), tolerance);
            assert_close(&format!("{name}: ∂W"), &dw.unwrap(), &ref_dw.unwrap(), tolerance);
            if !grid && !with_lora {
                // Not the f32 path under another name: general values do round.
                let (f32_out, ..) = run(Some(Products::F32));
                assert_ne!(out, f32_out, "{name}: the bf16 products equal the f32 ones bit for bit");
            }
        }
    }
}

#[test]
fn fused_rotary_matches_the_reference_in_values_and_gradients() {
    use rosetta_kernels::rotary::{fused_rotary, rotary, rotary_reference};
    let (b, h, s, d) = (2, 3, 11, 8);
    let run = |f: fn(Tensor<4>, Tensor<4>, Tensor<4>) -> rosetta_kernels::Result<Tensor<4>>| {
        let device = Device::flex().autodiff();
        // Heads as the decoder makes them: a `swap_dims` view of `[b, s, h, d]`.
        let x = random([b, s, h, d], 51, &device).require_grad();
        let (cos, sin) = (random([b, 1, s, d], 52, &device), random([b, 1, s, d], 53, &device));
        let out = f(x.clone().swap_dims(1, 2), cos, sin).unwrap();
        let grads = (out.clone() * random([b, h, s, d], 54, &device)).sum().backward();
        [values(out), values(x.grad(&grads).unwrap())]
    };
    let (fused, reference) = (run(fused_rotary), run(rotary_reference));
    assert_close("output", &fused[0], &reference[0], 1e-6);
    assert_close("∂x", &fused[1], &reference[1], 1e-6);
    assert_eq!(run(rotary)[0], fused[0], "rotary() did not run the fused kernel on the CPU");
    let device = Device::flex();
    let err = rotary(random([1, 2, 3, 5], 1, &device), random([1, 1, 3, 5], 2, &device), random([1, 1, 3, 5], 3, &device)).unwrap_err();
    assert!(err.to_string().contains("odd"), "{err}");
    let err = rotary(random([1, 2, 3, 4], 1, &device), random([1, 1, 2, 4], 2, &device), random([1, 1, 3, 4], 3, &device)).unwrap_err();
    assert!(err.to_string().contains("cos table"), "{err}");
}
