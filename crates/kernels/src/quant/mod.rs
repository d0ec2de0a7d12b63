//! Quantized weights on the CPU: GGML block formats ([`blocks`]), the packed layout the kernels
//! read ([`packed`]), 16-bit activations ([`activation`]) and the integer matmul ([`matmul`]) with
//! its SIMD tiles (`x86`: AVX-512 VNNI and AVX2; `wasm`: WebAssembly SIMD, for the lab; the
//! scalar reference elsewhere), the compute-bound route for many activation rows on CPUs with
//! AVX-512 BF16 ([`bf16`]: bf16 panels of the weight, f32 sums) — and the same packed weights on
//! a wgpu device ([`device`]: the WGSL kernel that dequantises in registers).
//!
//! The model crate's linear layers dispatch here when a weight is stored packed
//! (`rosetta_model::nn::projection`); nothing here knows about models.

pub mod activation;
#[cfg(target_arch = "x86_64")]
pub mod bf16;
pub mod blocks;
pub mod device;
pub mod matmul;
pub mod packed;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use activation::QuantizedRows;
pub use blocks::{AffineBlock, GgmlType};
pub use device::DevicePackedMatrix;
pub use matmul::{Tiles, matmul, matmul_many, matmul_quantized, matmul_with, reference_matmul};
pub use packed::{CodeWidth, PackedMatrix, QuantizeTo};
