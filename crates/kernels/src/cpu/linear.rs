//! A linear layer `y = x·W`, optionally with a LoRA branch `+ s·(x·A)·B` (Hu et al. 2021), and
//! its gradients, on host slices. Each product accumulates into one output (`dst +=`), so the
//! LoRA branch costs two thin GEMMs and no elementwise pass over `[rows, d_out]`, and an output is
//! allocated once (burn's CPU matmul allocates, zeroes and then copies every output to align it).
//!
//! With [`Products::Bf16`] the three wide products — `x·W`, `∂x = g·Wᵀ` and `∂W = xᵀ·g` — run on
//! the bf16 route of the quantized kernels (`crate::quant::bf16`: operands rounded to bf16, f32
//! sums, twice an f32 FMA's multiply-adds per instruction), reading every operand in place in
//! the orientation it has. The thin LoRA products stay f32, as do all outputs.

use super::gemm::{MatMut, MatRef, Threads, gemm};

/// How the products of a projection that read its weight multiply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Products {
    /// f32 GEMM: the reference.
    #[default]
    F32,
    /// Operands rounded to bf16, sums in f32, where the CPU has AVX-512 BF16 and the summed
    /// dimension (`d_in`, `d_out`, the rows for `∂W`) is whole 32-value blocks; f32 GEMM otherwise (the same call, so a caller never
    /// has to ask). What a CPU training step in `precision = "bf16"` uses.
    Bf16,
}

impl Products {
    /// Whether [`Products::Bf16`] runs in bf16 on this CPU (else it falls back to f32).
    pub fn bf16_available() -> bool {
        #[cfg(target_arch = "x86_64")]
        return crate::quant::bf16::Bf16Route::detect().is_some();
        #[cfg(not(target_arch = "x86_64"))]
        false
    }

    /// The bf16 route these products take: `Some` for [`Products::Bf16`] on a CPU that has it.
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn bf16_route(self) -> Option<crate::quant::bf16::Bf16Route> {
        if self == Products::Bf16 { crate::quant::bf16::Bf16Route::detect() } else { None }
    }
}

/// `∂W = xᵀ·g` on the bf16 route: the strips read `x` (`[rows, d_in]`) input-major and the
/// panels read `g` (`[rows, d_out]`) input-major, both in place; the summed dimension is the rows.
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
fn bf16_weight_gradient(products: Products, x: MatRef<'_>, g: MatRef<'_>) -> Option<Vec<f32>> {
    #[cfg(target_arch = "x86_64")]
    {
        use crate::quant::bf16::Bf16Weight;
        let route = products.bf16_route()?;
        let ((rows, d_in), (_, d_out)) = (x.shape(), g.shape());
        let (x, g) = (x.as_row_major()?, g.as_row_major()?);
        if !rows.is_multiple_of(32) {
            return None;
        }
        route.matmul_many_input_major(&[Bf16Weight::DenseInputMajor { values: g, rows: d_out, cols: rows }], x, d_in).ok()?.pop()
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// `a · Wᵀ`-shaped products on the bf16 route: `a` is `[rows, k]` row-major; the weight is `W`
/// (`[d_in, d_out]`) for `x·W`, or used as `Wᵀ` for `g·Wᵀ`, read in place whichever way it is
/// stored: row-major (burn's `Linear`), or the transposed view of `[d_out, d_in]` values (a
/// dequantised packed weight, HF's orientation). `None` where the route does not apply (f32
/// asked, no AVX-512 BF16, any other stride, `k` not whole blocks).
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
fn bf16_product(products: Products, a: MatRef<'_>, w: MatRef<'_>, transposed_w: bool) -> Option<Vec<f32>> {
    #[cfg(target_arch = "x86_64")]
    {
        use crate::quant::bf16::Bf16Weight;
        let route = products.bf16_route()?;
        let ((rows, k), (d_in, d_out)) = (a.shape(), w.shape());
        let a = a.as_row_major()?;
        if !k.is_multiple_of(32) {
            return None;
        }
        // The product's outputs are W's columns for x·W and its rows for g·Wᵀ; a weight stored
        // with those outputs as its rows is read output-major, the other way input-major.
        let (outputs, summed) = if transposed_w { (d_in, d_out) } else { (d_out, d_in) };
        let weight = match (w.as_row_major(), w.t().as_row_major()) {
            (Some(values), _) if transposed_w => Bf16Weight::Dense { values, rows: outputs, cols: summed },
            (Some(values), _) => Bf16Weight::DenseInputMajor { values, rows: outputs, cols: summed },
            (None, Some(values)) if transposed_w => Bf16Weight::DenseInputMajor { values, rows: outputs, cols: summed },
            (None, Some(values)) => Bf16Weight::Dense { values, rows: outputs, cols: summed },
            (None, None) => return None,
        };
        route.matmul_many(&[weight], a, rows).ok()?.pop()
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// The LoRA factors of one projection: `a: [d_in, r]`, `b: [r, d_out]`, scale `s`.
#[derive(Clone, Copy, Debug)]
pub struct LoraFactors<'a> {
    pub a: MatRef<'a>,
    pub b: MatRef<'a>,
    pub scale: f32,
}

/// `x·W (+ s·(x·A)·B)`, `[rows, d_out]`, and `x·A` (`[rows, r]`, kept for backward) when there
/// is a LoRA branch. The caller checks the shapes.
pub fn linear_forward(x: MatRef<'_>, w: MatRef<'_>, lora: Option<LoraFactors<'_>>, products: Products) -> (Vec<f32>, Option<Vec<f32>>) {
    let ((n, _), (_, d_out)) = (x.shape(), w.shape());
    let mut y = bf16_product(products, x, w, false).unwrap_or_else(|| {
        let mut y = vec![0.0f32; n * d_out];
        gemm(MatMut::row_major(&mut y, n, d_out), x, w, 1.0, false, Threads::Pool);
        y
    });
    let xa = lora.map(|f| {
        let r = f.a.shape().1;
        let mut xa = vec![0.0f32; n * r];
        gemm(MatMut::row_major(&mut xa, n, r), x, f.a, 1.0, false, Threads::Pool);
        gemm(MatMut::row_major(&mut y, n, d_out), MatRef::row_major(&xa, n, r), f.b, f.scale, true, Threads::Pool);
        xa
    });
    (y, xa)
}

/// Which gradients [`linear_backward`] forms.
#[derive(Clone, Copy, Debug, Default)]
pub struct Wanted {
    pub x: bool,
    pub w: bool,
    pub a: bool,
    pub b: bool,
}

/// Gradients of [`linear_forward`], each `None` unless wanted.
#[derive(Debug, Default)]
pub struct LinearGrads {
    pub x: Option<Vec<f32>>,
    pub w: Option<Vec<f32>>,
    pub a: Option<Vec<f32>>,
    pub b: Option<Vec<f32>>,
}

/// `∂x = g·Wᵀ` (`g: [rows, d_out]`, `w: [d_in, d_out]`): the one gradient a frozen weight
/// without a LoRA branch passes on.
pub fn input_gradient(grad_y: MatRef<'_>, w: MatRef<'_>, products: Products) -> Vec<f32> {
    let ((n, _), (d_in, _)) = (grad_y.shape(), w.shape());
    bf16_product(products, grad_y, w, true).unwrap_or_else(|| {
        let mut dx = vec![0.0f32; n * d_in];
        gemm(MatMut::row_major(&mut dx, n, d_in), grad_y, w.t(), 1.0, false, Threads::Pool);
        dx
    })
}

/// `∂x = g·Wᵀ + s·(g·Bᵀ)·Aᵀ`, `∂W = xᵀ·g`, `∂A = s·xᵀ·(g·Bᵀ)`, `∂B = s·(x·A)ᵀ·g`.
pub fn linear_backward(
    x: MatRef<'_>,
    w: MatRef<'_>,
    lora: Option<(LoraFactors<'_>, &[f32])>,
    grad_y: MatRef<'_>,
    wanted: Wanted,
    products: Products,
) -> LinearGrads {
    let ((n, d_in), (_, d_out)) = (x.shape(), w.shape());
    let mut grads = LinearGrads::default();
    if wanted.w {
        grads.w = Some(bf16_weight_gradient(products, x, grad_y).unwrap_or_else(|| {
            let mut dw = vec![0.0f32; d_in * d_out];
            gemm(MatMut::row_major(&mut dw, d_in, d_out), x.t(), grad_y, 1.0, false, Threads::Pool);
            dw
        }));
    }
    let mut dx = wanted.x.then(|| input_gradient(grad_y, w, products));
    if let Some((f, xa)) = lora {
        let r = f.a.shape().1;
        // g·Bᵀ, [rows, r]: shared by ∂x and ∂A.
        let mut gb = vec![0.0f32; n * r];
        gemm(MatMut::row_major(&mut gb, n, r), grad_y, f.b.t(), 1.0, false, Threads::Pool);
        let gb = MatRef::row_major(&gb, n, r);
        if let Some(dx) = &mut dx {
            gemm(MatMut::row_major(dx, n, d_in), gb, f.a.t(), f.scale, true, Threads::Pool);
        }
        if wanted.a {
            let mut da = vec![0.0f32; d_in * r];
            gemm(MatMut::row_major(&mut da, d_in, r), x.t(), gb, f.scale, false, Threads::Pool);
            grads.a = Some(da);
        }
        if wanted.b {
            let mut db = vec![0.0f32; r * d_out];
            gemm(MatMut::row_major(&mut db, r, d_out), MatRef::row_major(xa, n, r).t(), grad_y, f.scale, false, Threads::Pool);
            grads.b = Some(db);
        }
    }
    grads.x = dx;
    grads
}
