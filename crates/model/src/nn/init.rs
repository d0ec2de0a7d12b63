//! Building burn layers from host tensors in HF layout.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use burn::module::{Param, ParamId};
use burn::nn::{Embedding, Linear, RmsNorm};
use burn::prelude::*;

use crate::nn::projection::PackedLinear;
use crate::weights::HostTensor;

/// How a dense projection's `[in, out]` weight lies in device memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum DenseLayout {
    /// Row-major `[in, out]` (each output's weights strided): what every backend has used.
    OutputMajor,
    /// HF's `[out, in]` rows kept as they are and viewed as `[in, out]`: each output's weights
    /// contiguous along the input (the K dimension). The matrix × vector kernels burn's
    /// autotuning picks for decoding on a GPU read the weight this way and otherwise transpose it
    /// on every call (210 copies a decode step on an H200, `reports/gpu/README.md`).
    InputMajor,
}

/// The layout [`DenseLayout::set_for_wgpu`] chose (`0`: none, read the variable).
static WGPU_LAYOUT: AtomicU8 = AtomicU8::new(0);

impl DenseLayout {
    /// The variable that chooses the layout on wgpu, for the measurement on a GPU that decides
    /// the default (`scripts/gpu/run.sh`): `input-major` or `output-major` (the default).
    pub const WGPU_VARIABLE: &'static str = "ROSETTA_WGPU_DENSE_LAYOUT";

    /// Chooses the layout of the models loaded on wgpu from now on in this process, over
    /// [`Self::WGPU_VARIABLE`].
    pub fn set_for_wgpu(layout: DenseLayout) {
        WGPU_LAYOUT.store(layout as u8 + 1, Ordering::Relaxed);
    }

    /// The layout for `device`: output-major everywhere but on wgpu, where
    /// [`Self::set_for_wgpu`] or else [`Self::WGPU_VARIABLE`] (`input-major`) can choose
    /// input-major.
    pub fn for_device(device: &Device) -> Self {
        if !rosetta_kernels::is_wgpu(device) {
            return DenseLayout::OutputMajor;
        }
        match WGPU_LAYOUT.load(Ordering::Relaxed) {
            1 => DenseLayout::OutputMajor,
            2 => DenseLayout::InputMajor,
            _ if std::env::var(Self::WGPU_VARIABLE).is_ok_and(|v| v == "input-major") => DenseLayout::InputMajor,
            _ => DenseLayout::OutputMajor,
        }
    }
}

/// A linear layer from an HF `[out, in]` weight (burn's `[in, out]`, laid out as
/// [`DenseLayout::for_device`] says).
pub fn linear(weight: HostTensor, bias: Option<HostTensor>, device: &Device) -> Linear {
    let (out_features, in_features) = (weight.shape[0], weight.shape[1]);
    let weight = match DenseLayout::for_device(device) {
        DenseLayout::InputMajor => {
            Param::from_tensor(Tensor::<2>::from_data(TensorData::new(weight.data, [out_features, in_features]), device).transpose())
        }
        DenseLayout::OutputMajor => {
            let mut transposed = vec![0f32; weight.data.len()];
            for o in 0..out_features {
                let row = &weight.data[o * in_features..(o + 1) * in_features];
                for (i, v) in row.iter().enumerate() {
                    transposed[i * out_features + o] = *v;
                }
            }
            Param::from_data(TensorData::new(transposed, [in_features, out_features]), device)
        }
    };
    Linear { weight, bias: bias.map(|b| Param::from_data(TensorData::new(b.data, [out_features]), device)) }
}

pub fn rms_norm(weight: HostTensor, epsilon: f64, device: &Device) -> RmsNorm {
    let d = weight.data.len();
    RmsNorm { gamma: Param::from_data(TensorData::new(weight.data, [d]), device), epsilon }
}

pub fn embedding(weight: HostTensor, device: &Device) -> Embedding {
    let shape = [weight.shape[0], weight.shape[1]];
    Embedding { weight: Param::from_data(TensorData::new(weight.data, shape), device) }
}

/// The embedding tied to a packed head: its `[vocab, d]` f32 table is built only when something
/// reads it (an edit, export, the f32 head of a large batch) — until then lookups gather rows of
/// the packed head (`CausalLm`'s forward), and the table costs no memory (113 MB for SmolLM2).
pub fn embedding_from_packed(head: Arc<PackedLinear>, device: &Device) -> Embedding {
    let shape = [head.weight.rows(), head.weight.cols()];
    let build = move |device: &Device, require_grad: bool| {
        let table = Tensor::<2>::from_data(TensorData::new(head.weight.dequantize(), shape), device);
        if require_grad { table.require_grad() } else { table }
    };
    Embedding { weight: Param::uninitialized(ParamId::new(), build, device.clone(), true, shape.into()) }
}
