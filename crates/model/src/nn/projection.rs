//! How a linear projection's weight is stored, and the forward that dispatches on it.
//!
//! Every projection of the decoder is either **dense** — burn's `Linear` (f32, trainable, any
//! device) — or **packed** — quantized blocks in the kernels' layout ([`PackedMatrix`]), run by
//! the integer matmul of `rosetta_kernels::quant` on the CPU. The model keeps, per projection,
//! `Option<Linear>` in the module tree (so parameter paths and records do not change) and an
//! `Option<Arc<PackedLinear>>` beside it, outside the tree; **exactly one of the two is set**.
//! Loading decides ([`Precision`]); editing a packed weight ([`crate::CausalLm::set_weight`])
//! makes it dense.
//!
//! A packed weight may carry a LoRA adapter (QLoRA, Dettmers et al. 2023: a frozen quantized
//! base, trainable f32 factors). burn attaches adapters to a dense weight's `Param`; a packed
//! weight has none, so its adapter lives in the block's [`PackedAdapters`] — in the module tree,
//! where the optimizer, autodiff and checkpoints see it. The forward then runs the fused packed
//! op (`rosetta_kernels::linear::packed_linear`), which differentiates through the frozen blocks.

use std::sync::Arc;

use burn::module::{LoraAdapter, Param};
use burn::nn::Linear;
use burn::prelude::*;
use rosetta_kernels::linear::Products;
use rosetta_kernels::quant::{DevicePackedMatrix, PackedMatrix, QuantizeTo, QuantizedRows, Tiles, matmul_many};

use crate::error::{ModelError, Result};
use crate::intervention::LinearKind;

/// Which storage loading gives the projections (and the tied LM head).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// Keep quantized tensors quantized where the kernels take their type and the device is the
    /// CPU; everything else f32. The default: a GGUF runs on its own blocks.
    #[default]
    Auto,
    /// Dequantise everything to f32 (training, and the f32 reference path).
    F32,
    /// Quantize f32/f16/bf16 projections at load (a checkpoint already quantized is an error).
    Quantize(QuantizeTo),
    /// The frozen base of LoRA training (QLoRA): quantized projections stay packed on the CPU
    /// backend, autodiff included, where adapters train on top of them; the embedding and the
    /// head (which train or compute the loss) are f32.
    PackedBase,
}

impl Precision {
    pub const NAMES: &'static str = "auto, f32";

    /// `auto` or `f32` (what `--precision` takes; quantizing is `--quantize`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "auto" => Some(Precision::Auto),
            "f32" => Some(Precision::F32),
            _ => None,
        }
    }

    /// Whether weights may be packed on `device`: the quantized kernels run on the CPU backend
    /// and on wgpu (the WGSL kernel), without autodiff (packed weights are frozen and not
    /// differentiable).
    pub fn packs_on(self, device: &Device) -> bool {
        match self {
            Precision::F32 => false,
            // The fused packed op differentiates on the CPU backend only.
            Precision::PackedBase => is_cpu(device),
            Precision::Auto | Precision::Quantize(_) => {
                (is_cpu(device) && !device.is_autodiff()) || (rosetta_kernels::is_wgpu(device) && !device.is_autodiff())
            }
        }
    }

    /// Whether the LM head (and a tied embedding) may be packed too.
    pub fn packs_head(self) -> bool {
        self != Precision::PackedBase
    }
}

/// Whether `device` is burn's CPU backend (with or without autodiff).
#[cfg(feature = "flex")]
fn is_cpu(device: &Device) -> bool {
    matches!(device.clone().without_autodiff().as_dispatch(), burn::backend::DispatchDevice::Flex(_))
}

#[cfg(not(feature = "flex"))]
fn is_cpu(_device: &Device) -> bool {
    false
}

/// A projection's weight (HF orientation `[out, in]`) and bias, packed.
#[derive(Clone)]
pub struct PackedLinear {
    /// Shared with the backward of a training step that reads it (the fused packed op).
    pub weight: Arc<PackedMatrix>,
    pub bias: Option<Vec<f32>>,
    /// The weight in GPU buffers when the model lives on a wgpu device (the host copy stays for
    /// edits and export).
    pub on_device: Option<DevicePackedMatrix>,
}

impl std::fmt::Debug for PackedLinear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PackedLinear({} × {}, {}, bias: {})",
            self.weight.rows(),
            self.weight.cols(),
            self.weight.source.name(),
            self.bias.is_some()
        )
    }
}

impl PackedLinear {
    /// A packed projection for a model on `device`: uploaded for the WGSL kernel on wgpu, kept on
    /// the host for the CPU kernels elsewhere.
    pub fn new(weight: PackedMatrix, bias: Option<Vec<f32>>, device: &Device) -> Result<Self> {
        let on_device = if rosetta_kernels::is_wgpu(device) {
            Some(DevicePackedMatrix::upload(&weight, device).map_err(|e| ModelError::invalid(e.to_string()))?)
        } else {
            None
        };
        Ok(PackedLinear { weight: Arc::new(weight), bias, on_device })
    }

    /// The same projection as a dense burn `Linear` on `device` (for edits and export).
    pub fn to_dense(&self, device: &Device) -> Linear {
        let (out, inp) = (self.weight.rows(), self.weight.cols());
        let weight = Tensor::<2>::from_data(TensorData::new(self.weight.dequantize(), [out, inp]), device).transpose();
        Linear {
            weight: burn::module::Param::from_tensor(weight),
            bias: self.bias.as_ref().map(|b| burn::module::Param::from_data(TensorData::new(b.clone(), [out]), device)),
        }
    }
}

/// The weights of one projection, as the model stores them.
#[derive(Clone, Copy)]
pub enum Weights<'a> {
    /// burn's `Linear`, its LoRA adapter (if any) on its weight's `Param`.
    Dense(&'a Linear),
    /// Packed blocks, and the LoRA adapter trained on top of them (if any).
    Packed(&'a PackedLinear, Option<&'a LoraAdapter>),
}

impl<'a> Weights<'a> {
    /// The stored pair, which holds exactly one (see the module docs), and a packed weight's
    /// adapter.
    pub fn of(dense: Option<&'a Linear>, packed: Option<&'a Arc<PackedLinear>>, adapter: Option<&'a LoraAdapter>) -> Result<Self> {
        match (dense, packed) {
            (_, Some(p)) => Ok(Weights::Packed(p, adapter)),
            (Some(d), None) => Ok(Weights::Dense(d)),
            (None, None) => Err(ModelError::invalid("a projection holds neither dense nor packed weights")),
        }
    }
}

/// The LoRA adapters of a block's packed projections, by projection (see the module docs);
/// `None` where a projection is dense, not adapted, or not in the block.
#[derive(Module, Debug)]
pub struct PackedAdapters {
    pub q_proj: Option<LoraAdapter>,
    pub k_proj: Option<LoraAdapter>,
    pub v_proj: Option<LoraAdapter>,
    pub o_proj: Option<LoraAdapter>,
    pub gate_proj: Option<LoraAdapter>,
    pub up_proj: Option<LoraAdapter>,
    pub down_proj: Option<LoraAdapter>,
}

impl PackedAdapters {
    pub fn none() -> Self {
        PackedAdapters { q_proj: None, k_proj: None, v_proj: None, o_proj: None, gate_proj: None, up_proj: None, down_proj: None }
    }

    fn slot(&self, kind: LinearKind) -> &Option<LoraAdapter> {
        match kind {
            LinearKind::QProj => &self.q_proj,
            LinearKind::KProj => &self.k_proj,
            LinearKind::VProj => &self.v_proj,
            LinearKind::OProj => &self.o_proj,
            LinearKind::GateProj => &self.gate_proj,
            LinearKind::UpProj => &self.up_proj,
            LinearKind::DownProj => &self.down_proj,
        }
    }

    pub fn get(&self, kind: LinearKind) -> Option<&LoraAdapter> {
        self.slot(kind).as_ref()
    }

    pub fn set(&mut self, kind: LinearKind, adapter: Option<LoraAdapter>) {
        let slot = match kind {
            LinearKind::QProj => &mut self.q_proj,
            LinearKind::KProj => &mut self.k_proj,
            LinearKind::VProj => &mut self.v_proj,
            LinearKind::OProj => &mut self.o_proj,
            LinearKind::GateProj => &mut self.gate_proj,
            LinearKind::UpProj => &mut self.up_proj,
            LinearKind::DownProj => &mut self.down_proj,
        };
        *slot = adapter;
    }
}

/// `packed + s·(A·B)ᵀ` as a dense f32 `Linear` on `device` (a LoRA merge over a packed base).
pub fn merged_dense(packed: &PackedLinear, adapter: Option<&LoraAdapter>, device: &Device) -> Linear {
    let mut dense = packed.to_dense(device);
    if let Some(adapter) = adapter {
        let merged = dense.weight.val() + adapter.delta().to_device(device);
        dense.weight = Param::from_tensor(merged);
    }
    dense
}

/// Applies projections that all read `x`: dense ones through burn, packed ones through the
/// quantized matmul — `x` read back and quantized once for all of them. With `dense_in_bf16`
/// (an inference pass that accepts the bf16 route's rounding, see
/// [`crate::Interventions::dense_in_bf16`]) the dense f32 projections join the packed ones on
/// the bf16 route when it is taken.
///
/// # Shapes
/// `x: [batch, seq, d_in] -> [batch, seq, d_out]` each.
///
/// With `differentiable` (a checkpointed layer's forward outside the graph, see
/// `nn::checkpoint`) every weight takes the kernels a training backward differentiates — the
/// fused dense and packed ops — so the forward computes what its replay will, not the faster
/// inference routes' rounding.
pub fn project_all(
    weights: &[Weights<'_>],
    x: Tensor<3>,
    dense_in_bf16: bool,
    products: Products,
    differentiable: bool,
) -> Result<Vec<Tensor<3>>> {
    let [b, s, k] = x.dims();
    let device = x.device();
    let mut any_packed = false;
    for w in weights {
        if let Weights::Packed(packed, _) = w {
            any_packed = true;
            if packed.weight.cols() != k {
                return Err(ModelError::invalid(format!(
                    "a packed {}×{} projection got inputs of width {k}",
                    packed.weight.rows(),
                    packed.weight.cols()
                )));
            }
        }
    }
    let on_gpu = rosetta_kernels::is_wgpu(&device);
    // A LoRA adapter over a packed base, a packed weight under autodiff (its input wants a
    // gradient), or a forward that must compute as its backward will: the fused packed op,
    // which differentiates through the frozen blocks.
    let adapted = weights.iter().any(|w| matches!(w, Weights::Packed(_, Some(_))));
    if differentiable || (any_packed && (adapted || device.is_autodiff())) {
        if any_packed && on_gpu {
            return Err(ModelError::invalid(
                "packed (quantized) weights train, and carry LoRA adapters, on the CPU backend only; load the model with `--precision f32` for wgpu",
            ));
        }
        return weights
            .iter()
            .map(|w| match w {
                Weights::Packed(packed, adapter) => packed_op_forward(packed, *adapter, x.clone(), products),
                Weights::Dense(linear) => dense_forward(linear, x.clone(), products, true),
            })
            .collect();
    }
    if any_packed && on_gpu {
        return weights.iter().map(|w| device_forward(*w, x.clone())).collect();
    }
    let route = CpuRoute::for_rows(b * s);
    if any_packed && route == CpuRoute::Dequantized {
        return weights.iter().map(|w| dequantized_forward(*w, x.clone())).collect();
    }
    // Which weights the route multiplies: every packed one, and with `dense_in_bf16` on the bf16
    // route every plain f32 dense one whose rows are whole 32-value blocks, as the panels need
    // (a LoRA-adapted weight keeps its low-rank path).
    // Never under autodiff: the route reads values back to the host, outside the graph.
    #[cfg(target_arch = "x86_64")]
    let dense_on_route = dense_in_bf16 && matches!(route, CpuRoute::Bf16(_)) && k.is_multiple_of(32) && !on_gpu && !device.is_autodiff();
    #[cfg(not(target_arch = "x86_64"))]
    let dense_on_route = {
        let _ = dense_in_bf16;
        false
    };
    let on_route: Vec<bool> = weights
        .iter()
        .map(|w| match w {
            Weights::Packed(..) => true,
            Weights::Dense(linear) => {
                dense_on_route && linear.weight.adapter().is_none() && linear.weight.val().dtype() == burn::tensor::DType::F32
            }
        })
        .collect();
    // When every weight takes the route, `x` moves into the read-back: a tensor nothing else
    // holds gives up its buffer without a copy (a shared one is copied twice, once to bytes and
    // once to realign them — 3 % of a batch-8 forward).
    let (values, x) = match (on_route.contains(&true), on_route.contains(&false)) {
        (true, false) => (Some(host_values(x)?), None),
        (true, true) => (Some(host_values(x.clone())?), Some(x)),
        (false, _) => (None, Some(x)),
    };
    let mut routed_out = if let Some(values) = values {
        let products = match route {
            CpuRoute::Integer => {
                let packed: Vec<&PackedMatrix> =
                    weights.iter().filter_map(|w| if let Weights::Packed(p, _) = w { Some(&*p.weight) } else { None }).collect();
                matmul_many(Tiles::best(), &packed, &QuantizedRows::quantize(&values, b * s, k))
            }
            #[cfg(target_arch = "x86_64")]
            CpuRoute::Bf16(bf16) => {
                use rosetta_kernels::quant::bf16::Bf16Weight;
                // The dense weights' values as `[d_out, d_in]`, read back once per call:
                // burn's `Linear` holds `[d_in, d_out]`, and an edited weight
                // (`CausalLm::set_weight`) is the transposed view of `[d_out, d_in]` values,
                // which this reads without a copy.
                let dense_values: Vec<Option<Vec<f32>>> = weights
                    .iter()
                    .zip(&on_route)
                    .map(|(w, &routed)| match w {
                        Weights::Dense(linear) if routed => host_values(linear.weight.val().transpose()).map(Some),
                        _ => Ok(None),
                    })
                    .collect::<Result<_>>()?;
                let routed: Vec<Bf16Weight<'_>> = weights
                    .iter()
                    .zip(&dense_values)
                    .zip(&on_route)
                    .filter(|(_, routed)| **routed)
                    .map(|((w, dense), _)| match (w, dense) {
                        (Weights::Packed(p, _), _) => Bf16Weight::Packed(&p.weight),
                        (Weights::Dense(linear), Some(values)) => {
                            let [d_in, d_out] = linear.weight.val().dims();
                            Bf16Weight::Dense { values, rows: d_out, cols: d_in }
                        }
                        (Weights::Dense(_), None) => unreachable!("dense weights on the route were read back above"),
                    })
                    .collect();
                bf16.matmul_many(&routed, &values, b * s)
            }
            CpuRoute::Dequantized => unreachable!("returned above"),
        };
        products.map_err(|e| ModelError::invalid(e.to_string()))?.into_iter()
    } else {
        Vec::new().into_iter()
    };
    let mut out = Vec::with_capacity(weights.len());
    for (w, &routed) in weights.iter().zip(&on_route) {
        if !routed {
            let Weights::Dense(linear) = w else { unreachable!("packed weights are always on the route") };
            let x = x.clone().ok_or_else(|| ModelError::invalid("a dense projection's input was given to the route"))?;
            out.push(dense_forward(linear, x, products, false)?);
            continue;
        }
        let mut y = routed_out.next().ok_or_else(|| ModelError::invalid("projection without output"))?;
        match w {
            Weights::Packed(packed, _) => {
                let n = packed.weight.rows();
                if let Some(bias) = &packed.bias {
                    for row in y.chunks_exact_mut(n) {
                        row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
                    }
                }
                out.push(Tensor::from_data(TensorData::new(y, [b, s, n]), &device));
            }
            Weights::Dense(linear) => {
                let n = linear.weight.val().dims()[1];
                let y = Tensor::<3>::from_data(TensorData::new(y, [b, s, n]), &device);
                out.push(match &linear.bias {
                    Some(bias) => y + bias.val().reshape([1, 1, n]),
                    None => y,
                });
            }
        }
    }
    Ok(out)
}

/// A dense projection through `rosetta_kernels::linear` (fused when training on the CPU
/// backend). A LoRA-adapted weight (burn's `Lora`, see `rosetta_train::adapt`) runs as
/// `x·W + s·(x·A)·B`, the low-rank path of Hu et al., instead of `x·(W + s·A·B)` as `Param::val`
/// would materialise it: the same function, but backward then needs no `[d_in, d_out]` gradient
/// of the frozen base — a third of a projection's training FLOPs. The rows of all sequences
/// form one product: the GEMM packs the weight once, and backward forms the weight gradient in
/// one product instead of one per sequence and a sum.
///
/// With `fused` the fused kernel runs wherever it can (the CPU backend), with or without
/// autodiff: a checkpointed layer's forward then computes what its replay under autodiff will.
fn dense_forward(linear: &Linear, x: Tensor<3>, products: Products, fused: bool) -> Result<Tensor<3>> {
    use rosetta_kernels::linear::{Lora, fused_linear, linear as project_rows};
    let [b, s, k] = x.dims();
    let bias = linear.bias.as_ref().map(|b| b.val());
    let (weight, lora) = match linear.weight.adapter() {
        None => (linear.weight.val(), None),
        Some(adapter) => (linear.weight.base(), Some(Lora { a: adapter.a.val(), b: adapter.b.val(), scale: adapter.scale })),
    };
    let x = x.reshape([b * s, k]);
    let y = if fused && x.dtype() == burn::tensor::DType::F32 && rosetta_kernels::linear::fused_runs_on(&x.device()) {
        fused_linear(x, weight, bias, lora, products)
    } else {
        project_rows(x, weight, bias, lora, products)
    }
    .map_err(|e| ModelError::invalid(e.to_string()))?;
    let n = y.dims()[1];
    Ok(y.reshape([b, s, n]))
}

/// A packed projection through the fused packed op (CPU backend), with its LoRA branch: the
/// path of training over a packed base and of inference with an adapter on one.
fn packed_op_forward(packed: &PackedLinear, adapter: Option<&LoraAdapter>, x: Tensor<3>, products: Products) -> Result<Tensor<3>> {
    use rosetta_kernels::linear::{Lora, packed_linear};
    let [b, s, k] = x.dims();
    let device = x.device();
    let n = packed.weight.rows();
    let bias = packed.bias.as_ref().map(|bias| Tensor::<1>::from_data(TensorData::new(bias.clone(), [n]), &device));
    let lora = adapter.map(|a| Lora { a: a.a.val(), b: a.b.val(), scale: a.scale });
    let y = packed_linear(x.reshape([b * s, k]), &packed.weight, bias, lora, products).map_err(|e| ModelError::invalid(e.to_string()))?;
    Ok(y.reshape([b, s, n]))
}

/// Which CPU kernel multiplies packed weights, chosen by the number of activation rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuRoute {
    /// The integer tiles on 16-bit activations (`rosetta_kernels::quant::matmul`): decoding and
    /// short prompts, where reading the weights is the cost.
    Integer,
    /// bf16 panels of the weight, f32 sums (`rosetta_kernels::quant::bf16`), on CPUs with
    /// AVX-512 BF16: scoring batches and long prompts, where multiplying is the cost.
    #[cfg(target_arch = "x86_64")]
    Bf16(rosetta_kernels::quant::bf16::Bf16Route),
    /// f32 GEMM on dequantised slices: many rows on CPUs without bf16 dot products.
    Dequantized,
}

impl CpuRoute {
    pub fn for_rows(rows: usize) -> Self {
        #[cfg(target_arch = "x86_64")]
        if rows >= BF16_ROWS
            && let Some(route) = rosetta_kernels::quant::bf16::Bf16Route::detect()
        {
            return CpuRoute::Bf16(route);
        }
        if rows >= DEQUANTIZED_ROWS && !cfg!(target_arch = "wasm32") { CpuRoute::Dequantized } else { CpuRoute::Integer }
    }

    pub fn name(self) -> &'static str {
        match self {
            CpuRoute::Integer => "integer tiles",
            #[cfg(target_arch = "x86_64")]
            CpuRoute::Bf16(_) => "bf16",
            CpuRoute::Dequantized => "dequantised f32 GEMM",
        }
    }
}

/// From this many input rows on, a CPU with AVX-512 BF16 multiplies packed weights on the bf16
/// route: measured on the 2-core benchmark machine (`reports/inference/`), dequantising a panel
/// of the weight costs less than the integer tiles' per-block float work from here on.
pub const BF16_ROWS: usize = 48;

/// From this many input rows on, a CPU without bf16 dot products dequantises a packed weight a
/// slice at a time and multiplies it in f32 by burn's matmul (the `gemm` crate) instead of the
/// integer kernels: the integer tiles lead at decode and prompt sizes (1–128 rows), f32 GEMM at
/// scoring batches (8 × 128), where the work is compute-bound and dequantising a slice costs a
/// few percent of multiplying by it (`reports/inference/`). Not in WebAssembly, where the f32
/// GEMM has 4-wide SIMD and no fused multiply-add: there the integer tile leads at every size
/// (one Q4_1 1536 × 576 weight in Chromium, one thread, the GEMM timed with its dequantisation:
/// 20.2 against 10.3 GMAC/s at 16 rows, 19.3 against 15.3 at 64, 19.2 against 17.9 at 512;
/// `reports/lab/wasm-tile-bench`), and needs no f32 copy of each weight slice.
pub const DEQUANTIZED_ROWS: usize = 256;

/// Weight rows dequantised at a time on the f32 path (a 49 152-row head in 8 MB slices).
const DEQUANTIZED_SLICE_ROWS: usize = 4096;

/// A projection through f32 GEMM on dequantised slices of its weight (see [`DEQUANTIZED_ROWS`]).
fn dequantized_forward(weights: Weights<'_>, x: Tensor<3>) -> Result<Tensor<3>> {
    packed_rows_forward(weights, x, |packed, x2| {
        let (n, k, w) = (packed.weight.rows(), packed.weight.cols(), &packed.weight);
        let mut parts = Vec::with_capacity(n.div_ceil(DEQUANTIZED_SLICE_ROWS));
        for start in (0..n).step_by(DEQUANTIZED_SLICE_ROWS) {
            let end = (start + DEQUANTIZED_SLICE_ROWS).min(n);
            let slice = Tensor::<2>::from_data(TensorData::new(w.dequantize_rows(start..end), [end - start, k]), &x2.device());
            parts.push(x2.clone().matmul(slice.transpose()));
        }
        if parts.len() == 1 { parts.pop().ok_or_else(|| ModelError::invalid("empty projection")) } else { Ok(Tensor::cat(parts, 1)) }
    })
}

/// A projection on a wgpu device: packed weights through the WGSL kernel, which dequantises in
/// registers and takes the f32 activations as they are.
fn device_forward(weights: Weights<'_>, x: Tensor<3>) -> Result<Tensor<3>> {
    packed_rows_forward(weights, x, |packed, x2| {
        let on_device = packed.on_device.as_ref().ok_or_else(|| {
            ModelError::invalid(
                "a packed projection reached a wgpu device without its GPU copy (load the model onto the device it runs on)",
            )
        })?;
        on_device.matmul(x2).map_err(|e| ModelError::invalid(e.to_string()))
    })
}

/// A packed projection whose product of the `[b·s, d_in]` rows is `product`, with its bias; a
/// dense one through [`dense_forward`].
fn packed_rows_forward(
    weights: Weights<'_>,
    x: Tensor<3>,
    product: impl FnOnce(&PackedLinear, Tensor<2>) -> Result<Tensor<2>>,
) -> Result<Tensor<3>> {
    let packed = match weights {
        // Inference beside packed weights (a model with packed weights does not train): f32.
        Weights::Dense(linear) => return dense_forward(linear, x, Products::F32, false),
        Weights::Packed(packed, _) => packed,
    };
    let [b, s, k] = x.dims();
    let device = x.device();
    let n = packed.weight.rows();
    let mut y = product(packed, x.reshape([b * s, k]))?;
    if let Some(bias) = &packed.bias {
        y = y + Tensor::<1>::from_data(TensorData::new(bias.clone(), [n]), &device).unsqueeze_dim(0);
    }
    Ok(y.reshape([b, s, n]))
}

/// One projection (see [`project_all`]).
pub fn project(weights: Weights<'_>, x: Tensor<3>) -> Result<Tensor<3>> {
    let mut out = project_all(&[weights], x, false, Products::F32, false)?;
    out.pop().ok_or_else(|| ModelError::invalid("a projection produced no output"))
}

/// The f32 values of a CPU tensor, row-major. Packed weights run only on the CPU backend, whose
/// reads complete at once (also in the browser).
#[cfg_attr(target_family = "wasm", allow(clippy::disallowed_methods, reason = "packed weights run only on the CPU backend"))]
fn host_values<const D: usize>(x: Tensor<D>) -> Result<Vec<f32>> {
    x.into_data().try_into_vec::<f32>().map_err(|e| ModelError::invalid(format!("packed projection input is not f32: {e:?}")))
}

/// Packed weights by [`LinearKind`] (`None` where that projection is dense or not in the block
/// that holds the slots).
#[derive(Debug, Clone, Default)]
pub struct PackedSlots([Option<Arc<PackedLinear>>; LinearKind::ALL.len()]);

impl PackedSlots {
    pub fn get(&self, kind: LinearKind) -> Option<&Arc<PackedLinear>> {
        self.0[kind as usize].as_ref()
    }

    pub fn set(&mut self, kind: LinearKind, packed: Option<Arc<PackedLinear>>) {
        self.0[kind as usize] = packed;
    }

    /// Bytes held by the packed weights.
    pub fn memory_bytes(&self) -> usize {
        self.0.iter().flatten().map(|p| p.weight.memory_bytes()).sum()
    }
}

/// Runs the projections `kinds` of a block on `x` (see [`project_all`]). A failure is recorded
/// in the pass's trace (the forward returns no `Result`) and zeros of the right shape stand in.
pub(crate) fn run_projections<'a>(
    kinds: &[LinearKind],
    weights: impl Fn(LinearKind) -> (Option<&'a Linear>, Option<&'a Arc<PackedLinear>>, Option<&'a LoraAdapter>),
    x: Tensor<3>,
    state: &mut crate::pass::PassState<'_>,
) -> Vec<Tensor<3>> {
    let [b, s, _] = x.dims();
    let device = x.device();
    let out_features = |kind: LinearKind| match weights(kind) {
        (_, Some(p), _) => p.weight.rows(),
        (Some(d), None, _) => d.weight.dims()[1],
        (None, None, _) => 0,
    };
    let result = kinds
        .iter()
        .map(|&k| {
            let (d, p, adapter) = weights(k);
            Weights::of(d, p, adapter)
        })
        .collect::<Result<Vec<_>>>()
        .and_then(|w| {
            let dense_in_bf16 = state.interventions.dense_in_bf16 && !state.differentiable;
            project_all(&w, x, dense_in_bf16, state.dense_products, state.differentiable)
        });
    match result {
        Ok(out) => out,
        Err(e) => {
            state.trace.record_failure(e);
            kinds.iter().map(|&k| Tensor::zeros([b, s, out_features(k)], &device)).collect()
        }
    }
}
