//! The WGSL path: launching the shaders of `shaders/` on burn's wgpu backend through backend
//! extensions — the contrastive loss with its custom autodiff backward, masking, the quantized
//! matmul, the decoder layer's inference ops (`layer`), AdamW's step (`adamw`) — and counting and
//! timing launches (`launches`).

pub(crate) mod adamw;
pub mod contrastive;
mod launch;
pub mod launches;
pub(crate) mod layer;
pub mod masking;
pub(crate) mod quant;
