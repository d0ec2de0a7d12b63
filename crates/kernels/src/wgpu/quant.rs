//! The quantized matmul on wgpu: `shaders/quant_matmul.wgsl` over a
//! [`crate::quant::DevicePackedMatrix`]'s buffers.

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Cube, Dispatch, TensorMetadata, backend_extension};
use burn::prelude::*;
use cubecl::CubeDim;

use super::launch::{MAX_GROUPS_PER_DIM, Template, WORKGROUP, empty_f32, launch, prepared, row_grid, u32_buffer};
use crate::quant::packed::{BLOCK, CodeWidth};

// burn 0.22 runs every cubecl runtime as one `Cube` backend; the public API calls this only on
// wgpu devices, where the WGSL template compiles.
#[backend_extension(Cube)]
pub trait QuantBackend: Backend {
    /// `x: [m, k]` times the `[n, k]` weight whose code words, scales and mins are given, in the
    /// shader's `layout` (0 four-bit, 1 unsigned bytes, 2 signed bytes).
    fn quant_matmul(
        x: FloatTensor<Self>,
        codes: FloatTensor<Self>,
        scales: FloatTensor<Self>,
        mins: FloatTensor<Self>,
        n: usize,
        layout: u32,
    ) -> FloatTensor<Self>;
}

impl QuantBackend for Cube {
    fn quant_matmul(
        x: FloatTensor<Self>,
        codes: FloatTensor<Self>,
        scales: FloatTensor<Self>,
        mins: FloatTensor<Self>,
        n: usize,
        layout: u32,
    ) -> FloatTensor<Self> {
        let x = prepared(x);
        let [m, k] = x.shape().dims::<2>();
        let out = empty_f32(&x, burn::tensor::Shape::new([m, n]));
        let words = if layout == 0 { BLOCK / 8 } else { BLOCK / 4 };
        let values = vec![
            ("workgroup", WORKGROUP.to_string()),
            ("max_groups", MAX_GROUPS_PER_DIM.to_string()),
            ("layout", layout.to_string()),
            ("words", words.to_string()),
        ];
        let template = Template { name: "quant_matmul", source: include_str!("../../../../shaders/quant_matmul.wgsl"), values };
        let info = u32_buffer(&x, &[m as u32, n as u32, (k / BLOCK) as u32]);
        launch(
            &x,
            template,
            CubeDim::new_1d(WORKGROUP),
            row_grid(m, n, WORKGROUP),
            vec![x.handle.clone(), codes.handle.clone(), scales.handle.clone(), mins.handle.clone(), out.handle.clone(), info],
        );
        out
    }
}

/// `x · Wᵀ` (see [`crate::quant::DevicePackedMatrix::matmul`], which checked the shapes).
pub(crate) fn quant_matmul(x: Tensor<2>, codes: &Tensor<1>, scales: &Tensor<1>, mins: &Tensor<1>, n: usize, width: CodeWidth) -> Tensor<2> {
    let layout = match width {
        CodeWidth::Four => 0,
        CodeWidth::Eight => 1,
        CodeWidth::SignedSixteens => 2,
    };
    Tensor::from_dispatch(<Dispatch as QuantBackend>::quant_matmul(
        x.into_dispatch(),
        codes.clone().into_dispatch(),
        scales.clone().into_dispatch(),
        mins.clone().into_dispatch(),
        n,
        layout,
    ))
}
