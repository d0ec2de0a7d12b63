//! The decoder's layers, one per file. Linear, RMSNorm and embedding layers are burn's own
//! (`burn::nn`), whose math matches HF's; what is specific to the LLaMA family lives here.

pub mod attention;
pub(crate) mod checkpoint;
pub mod decoder_layer;
pub(crate) mod init;
pub mod mlp;
pub(crate) mod norm;
pub mod projection;
pub mod rotary;
