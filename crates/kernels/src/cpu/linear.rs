//! A linear layer `y = x·W`, optionally with a LoRA branch `+ s·(x·A)·B` (Hu et al. 2021), and
//! its gradients, on host slices. Each product accumulates into one output (`dst +=`), so the
//! LoRA branch costs two thin GEMMs and no elementwise pass over `[rows, d_out]`, and an output is
//! allocated once (burn's CPU matmul allocates, zeroes and then copies every output to align it).

use super::gemm::{MatMut, MatRef, Threads, gemm};

/// The LoRA factors of one projection: `a: [d_in, r]`, `b: [r, d_out]`, scale `s`.
#[derive(Clone, Copy, Debug)]
pub struct LoraFactors<'a> {
    pub a: MatRef<'a>,
    pub b: MatRef<'a>,
    pub scale: f32,
}

/// `x·W (+ s·(x·A)·B)`, `[rows, d_out]`, and `x·A` (`[rows, r]`, kept for backward) when there
/// is a LoRA branch. The caller checks the shapes.
pub fn linear_forward(x: MatRef<'_>, w: MatRef<'_>, lora: Option<LoraFactors<'_>>) -> (Vec<f32>, Option<Vec<f32>>) {
    let ((n, _), (_, d_out)) = (x.shape(), w.shape());
    let mut y = vec![0.0f32; n * d_out];
    gemm(MatMut::row_major(&mut y, n, d_out), x, w, 1.0, false, Threads::Pool);
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

/// `∂x = g·Wᵀ + s·(g·Bᵀ)·Aᵀ`, `∂W = xᵀ·g`, `∂A = s·xᵀ·(g·Bᵀ)`, `∂B = s·(x·A)ᵀ·g`.
pub fn linear_backward(
    x: MatRef<'_>,
    w: MatRef<'_>,
    lora: Option<(LoraFactors<'_>, &[f32])>,
    grad_y: MatRef<'_>,
    wanted: Wanted,
) -> LinearGrads {
    let ((n, d_in), (_, d_out)) = (x.shape(), w.shape());
    let mut grads = LinearGrads::default();
    if wanted.w {
        let mut dw = vec![0.0f32; d_in * d_out];
        gemm(MatMut::row_major(&mut dw, d_in, d_out), x.t(), grad_y, 1.0, false, Threads::Pool);
        grads.w = Some(dw);
    }
    let mut dx = wanted.x.then(|| {
        let mut dx = vec![0.0f32; n * d_in];
        gemm(MatMut::row_major(&mut dx, n, d_in), grad_y, w.t(), 1.0, false, Threads::Pool);
        dx
    });
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
