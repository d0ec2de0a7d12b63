//! Packed weights on a wgpu device: the same codes, scales and mins as a [`PackedMatrix`], held
//! in GPU buffers and multiplied by the WGSL kernel `shaders/quant_matmul.wgsl`, which
//! dequantises each block in registers and takes f32 activations. A 135M model's projections take
//! their packed size in GPU memory (98 MB for SmolLM2 Q4_1) instead of their f32 size (540 MB).
//!
//! The plain reference is [`matmul_reference`]: the dequantised weight times `x`, on any device.

use burn::prelude::*;
use burn::tensor::DType;

use super::packed::{CodeWidth, PackedMatrix};
use crate::error::{KernelError, Result, shape_error};

/// A [`PackedMatrix`] uploaded to a wgpu device (see the module docs).
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "wgpu"), allow(dead_code, reason = "only the wgpu kernel reads the buffers"))]
pub struct DevicePackedMatrix {
    /// The code bytes as u32 words. Stored in an f32 tensor of the same bits: only the shader
    /// reads it (as `array<u32>`), and no tensor op ever touches its values.
    codes: Tensor<1>,
    scales: Tensor<1>,
    /// One unused value for signed codes, which have no mins.
    mins: Tensor<1>,
    rows: usize,
    cols: usize,
    width: CodeWidth,
}

impl DevicePackedMatrix {
    /// Uploads `w` to `device`, which must be a wgpu device (the only one with the kernel).
    pub fn upload(w: &PackedMatrix, device: &Device) -> Result<Self> {
        if !crate::is_wgpu(device) || device.is_autodiff() {
            return Err(KernelError::Invalid(format!(
                "packed weights run on the CPU or on a wgpu device without autodiff, not on {device:?}"
            )));
        }
        let (codes, scales, mins) = w.parts();
        let words = codes.len() / 4;
        let codes = Tensor::<1>::from_data(TensorData::from_bytes_vec(codes.to_vec(), [words], DType::F32), device);
        let scales = Tensor::<1>::from_data(TensorData::new(scales.to_vec(), [scales.len()]), device);
        let mins = if mins.is_empty() { vec![0.0] } else { mins.to_vec() };
        let mins = Tensor::<1>::from_data(TensorData::new(mins.clone(), [mins.len()]), device);
        Ok(DevicePackedMatrix { codes, scales, mins, rows: w.rows(), cols: w.cols(), width: w.width() })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// `x · Wᵀ`: `x: [m, cols]` on the matrix's device → `[m, rows]`.
    pub fn matmul(&self, x: Tensor<2>) -> Result<Tensor<2>> {
        let [m, k] = x.dims();
        if k != self.cols {
            return Err(shape_error("quantized matmul", format!("inputs of width {k} for a {}×{} weight", self.rows, self.cols)));
        }
        if x.device() != self.codes.device() {
            return Err(shape_error("quantized matmul", format!("inputs on {:?} for a weight on {:?}", x.device(), self.codes.device())));
        }
        if m == 0 {
            return Ok(Tensor::zeros([0, self.rows], &x.device()));
        }
        #[cfg(feature = "wgpu")]
        return Ok(crate::wgpu::quant::quant_matmul(x, &self.codes, &self.scales, &self.mins, self.rows, self.width));
        #[cfg(not(feature = "wgpu"))]
        Err(KernelError::Invalid("packed weights on a GPU need the `wgpu` feature".into()))
    }
}

/// The dequantised weight times `x` (`[m, cols]` → `[m, rows]`) on `x`'s device: what the WGSL
/// kernel is tested against.
pub fn matmul_reference(w: &PackedMatrix, x: Tensor<2>) -> Tensor<2> {
    let weight = Tensor::<2>::from_data(TensorData::new(w.dequantize(), [w.rows(), w.cols()]), &x.device());
    x.matmul(weight.transpose())
}
