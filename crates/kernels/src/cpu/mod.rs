//! Fused CPU kernels of training, on host slices: the pieces burn composes from many passes
//! under autodiff (attention, the LM head's cross-entropy), each with a plain reference beside
//! its public function (`crate::attention`, `crate::cross_entropy`) and registered with burn's
//! autodiff for the CPU backend in `crate::flex`.

pub mod attention;
pub mod cross_entropy;
pub mod exp;
pub mod gemm;
pub mod linear;
pub mod masking;
pub mod pool;
pub mod rms_norm;
pub mod rotary;
mod rows;
pub(crate) mod simd;
pub mod swiglu;
