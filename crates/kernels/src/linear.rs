//! A dense projection `x·W + bias`, optionally LoRA-adapted: `+ s·(x·A)·B` (Hu et al. 2021).
//!
//! [`linear`] runs the fused CPU kernel (`cpu::linear`: every product accumulates into one
//! output, its own autodiff step) under autodiff on the CPU backend, and [`linear_reference`] —
//! burn's `linear` and the low-rank branch from tensor ops, the decoder's path before —
//! everywhere else, inference on the CPU included.

use burn::prelude::*;
use burn::tensor::module::linear as burn_linear;

pub use crate::cpu::linear::Products;
use crate::error::{Result, shape_error};

/// The trainable low-rank factors of a LoRA-adapted weight.
#[derive(Clone, Debug)]
pub struct Lora {
    /// `[d_in, r]`.
    pub a: Tensor<2>,
    /// `[r, d_out]`.
    pub b: Tensor<2>,
    pub scale: f64,
}

fn check(x: &Tensor<2>, w: &Tensor<2>, bias: Option<&Tensor<1>>, lora: Option<&Lora>) -> Result<()> {
    check_dims(x, w.dims(), bias, lora)
}

/// As [`check`] for a weight of `[w_in, d_out]` (burn's layout).
fn check_dims(x: &Tensor<2>, [w_in, d_out]: [usize; 2], bias: Option<&Tensor<1>>, lora: Option<&Lora>) -> Result<()> {
    let [_, d_in] = x.dims();
    if d_in != w_in {
        return Err(shape_error("linear", format!("inputs of width {d_in} for a {w_in}×{d_out} weight")));
    }
    if let Some(b) = bias
        && b.dims() != [d_out]
    {
        return Err(shape_error("linear", format!("a bias of {:?} for {d_out} outputs", b.dims())));
    }
    if let Some(l) = lora {
        let ([a_in, r], [b_r, b_out]) = (l.a.dims(), l.b.dims());
        if a_in != d_in || b_out != d_out || r != b_r || !l.scale.is_finite() {
            return Err(shape_error(
                "linear",
                format!("LoRA factors {:?} × {:?} (scale {}) do not fit a {d_in}×{d_out} weight", l.a.dims(), l.b.dims(), l.scale),
            ));
        }
    }
    Ok(())
}

/// Every dtype the call involves (the fused kernel takes f32 only).
fn dtypes(x: &Tensor<2>, w: &Tensor<2>, bias: Option<&Tensor<1>>, lora: Option<&Lora>) -> Vec<burn::tensor::DType> {
    let mut dtypes = vec![x.dtype(), w.dtype()];
    dtypes.extend(lora.iter().flat_map(|l| [l.a.dtype(), l.b.dtype()]));
    dtypes.extend(bias.map(|b| b.dtype()));
    dtypes
}

/// burn's `linear` plus the low-rank branch from tensor ops: every device, and what the fused
/// kernel is tested against.
///
/// # Shapes
/// `x: [rows, d_in]`, `w: [d_in, d_out]` (burn's `Linear` layout) → `[rows, d_out]`.
pub fn linear_reference(x: Tensor<2>, w: Tensor<2>, bias: Option<Tensor<1>>, lora: Option<Lora>) -> Result<Tensor<2>> {
    check(&x, &w, bias.as_ref(), lora.as_ref())?;
    let y = burn_linear(x.clone(), w, bias);
    Ok(match lora {
        None => y,
        // The scale on the thin `[rows, r]` product, not the wide output.
        Some(l) => y + burn_linear(burn_linear(x, l.a, None).mul_scalar(l.scale), l.b, None),
    })
}

/// Whether a training step on `device` can take [`Products::Bf16`] in bf16: the fused kernel runs
/// there (the CPU backend) and the CPU has AVX-512 BF16.
pub fn bf16_products_on(device: &Device) -> bool {
    crate::fused_cpu_supports(device, &[burn::tensor::DType::F32]) && Products::bf16_available()
}

/// The fused CPU kernel, its weight products in `products`. An error off the CPU backend and for
/// non-f32 tensors.
pub fn fused_linear(x: Tensor<2>, w: Tensor<2>, bias: Option<Tensor<1>>, lora: Option<Lora>, products: Products) -> Result<Tensor<2>> {
    check(&x, &w, bias.as_ref(), lora.as_ref())?;
    let dtypes = dtypes(&x, &w, bias.as_ref(), lora.as_ref());
    if !crate::fused_cpu_supports(&x.device(), &dtypes) {
        return Err(crate::fused_cpu_refusal("linear", &x.device(), x.dtype()));
    }
    #[cfg(feature = "flex")]
    {
        let y = match lora {
            None => crate::flex::linear::linear(x, w, products),
            Some(l) => crate::flex::linear::lora_linear(x, w, l.a, l.b, l.scale as f32, products),
        };
        Ok(match bias {
            Some(b) => y + b.unsqueeze(),
            None => y,
        })
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = (w, bias, lora, products);
        Err(crate::fused_cpu_refusal("linear", &x.device(), x.dtype()))
    }
}

/// A projection whose frozen weight is packed (`w: [d_out, d_in]`, quantized blocks): the
/// fused CPU kernel dequantises it for each product and keeps only the blocks for backward, so
/// a LoRA step over a quantized base (QLoRA, Dettmers et al. 2023) holds no f32 copy of it.
/// Gradients reach `x` and the LoRA factors, never the weight. The CPU backend only (with or
/// without autodiff); elsewhere an error.
///
/// # Shapes
/// `x: [rows, d_in]` → `[rows, d_out]`.
pub fn packed_linear(
    x: Tensor<2>,
    w: &std::sync::Arc<crate::quant::PackedMatrix>,
    bias: Option<Tensor<1>>,
    lora: Option<Lora>,
    products: Products,
) -> Result<Tensor<2>> {
    check_dims(&x, [w.cols(), w.rows()], bias.as_ref(), lora.as_ref())?;
    let mut dtypes = vec![x.dtype()];
    dtypes.extend(lora.iter().flat_map(|l| [l.a.dtype(), l.b.dtype()]));
    dtypes.extend(bias.as_ref().map(|b| b.dtype()));
    if !crate::fused_cpu_supports(&x.device(), &dtypes) {
        return Err(crate::fused_cpu_refusal("packed linear", &x.device(), x.dtype()));
    }
    #[cfg(feature = "flex")]
    {
        let y = match lora {
            None => crate::flex::linear::packed_linear(x, w.clone(), products),
            Some(l) => crate::flex::linear::packed_lora_linear(x, w.clone(), l.a, l.b, l.scale as f32, products),
        };
        Ok(match bias {
            Some(b) => y + b.unsqueeze(),
            None => y,
        })
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = (w, bias, lora, products);
        Err(crate::fused_cpu_refusal("packed linear", &x.device(), x.dtype()))
    }
}

/// Whether [`fused_linear`] runs on `device` (the CPU backend, f32 tensors).
pub fn fused_runs_on(device: &Device) -> bool {
    crate::fused_cpu_supports(device, &[burn::tensor::DType::F32])
}

/// A dense projection: fused when training on the CPU backend (its weight products in
/// `products`), the reference elsewhere (where `products` does not apply: f32 everywhere).
pub fn linear(x: Tensor<2>, w: Tensor<2>, bias: Option<Tensor<1>>, lora: Option<Lora>, products: Products) -> Result<Tensor<2>> {
    let dtypes = dtypes(&x, &w, bias.as_ref(), lora.as_ref());
    if x.device().is_autodiff() && crate::fused_cpu_supports(&x.device(), &dtypes) {
        return fused_linear(x, w, bias, lora, products);
    }
    linear_reference(x, w, bias, lora)
}
