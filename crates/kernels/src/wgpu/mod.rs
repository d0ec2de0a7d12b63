//! The WGSL path: launching the shaders of `shaders/` on burn's wgpu backend through backend
//! extensions, and the custom autodiff backward of the contrastive loss.

pub mod contrastive;
mod launch;
pub mod masking;
pub(crate) mod quant;
