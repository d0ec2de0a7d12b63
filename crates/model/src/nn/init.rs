//! Building burn layers from host tensors in HF layout.

use std::sync::Arc;

use burn::module::{Param, ParamId};
use burn::nn::{Embedding, Linear, RmsNorm};
use burn::prelude::*;

use crate::nn::projection::PackedLinear;
use crate::weights::HostTensor;

/// A linear layer from an HF `[out, in]` weight (transposed to burn's `[in, out]`).
pub fn linear(weight: HostTensor, bias: Option<HostTensor>, device: &Device) -> Linear {
    let (out_features, in_features) = (weight.shape[0], weight.shape[1]);
    let mut transposed = vec![0f32; weight.data.len()];
    for o in 0..out_features {
        let row = &weight.data[o * in_features..(o + 1) * in_features];
        for (i, v) in row.iter().enumerate() {
            transposed[i * out_features + o] = *v;
        }
    }
    Linear {
        weight: Param::from_data(TensorData::new(transposed, [in_features, out_features]), device),
        bias: bias.map(|b| Param::from_data(TensorData::new(b.data, [out_features]), device)),
    }
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
