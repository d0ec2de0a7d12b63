//! The WGSL kernels against their plain-tensor references: forward values and gradients of the
//! contrastive loss, Wanda scores, exact-k and N:M masks (identical, ties included), mask
//! application in and out of place, feature statistics, the quantized matmul of packed weights — on shapes that are not multiples of the
//! workgroup, n = 1, d = 1. The WGSL side runs on whatever wgpu adapter the machine has (Mesa's
//! lavapipe in CI); the references on the CPU backend. Tolerances are stated per check.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests and fixtures: a panic is how they report")]

use rosetta_kernels::contrastive::{ContrastiveOptions, contrastive_loss, contrastive_loss_reference};
use rosetta_kernels::masking::{
    Sparsity, apply_keep, apply_mask, apply_mask_reference, feature_stats, feature_stats_reference, prune_keep, prune_mask,
    prune_mask_reference, sequence_feature_stats, sequence_feature_stats_reference, wanda_scores, wanda_scores_reference,
};
use rosetta_kernels::quant::device::matmul_reference;
use rosetta_kernels::quant::{DevicePackedMatrix, GgmlType, PackedMatrix, QuantizeTo};
use rosetta_model::burn::prelude::*;
use rosetta_model::burn::tensor::Distribution;
use rosetta_tests::max_abs_diff;

fn gpu() -> Option<Device> {
    rosetta_tests::wgpu_device()
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

fn bools(t: Tensor<2, Bool>) -> Vec<bool> {
    t.into_data().convert::<bool>().try_to_vec::<bool>().unwrap()
}

/// The same random `[rows, cols]` data on both devices (generated on the CPU).
fn pair(rows: usize, cols: usize, seed: u64, gpu: &Device) -> (Tensor<2>, Tensor<2>) {
    let cpu = Device::flex();
    cpu.seed(seed);
    let t = Tensor::<2>::random([rows, cols], Distribution::Normal(0.0, 1.0), &cpu);
    let data = t.clone().into_data();
    (t, Tensor::from_data(data, gpu))
}

fn normalised(t: Tensor<2>) -> Tensor<2> {
    let norm = t.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
    t / norm
}

#[test]
fn contrastive_forward_and_gradients_match_the_reference() {
    let Some(gpu) = gpu() else { return };
    // 64 × 64 logit blocks: one partial block, several, and 257 = four full blocks and one row.
    let shapes = [(1, 1), (1, 7), (5, 3), (17, 33), (40, 576), (130, 64), (257, 40)];
    for (i, &(n, d)) in shapes.iter().enumerate() {
        for options in [ContrastiveOptions { scale: 1.0, shift: true }, ContrastiveOptions { scale: 20.0, shift: false }] {
            let (a_cpu, a_gpu) = pair(n, d, 100 + i as u64, &gpu);
            let (p_cpu, p_gpu) = pair(n, d, 200 + i as u64, &gpu);
            let cpu = Device::flex().autodiff();
            let a_ref = Tensor::<2>::from_data(a_cpu.into_data(), &cpu).require_grad();
            let p_ref = Tensor::<2>::from_data(p_cpu.into_data(), &cpu).require_grad();
            let loss_ref = contrastive_loss_reference(normalised(a_ref.clone()), normalised(p_ref.clone()), options).unwrap();
            let grads_ref = loss_ref.backward();
            let ad = gpu.clone().autodiff();
            let a_k = Tensor::<2>::from_data(a_gpu.into_data(), &ad).require_grad();
            let p_k = Tensor::<2>::from_data(p_gpu.into_data(), &ad).require_grad();
            let loss_k = contrastive_loss(normalised(a_k.clone()), normalised(p_k.clone()), options).unwrap();
            let grads_k = loss_k.backward();

            let (l_ref, l_k) = (values(loss_ref)[0], values(loss_k)[0]);
            // Loss: 1e-5 relative (f32 sums over n·d products in a different order).
            assert!((l_ref - l_k).abs() <= 1e-5 * l_ref.abs().max(1.0), "n={n} d={d} {options:?}: loss {l_ref} vs {l_k}");
            // Gradients: 1e-5 absolute per element (their scale is ~1/n).
            for (name, r, k) in [
                ("dA", a_ref.grad(&grads_ref).unwrap(), a_k.grad(&grads_k).unwrap()),
                ("dP", p_ref.grad(&grads_ref).unwrap(), p_k.grad(&grads_k).unwrap()),
            ] {
                let delta = max_abs_diff(&values(r), &values(k));
                assert!(delta <= 1e-5 * options.scale.max(1.0), "n={n} d={d} {options:?}: {name} max |Δ| = {delta:e}");
            }
        }
    }
}

#[test]
fn reference_gradient_matches_finite_differences() {
    let cpu = Device::flex();
    cpu.seed(7);
    let options = ContrastiveOptions { scale: 2.0, shift: true };
    let a = Tensor::<2>::random([4, 3], Distribution::Normal(0.0, 1.0), &cpu);
    let p = Tensor::<2>::random([4, 3], Distribution::Normal(0.0, 1.0), &cpu);
    let loss_of = |a: Tensor<2>, p: Tensor<2>| values(contrastive_loss_reference(a, p, options).unwrap())[0] as f64;
    let ad = cpu.clone().autodiff();
    let a_t = Tensor::<2>::from_data(a.clone().into_data(), &ad).require_grad();
    let p_t = Tensor::<2>::from_data(p.clone().into_data(), &ad).require_grad();
    let grads = contrastive_loss_reference(a_t.clone(), p_t.clone(), options).unwrap().backward();
    let (da, dp) = (values(a_t.grad(&grads).unwrap()), values(p_t.grad(&grads).unwrap()));
    let eps = 1e-2f32;
    let (a_v, p_v) = (values(a.clone()), values(p.clone()));
    for idx in 0..12 {
        for (which, base, analytic) in [("A", &a_v, &da), ("P", &p_v, &dp)] {
            let bump = |delta: f32| {
                let mut v = base.clone();
                v[idx] += delta;
                let t = Tensor::<2>::from_data(TensorData::new(v, [4, 3]), &cpu);
                if which == "A" { loss_of(t, p.clone()) } else { loss_of(a.clone(), t) }
            };
            let numeric = (bump(eps) - bump(-eps)) / (2.0 * eps as f64);
            // Central differences in f32: agreement to 1e-3 absolute.
            assert!((numeric - analytic[idx] as f64).abs() < 1e-3, "{which}[{idx}]: numeric {numeric} vs autodiff {}", analytic[idx]);
        }
    }
}

#[test]
fn masking_kernels_match_the_references() {
    let Some(gpu) = gpu() else { return };
    for (i, &(rows, width)) in [(1, 1), (3, 7), (9, 64), (17, 576), (5, 1000)].iter().enumerate() {
        let (w_cpu, w_gpu) = pair(rows, width, 300 + i as u64, &gpu);
        let (x_cpu, x_gpu) = pair(13, width, 400 + i as u64, &gpu);
        // Feature statistics with a padding mask.
        let mask: Vec<f32> = (0..13).map(|t| if t % 4 == 3 { 0.0 } else { 1.0 }).collect();
        let m_cpu = Tensor::<1>::from_data(TensorData::new(mask.clone(), [13]), &Device::flex());
        let m_gpu = Tensor::<1>::from_data(TensorData::new(mask, [13]), &gpu);
        for masked in [false, true] {
            let (sq_r, mx_r) = feature_stats_reference(x_cpu.clone(), masked.then(|| m_cpu.clone())).unwrap();
            let (sq_k, mx_k) = feature_stats(x_gpu.clone(), masked.then(|| m_gpu.clone())).unwrap();
            assert!(
                max_abs_diff(&values(sq_r.clone()), &values(sq_k)) <= 1e-5 * values(sq_r.clone()).iter().fold(1.0f32, |a, b| a.max(*b))
            );
            assert_eq!(values(mx_r), values(mx_k), "{rows}×{width}: max |x|");
            if i == 0 && masked {
                continue;
            }
        }
        let (norms_r, _) = feature_stats_reference(x_cpu, None).unwrap();
        let norms_r = norms_r.sqrt();
        let norms_k = Tensor::<1>::from_data(norms_r.clone().into_data(), &gpu);
        let scores_r = wanda_scores_reference(w_cpu.clone(), norms_r).unwrap();
        let scores_k = wanda_scores(w_gpu.clone(), norms_k).unwrap();
        assert_eq!(values(scores_r.clone()), values(scores_k.clone()), "{rows}×{width}: Wanda scores");

        // Ties: scores rounded to one decimal, and a few exact zeros.
        let tied: Vec<f32> =
            values(scores_r.clone()).iter().enumerate().map(|(j, v)| if j % 5 == 0 { 0.0 } else { (v * 10.0).round() / 10.0 }).collect();
        let tied_r = Tensor::<2>::from_data(TensorData::new(tied.clone(), [rows, width]), &Device::flex());
        let tied_k = Tensor::<2>::from_data(TensorData::new(tied, [rows, width]), &gpu);
        for sparsity in [0.0, 0.1, 0.5, 0.9] {
            for (label, r, k) in [("random", &scores_r, &scores_k), ("tied", &tied_r, &tied_k)] {
                let mask_r = bools(prune_mask_reference(r.clone(), Sparsity::Unstructured(sparsity)).unwrap());
                let mask_k = bools(prune_mask(k.clone(), Sparsity::Unstructured(sparsity)).unwrap());
                assert_eq!(mask_r, mask_k, "{rows}×{width} {label} sparsity {sparsity}");
                let pruned_per_row = (sparsity * width as f64).floor() as usize;
                assert_eq!(mask_k.iter().filter(|k| !**k).count(), rows * pruned_per_row);
            }
        }
        for (n, m) in [(2, 4), (4, 8), (1, 2)] {
            if width % m != 0 {
                assert!(prune_mask(scores_k.clone(), Sparsity::NM { n, m }).is_err());
                continue;
            }
            for (r, k) in [(&scores_r, &scores_k), (&tied_r, &tied_k)] {
                let mask_r = bools(prune_mask_reference(r.clone(), Sparsity::NM { n, m }).unwrap());
                let mask_k = bools(prune_mask(k.clone(), Sparsity::NM { n, m }).unwrap());
                assert_eq!(mask_r, mask_k, "{rows}×{width} {n}:{m}");
            }
        }
        let keep_r = prune_mask_reference(scores_r, Sparsity::Unstructured(0.5)).unwrap();
        // The kernel's own float mask (no Bool conversion) is the same mask.
        let float_keep_k = prune_keep(scores_k, Sparsity::Unstructured(0.5)).unwrap();
        assert_eq!(values(float_keep_k.clone()), values(keep_r.clone().float()), "{rows}×{width}: float keep-mask");
        let keep_k = Tensor::<2, Bool>::from_data(keep_r.clone().into_data(), &gpu);
        let expected = values(apply_mask_reference(w_cpu, keep_r).unwrap());
        // Out of place (the weight is shared by `w_gpu`), then in place (the last handle); the
        // float-mask entry point writes the same weights.
        assert_eq!(values(apply_mask(w_gpu.clone(), keep_k.clone()).unwrap()), expected);
        assert_eq!(values(apply_keep(w_gpu.clone(), float_keep_k).unwrap()), expected);
        assert_eq!(values(apply_mask(w_gpu, keep_k).unwrap()), expected);
    }
}

/// What a calibration pass records per linear layer: per-sequence Σx² and max|x| over valid tokens.
#[test]
fn sequence_feature_statistics_match_the_reference() {
    let Some(gpu) = gpu() else { return };
    for (i, &(batch, seq, d)) in [(1, 1, 1), (3, 5, 7), (4, 33, 576), (2, 300, 64)].iter().enumerate() {
        let (x_cpu, x_gpu) = pair(batch * seq, d, 500 + i as u64, &gpu);
        let (x_cpu, x_gpu) = (x_cpu.reshape([batch, seq, d]), x_gpu.reshape([batch, seq, d]));
        // Left padding of a different length in every sequence.
        let valid: Vec<f32> = (0..batch * seq).map(|t| if t % seq < (t / seq) % seq { 0.0 } else { 1.0 }).collect();
        for masked in [false, true] {
            let v_cpu = masked.then(|| Tensor::<1>::from_floats(valid.as_slice(), &Device::flex()).reshape([batch, seq]));
            let v_gpu = masked.then(|| Tensor::<1>::from_floats(valid.as_slice(), &gpu).reshape([batch, seq]));
            let (sq_r, max_r) = sequence_feature_stats_reference(x_cpu.clone(), v_cpu).unwrap();
            let (sq_k, max_k) = sequence_feature_stats(x_gpu.clone(), v_gpu).unwrap();
            assert_eq!(sq_k.dims(), [batch, d]);
            assert_eq!(values(max_r), values(max_k), "{batch}×{seq}×{d} masked {masked}: max |x|");
            let (sq_r, sq_k) = (values(sq_r), values(sq_k));
            assert!(sq_r.len() == sq_k.len() && !sq_r.is_empty(), "{batch}×{seq}×{d}: Σ x² sizes {} vs {}", sq_r.len(), sq_k.len());
            // Σ x² over ≤ 300 tokens in another order: 1e-5 relative.
            assert!(
                sq_r.iter().zip(&sq_k).all(|(r, k)| (r - k).abs() <= 1e-5 * r.abs().max(1.0)),
                "{batch}×{seq}×{d} masked {masked}: Σ x²"
            );
        }
    }
    let wrong = sequence_feature_stats(Tensor::ones([2, 3, 4], &gpu), Some(Tensor::ones([2, 4], &gpu))).unwrap_err().to_string();
    assert!(wrong.contains("[2, 3, 4]") && wrong.contains("[2, 4]"), "{wrong}");
}

#[test]
fn bad_input_is_an_error_not_a_gpu_fault() {
    let device = gpu().unwrap_or_else(Device::flex);
    let a = Tensor::<2>::ones([4, 8], &device);
    let err = contrastive_loss(a.clone(), Tensor::ones([4, 7], &device), ContrastiveOptions::default()).unwrap_err();
    assert!(err.to_string().contains("[4, 7]"), "{err}");
    assert!(contrastive_loss(a.clone(), a.clone(), ContrastiveOptions { scale: 0.0, shift: true }).is_err());
    assert!(contrastive_loss(Tensor::ones([0, 8], &device), Tensor::ones([0, 8], &device), ContrastiveOptions::default()).is_err());
    for bad in [
        Sparsity::Unstructured(1.0),
        Sparsity::Unstructured(-0.5),
        Sparsity::Unstructured(f64::NAN),
        Sparsity::NM { n: 4, m: 4 },
        Sparsity::NM { n: 5, m: 4 },
        Sparsity::NM { n: 0, m: 4 },
        Sparsity::NM { n: 2, m: 3 },
    ] {
        assert!(prune_mask(a.clone(), bad).is_err(), "{bad:?} was accepted");
    }
    assert!(wanda_scores(a.clone(), Tensor::ones([7], &device)).is_err());
    assert!(apply_mask(a.clone(), Tensor::<2>::ones([4, 7], &device).greater_elem(0.5)).is_err());
    assert!(feature_stats(a, Some(Tensor::ones([5], &device))).is_err());
}

/// More workgroups than one grid dimension holds (4096 × 4100 / 256 > 65 535): the 2-D dispatch
/// must cover every element.
#[test]
fn large_matrices_cover_every_element() {
    let Some(gpu) = gpu() else { return };
    let (rows, width) = (4096, 4100);
    let (w_cpu, w_gpu) = pair(rows, width, 77, &gpu);
    let norms: Vec<f32> = (0..width).map(|j| 0.5 + (j % 7) as f32).collect();
    let norms_r = Tensor::<1>::from_floats(norms.as_slice(), &Device::flex());
    let norms_k = Tensor::<1>::from_floats(norms.as_slice(), &gpu);
    let scores_r = wanda_scores_reference(w_cpu.clone(), norms_r).unwrap();
    let scores_k = wanda_scores(w_gpu.clone(), norms_k).unwrap();
    assert_eq!(values(scores_r.clone()), values(scores_k.clone()), "Wanda scores of a {rows}×{width} weight");
    let keep_r = prune_mask_reference(scores_r, Sparsity::Unstructured(0.5)).unwrap();
    let keep_k = prune_mask(scores_k, Sparsity::Unstructured(0.5)).unwrap();
    assert_eq!(bools(keep_r.clone()), bools(keep_k.clone()), "masks of a {rows}×{width} weight");
    assert_eq!(values(apply_mask_reference(w_cpu.clone(), keep_r).unwrap()), values(apply_mask(w_gpu.clone(), keep_k).unwrap()));
    // Feature statistics over 4096 tokens: 64 chunks folded, every fourth token masked out.
    let mask: Vec<f32> = (0..rows).map(|t| if t % 4 == 1 { 0.0 } else { 1.0 }).collect();
    let (sq_r, max_r) = feature_stats_reference(w_cpu, Some(Tensor::from_floats(mask.as_slice(), &Device::flex()))).unwrap();
    let (sq_k, max_k) = feature_stats(w_gpu, Some(Tensor::from_floats(mask.as_slice(), &gpu))).unwrap();
    assert_eq!(values(max_r), values(max_k), "max |x| over {rows} tokens");
    let (sq_r, sq_k) = (values(sq_r), values(sq_k));
    assert!(sq_r.len() == sq_k.len() && !sq_r.is_empty(), "Σ x² sizes {} vs {}", sq_r.len(), sq_k.len());
    // Σ x² over ~3000 tokens summed in another order: 1e-5 relative.
    assert!(sq_r.iter().zip(&sq_k).all(|(r, k)| (r - k).abs() <= 1e-5 * r.abs().max(1.0)), "Σ x² over {rows} tokens");
}

/// Random ggml blocks of `ty` with a finite f16 scale `d` where the type keeps it (the first
/// two bytes, or the last two for Q3_K / Q6_K) and a small `dmin` for Q4_K / Q5_K.
fn random_blocks(ty: GgmlType, blocks: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state as u8
    };
    let (d, dmin) = (half::f16::from_f32(0.01).to_le_bytes(), half::f16::from_f32(-0.02).to_le_bytes());
    let mut out = Vec::new();
    for _ in 0..blocks {
        let mut block: Vec<u8> = (0..ty.type_size()).map(|_| next()).collect();
        let n = block.len();
        match ty {
            GgmlType::Q3K | GgmlType::Q6K => block[n - 2..].copy_from_slice(&d),
            _ => {
                block[..2].copy_from_slice(&d);
                block[2..4].copy_from_slice(&dmin);
            }
        }
        out.extend(block);
    }
    out
}

/// The WGSL quantized matmul equals the dequantised weight times x for every code layout (4-bit
/// with mins, bytes with mins, signed bytes with half-block scales), with weight rows that do not
/// fill a workgroup and one activation row (decoding) or several.
#[test]
fn quantized_matmul_matches_the_dequantised_weight() {
    let Some(gpu) = gpu() else { return };
    let cases: Vec<(&str, PackedMatrix)> = vec![
        (
            "Q4_1",
            PackedMatrix::quantize(
                QuantizeTo::Q4_1,
                70,
                96,
                &values(Tensor::<2>::random([70, 96], Distribution::Normal(0.0, 1.0), &Device::flex())),
            )
            .unwrap(),
        ),
        (
            "Q8_0",
            PackedMatrix::quantize(
                QuantizeTo::Q8_0,
                33,
                64,
                &values(Tensor::<2>::random([33, 64], Distribution::Normal(0.0, 1.0), &Device::flex())),
            )
            .unwrap(),
        ),
        ("Q4_K", PackedMatrix::from_ggml(GgmlType::Q4K, 5, 512, &random_blocks(GgmlType::Q4K, 10, 1)).unwrap()),
        ("Q5_K", PackedMatrix::from_ggml(GgmlType::Q5K, 3, 256, &random_blocks(GgmlType::Q5K, 3, 2)).unwrap()),
        ("Q3_K", PackedMatrix::from_ggml(GgmlType::Q3K, 7, 256, &random_blocks(GgmlType::Q3K, 7, 3)).unwrap()),
        ("Q6_K", PackedMatrix::from_ggml(GgmlType::Q6K, 65, 512, &random_blocks(GgmlType::Q6K, 130, 4)).unwrap()),
    ];
    for (name, w) in cases {
        let on_gpu = DevicePackedMatrix::upload(&w, &gpu).unwrap();
        for m in [1, 5] {
            let (x_cpu, x_gpu) = pair(m, w.cols(), 300 + m as u64, &gpu);
            let reference = values(matmul_reference(&w, x_cpu));
            let ours = values(on_gpu.matmul(x_gpu).unwrap());
            let scale = reference.iter().fold(0f32, |a, v| a.max(v.abs()));
            assert!(scale > 0.0, "{name}: an all-zero reference compares nothing");
            // Sums of up to 512 products in another order: 1e-5 of the output's scale.
            let worst = max_abs_diff(&ours, &reference);
            assert!(worst <= 1e-5 * scale, "{name}, {m} rows: max |Δ| {worst} > 1e-5 × {scale}");
        }
    }
    // Inputs of the wrong width, and a weight for the CPU asked onto it, are errors.
    let w = PackedMatrix::quantize(QuantizeTo::Q8_0, 2, 32, &[0.5; 64]).unwrap();
    let on_gpu = DevicePackedMatrix::upload(&w, &gpu).unwrap();
    assert!(on_gpu.matmul(Tensor::zeros([1, 64], &gpu)).unwrap_err().to_string().contains("width 64"));
    assert!(DevicePackedMatrix::upload(&w, &Device::flex()).is_err());
}

/// The same random tensor on both devices (generated on the CPU).
fn pair_of<const D: usize>(shape: [usize; D], seed: u64, gpu: &Device) -> (Tensor<D>, Tensor<D>) {
    let cpu = Device::flex();
    cpu.seed(seed);
    let t = Tensor::<D>::random(shape, Distribution::Normal(0.0, 1.0), &cpu);
    let data = t.clone().into_data();
    (t, Tensor::from_data(data, gpu))
}

fn assert_close(name: &str, ours: &[f32], reference: &[f32], relative: f32) {
    assert_eq!(ours.len(), reference.len(), "{name}: lengths differ");
    let scale = reference.iter().fold(0f32, |a, v| a.max(v.abs()));
    assert!(scale > 0.0, "{name}: an all-zero reference compares nothing");
    let worst = max_abs_diff(ours, reference);
    assert!(worst <= relative * scale, "{name}: max |Δ| {worst} > {relative} × {scale}");
}

#[test]
fn decoder_layer_kernels_match_the_references_in_one_launch_each() {
    use rosetta_kernels::attention::{attention, attention_reference, wgpu_attention};
    use rosetta_kernels::rms_norm::{add_rms_norm, add_rms_norm_reference, rms_norm, rms_norm_reference, wgpu_add_rms_norm, wgpu_rms_norm};
    use rosetta_kernels::rotary::{rotary, rotary_reference, wgpu_rotary};
    use rosetta_kernels::swiglu::{swiglu, swiglu_reference, wgpu_swiglu};
    use rosetta_kernels::wgpu::launches::count_launches;
    let Some(gpu) = gpu() else { return };

    // RMSNorm: widths below, at and past the workgroup (128), rows of a prompt and of one token.
    for (rows, d) in [(1, 576), (7, 200), (3, 128), (2, 1)] {
        let (x_cpu, x_gpu) = pair_of([1, rows, d], 10 + d as u64, &gpu);
        let (g_cpu, g_gpu) = pair_of([d], 20 + d as u64, &gpu);
        let reference = values(rms_norm_reference(x_cpu.clone(), g_cpu.clone(), 1e-5).unwrap());
        let ours = values(wgpu_rms_norm(x_gpu.clone(), g_gpu.clone(), 1e-5).unwrap());
        // A sum of d squares in another order, then one division: 1e-5 of the output's scale.
        assert_close(&format!("rms norm {rows}×{d}"), &ours, &reference, 1e-5);
        let (dispatched, launches) = count_launches(|| values(rms_norm(x_gpu.clone(), g_gpu.clone(), 1e-5).unwrap()));
        assert_eq!(dispatched, ours, "rms_norm() on wgpu did not run the WGSL kernel");
        assert_eq!(launches.total(), 1, "rms norm {rows}×{d}: {launches:?}");

        // With the residual add before it: the sum exactly, the norm as above, one launch for both.
        let (delta_cpu, delta_gpu) = pair_of([1, rows, d], 30 + d as u64, &gpu);
        let (sum_ref, norm_ref) = add_rms_norm_reference(x_cpu.clone(), delta_cpu, g_cpu.clone(), 1e-5).unwrap();
        let (sum, normed) = wgpu_add_rms_norm(x_gpu.clone(), delta_gpu.clone(), g_gpu.clone(), 1e-5).unwrap();
        assert_close(&format!("residual sum {rows}×{d}"), &values(sum), &values(sum_ref), 1e-7);
        let normed = values(normed);
        assert_close(&format!("add + rms norm {rows}×{d}"), &normed, &values(norm_ref), 1e-5);
        let (dispatched, launches) = count_launches(|| values(add_rms_norm(x_gpu, delta_gpu, g_gpu, 1e-5).unwrap().1));
        assert_eq!(dispatched, normed, "add_rms_norm() on wgpu did not run the WGSL kernel");
        assert_eq!(launches.total(), 1, "add + rms norm {rows}×{d}: {launches:?}");
    }

    // RoPE on the heads' strided view of a projection, as the decoder calls it (and contiguous).
    let (batch, seq, heads, dim) = (2, 5, 3, 8);
    let (q_cpu, q_gpu) = pair_of([batch, seq, heads * dim], 30, &gpu);
    let heads_of = |t: Tensor<3>| t.reshape([batch, seq, heads, dim]).swap_dims(1, 2);
    let (cos_cpu, cos_gpu) = pair_of([batch, 1, seq, dim], 31, &gpu);
    let (sin_cpu, sin_gpu) = pair_of([batch, 1, seq, dim], 32, &gpu);
    let reference = values(rotary_reference(heads_of(q_cpu), cos_cpu, sin_cpu).unwrap());
    let strided = heads_of(q_gpu);
    let ours = values(wgpu_rotary(strided.clone(), cos_gpu.clone(), sin_gpu.clone()).unwrap());
    // Two products and a sum per value: exact up to rounding.
    assert_close("rotary, strided heads", &ours, &reference, 1e-6);
    let contiguous = Tensor::from_data(strided.clone().into_data(), &gpu);
    assert_close("rotary, contiguous", &values(wgpu_rotary(contiguous, cos_gpu.clone(), sin_gpu.clone()).unwrap()), &reference, 1e-6);
    let (dispatched, launches) = count_launches(|| values(rotary(strided, cos_gpu, sin_gpu).unwrap()));
    assert_eq!(dispatched, ours, "rotary() on wgpu did not run the WGSL kernel");
    assert_eq!(launches.total(), 1, "the strided heads were copied first: {launches:?}");

    // SwiGLU, a count that is not a multiple of the workgroup, with large gates of both signs.
    let (g_cpu, g_gpu) = pair_of([2, 3, 37], 40, &gpu);
    let (u_cpu, u_gpu) = pair_of([2, 3, 37], 41, &gpu);
    let (g_cpu, g_gpu) = (g_cpu * 8.0, g_gpu * 8.0);
    let reference = values(swiglu_reference(g_cpu, u_cpu).unwrap());
    let ours = values(wgpu_swiglu(g_gpu.clone(), u_gpu.clone()).unwrap());
    assert_close("swiglu", &ours, &reference, 1e-6);
    let (dispatched, launches) = count_launches(|| values(swiglu(g_gpu, u_gpu).unwrap()));
    assert_eq!(dispatched, ours, "swiglu() on wgpu did not run the WGSL kernel");
    assert_eq!(launches.total(), 1, "swiglu: {launches:?}");

    // Causal attention with grouped heads: a decode step, a prompt, queries at the end of a
    // longer cache, more keys than the workgroup has threads, and strided heads as the decoder
    // passes them ([batch, seq, heads · dim] projections viewed as [batch, heads, seq, dim]).
    for (batch, heads, kv_heads, seq, keys, dim) in [(1, 9, 3, 1, 7, 64), (2, 4, 4, 5, 5, 8), (1, 6, 2, 3, 10, 16), (2, 2, 1, 2, 300, 8)] {
        let name = format!("attention b{batch} h{heads}/{kv_heads} {seq}×{keys} d{dim}");
        let view = |t: Tensor<3>, n: usize, len: usize| t.reshape([batch, len, n, dim]).swap_dims(1, 2);
        let (q_cpu, q_gpu) = pair_of([batch, seq, heads * dim], 50, &gpu);
        let (k_cpu, k_gpu) = pair_of([batch, keys, kv_heads * dim], 51, &gpu);
        let (v_cpu, v_gpu) = pair_of([batch, keys, kv_heads * dim], 52, &gpu);
        let reference =
            values(attention_reference(view(q_cpu, heads, seq), view(k_cpu, kv_heads, keys), view(v_cpu, kv_heads, keys), None).unwrap());
        let (q, k, v) = (view(q_gpu, heads, seq), view(k_gpu, kv_heads, keys), view(v_gpu, kv_heads, keys));
        let ours = values(wgpu_attention(q.clone(), k.clone(), v.clone()).unwrap());
        // Softmax sums over up to 300 keys in another order: 1e-5 of the output's scale.
        assert_close(&name, &ours, &reference, 1e-5);
        let (dispatched, launches) = count_launches(|| values(attention(q.clone(), k.clone(), v.clone(), None).unwrap()));
        assert_eq!(dispatched, ours, "{name}: attention() on wgpu did not run the WGSL kernel");
        assert_eq!(launches.total(), 1, "{name}: {launches:?}");

        // Keys and values as the KV cache passes them: the filled prefix of longer buffers.
        let spare = 3;
        let buffer = |t: Tensor<4>| Tensor::cat(vec![t.clone(), Tensor::ones([batch, kv_heads, spare, dim], &gpu) * 1e3], 2);
        let (k_buffer, v_buffer) = (buffer(k), buffer(v));
        let prefix = |t: Tensor<4>| t.slice([0..batch, 0..kv_heads, 0..keys, 0..dim]);
        let from_buffers = values(wgpu_attention(q, prefix(k_buffer), prefix(v_buffer)).unwrap());
        assert_close(&format!("{name}, cache buffers"), &from_buffers, &reference, 1e-5);
    }

    // Timing the launches: the one kernel, with a measurement of one kind or another (lavapipe
    // may lack timestamp queries, and then the host times it), and nothing from before or after.
    use rosetta_kernels::wgpu::launches::time_launches;
    let (x, g) = (pair_of([1, 3, 200], 60, &gpu).1, pair_of([200], 61, &gpu).1);
    let (normed, times) = time_launches(|| values(rms_norm(x.clone(), g.clone(), 1e-5).unwrap()));
    assert_eq!(normed, values(wgpu_rms_norm(x, g, 1e-5).unwrap()));
    assert_eq!(times.launches(), 1.0, "{times:?}");
    assert_eq!(times.device_timed + times.system_timed + times.unmeasured, 1, "{times:?}");
    assert!(times.seconds().is_finite() && times.seconds() >= 0.0, "{times:?}");
    let earlier = times.clone();
    assert_eq!(times.since(&earlier).launches(), 0.0);
    assert_eq!(times.scaled(0.5).launches(), 0.5);
    eprintln!("rms norm timed: {times:?}");

    // Where the kernels do not run — the CPU backend, autodiff on wgpu — they refuse by name.
    let cpu = Device::flex();
    let err = wgpu_swiglu(Tensor::zeros([1, 1, 2], &cpu), Tensor::zeros([1, 1, 2], &cpu)).unwrap_err().to_string();
    assert!(err.contains("swiglu") && err.contains("wgpu"), "{err}");
    let training = gpu.clone().autodiff();
    let err = wgpu_rms_norm(Tensor::<2>::zeros([1, 4], &training), Tensor::zeros([4], &training), 1e-5).unwrap_err().to_string();
    assert!(err.contains("rms norm") && err.contains("inference"), "{err}");
}

/// AdamW's step as one dispatch: burn's composed step on the CPU is the reference, for a first
/// step (no moments) and a later one (moments, bias corrections below 1), with decay.
#[test]
fn adamw_kernel_matches_burns_step_in_one_launch() {
    use rosetta_kernels::adamw::{AdamWHyper, Moments, adamw_step, adamw_step_reference, wgpu_adamw_step};
    use rosetta_kernels::wgpu::launches::count_launches;
    let Some(gpu) = gpu() else { return };
    let hyper = AdamWHyper { beta_1: 0.9, beta_2: 0.95, epsilon: 1e-8, weight_decay: 0.1 };
    for shape in [[3, 37], [64, 576]] {
        let (p_cpu, p_gpu) = pair_of(shape, 70, &gpu);
        let (g_cpu, g_gpu) = pair_of(shape, 71, &gpu);
        let (first_ref, first_ours) = (
            adamw_step_reference(1e-3, p_cpu.clone(), g_cpu.clone(), None, hyper).unwrap(),
            wgpu_adamw_step(1e-3, p_gpu.clone(), g_gpu.clone(), None, hyper).unwrap(),
        );
        // Element-wise, the same operations in the same order: equal to rounding.
        assert_close(
            &format!("{shape:?}: parameter after the first step"),
            &values(first_ours.0.clone()),
            &values(first_ref.0.clone()),
            1e-6,
        );
        assert_eq!(first_ours.1.time, 1);
        // A later step from moments of a few steps (time 5), the moments themselves compared too.
        let (m_cpu, m_gpu) = pair_of(shape, 72, &gpu);
        let (v_cpu, v_gpu) = pair_of(shape, 73, &gpu);
        let moments = |m: Tensor<2>, v: Tensor<2>| Some(Moments { first: m * 0.1, second: v.square() * 0.01, time: 4 });
        let reference = adamw_step_reference(2e-3, first_ref.0, g_cpu, moments(m_cpu, v_cpu), hyper).unwrap();
        let before = moments(m_gpu, v_gpu);
        let ((param, later), launches) = count_launches(|| adamw_step(2e-3, first_ours.0, g_gpu.clone(), before, hyper).unwrap());
        assert_eq!(launches.total(), 1, "{shape:?}: {launches:?}");
        assert_eq!(later.time, 5);
        assert_close(&format!("{shape:?}: parameter"), &values(param), &values(reference.0), 1e-6);
        assert_close(&format!("{shape:?}: first moment"), &values(later.first), &values(reference.1.first), 1e-6);
        assert_close(&format!("{shape:?}: second moment"), &values(later.second), &values(reference.1.second), 1e-6);
    }
    // Mismatched shapes are an error, and the CPU is refused by the kernel (the dispatch takes
    // the reference there).
    let (p, g) = (Tensor::<2>::zeros([2, 3], &gpu), Tensor::<2>::zeros([3, 2], &gpu));
    assert!(wgpu_adamw_step(1e-3, p, g, None, hyper).unwrap_err().to_string().contains("gradient"));
    let cpu = Device::flex();
    let err = wgpu_adamw_step(1e-3, Tensor::<2>::ones([2, 2], &cpu), Tensor::<2>::ones([2, 2], &cpu), None, hyper).unwrap_err();
    assert!(err.to_string().contains("wgpu"), "{err}");
}
