//! Where weights come from and go to.
//!
//! Every checkpoint format is read through [`WeightSource`], which presents tensors under their
//! **HF names and HF layout** (`[out, in]` for linear weights) as f32. The model builder
//! ([`crate::model::CausalLm::from_source`]) therefore knows one naming scheme only; GGUF's
//! names, layouts and quantisation are undone inside [`gguf_source`].

/// The GGML block formats live with the kernels that multiply them.
pub use rosetta_kernels::quant::blocks as dequant;
pub mod gguf;
pub mod gguf_source;
pub mod random;
pub mod safetensors_source;
pub mod sparse;

use std::ops::Deref;
#[cfg(not(target_family = "wasm"))]
use std::path::Path;

use rosetta_kernels::quant::PackedMatrix;

use crate::error::{Origin, Result};

/// The bytes of a checkpoint file: memory-mapped natively, owned in the browser.
pub enum Blob {
    Owned(Vec<u8>),
    #[cfg(not(target_family = "wasm"))]
    Mapped(memmap2::Mmap),
}

impl Blob {
    /// Maps a file read-only. The mapping assumes nobody rewrites the file while it is open,
    /// which holds for checkpoints (Rosetta itself only ever replaces files by rename).
    #[cfg(not(target_family = "wasm"))]
    pub fn open(path: &Path) -> Result<Self> {
        use crate::error::ModelError;
        let file = std::fs::File::open(path).map_err(|e| ModelError::io(path.display().to_string(), e))?;
        let len = file.metadata().map_err(|e| ModelError::io(path.display().to_string(), e))?.len();
        if len == 0 {
            return Ok(Blob::Owned(Vec::new()));
        }
        // SAFETY: read-only mapping of a file we do not modify; see the doc comment above. The
        // workspace's few `unsafe` blocks (ARCHITECTURE lists them; the lint denies the rest).
        #[allow(unsafe_code)]
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| ModelError::io(path.display().to_string(), e))?;
        Ok(Blob::Mapped(map))
    }

    /// Lets the kernel take back the mapped pages a load has read: they stop counting in the
    /// process's resident memory (a 98 MB GGUF would otherwise sit beside the weights built from
    /// it for the whole run) and stay in the page cache, so a later read faults them back in.
    /// Owned bytes are left alone.
    pub fn release_resident(&self) {
        #[cfg(not(target_family = "wasm"))]
        if let Blob::Mapped(map) = self {
            // SAFETY: the mapping is read-only and private, and nothing ever writes to it, so
            // every page dropped here reads back from the file with the same bytes; no
            // reference into the mapping can observe a difference.
            #[allow(unsafe_code)]
            let _ = unsafe { map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
        }
    }
}

impl From<Vec<u8>> for Blob {
    fn from(bytes: Vec<u8>) -> Self {
        Blob::Owned(bytes)
    }
}

impl Deref for Blob {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Blob::Owned(v) => v,
            #[cfg(not(target_family = "wasm"))]
            Blob::Mapped(m) => m,
        }
    }
}

/// A tensor on the host: row-major f32 values with their shape.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl HostTensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        HostTensor { shape, data }
    }
}

/// A set of named tensors in HF naming and layout.
pub trait WeightSource {
    /// The file (or files) behind this source, for error messages.
    fn origin(&self) -> &Origin;
    /// The origin of one tensor (for sharded checkpoints: the shard that holds it).
    fn origin_of(&self, _name: &str) -> Origin {
        self.origin().clone()
    }
    fn names(&self) -> Vec<String>;
    /// Shape in HF layout, or `None` when the tensor is absent.
    fn shape(&self, name: &str) -> Option<Vec<usize>>;
    /// How the tensor is stored (`BF16`, `Q4_1`, ...).
    fn storage_type(&self, name: &str) -> Option<String>;
    /// Reads the tensor as f32. Errors if it is absent or unreadable.
    fn read(&self, name: &str) -> Result<HostTensor>;
    /// Reads a quantized 2-D tensor without dequantising it, in HF layout, or `None` when the
    /// source does not store it in a form the quantized kernels take (float tensors, and every
    /// tensor of sources without quantized storage).
    fn read_packed(&self, _name: &str) -> Result<Option<PackedMatrix>> {
        Ok(None)
    }
    /// Drops the file pages reading has made resident ([`Blob::release_resident`]); called once a
    /// model is built. Reads after it still work (the pages fault back in).
    fn release_resident(&self) {}
}

/// HF parameter names of the decoder, in one place so loaders, exporters and the
/// intervention API agree on them.
pub mod names {
    pub const EMBED: &str = "model.embed_tokens.weight";
    pub const FINAL_NORM: &str = "model.norm.weight";
    pub const LM_HEAD: &str = "lm_head.weight";

    pub fn layer(i: usize, rest: &str) -> String {
        format!("model.layers.{i}.{rest}")
    }
}
