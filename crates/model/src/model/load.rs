//! Loading [`CausalLm`] from a checkpoint's tensors and handing them back for export, both under
//! HF names and in HF layout. Every projection is built and exported through [`LinearKind`], so
//! the seven projections are named in one place (`LinearKind::hf_path`).

use std::sync::Arc;

use burn::prelude::*;
use rosetta_kernels::linear::Products;
use rosetta_kernels::quant::PackedMatrix;

use super::CausalLm;
use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::intervention::LinearKind;
use crate::nn::attention::SelfAttention;
use crate::nn::decoder_layer::{DecoderLayer, StoredProjection};
use crate::nn::init;
use crate::nn::mlp::SwiGluMlp;
use crate::nn::projection::{PackedAdapters, PackedLinear, PackedSlots, Precision};
use crate::nn::rotary::RotaryEmbedding;
use crate::weights::{HostTensor, WeightSource, names};

impl CausalLm {
    /// Builds the model from a checkpoint with f32 weights, checking every tensor's presence and
    /// shape.
    pub fn from_source(config: &ModelConfig, source: &dyn WeightSource, device: &Device) -> Result<Self> {
        Self::from_source_with(config, source, device, Precision::F32)
    }

    /// Builds the model, storing projections as `precision` says (see [`Precision`]): packed
    /// where allowed, f32 otherwise.
    pub fn from_source_with(config: &ModelConfig, source: &dyn WeightSource, device: &Device, precision: Precision) -> Result<Self> {
        let packs = precision.packs_on(device);
        if let Precision::Quantize(to) = precision
            && !packs
        {
            return Err(ModelError::invalid(format!(
                "--quantize {to:?} needs the CPU or a wgpu device, without autodiff (the quantized kernels run there); \
                 drop --quantize or use --device cpu"
            )));
        }
        config.validate(source.origin())?;
        let d = config.hidden_size;
        let read = |name: &str, expected: &[usize]| -> Result<HostTensor> {
            let found = source.shape(name).ok_or_else(|| ModelError::MissingTensor {
                origin: source.origin().clone(),
                tensor: name.to_string(),
                architecture: config.architecture.model_type().to_string(),
            })?;
            if found != expected {
                return Err(ModelError::ShapeMismatch {
                    origin: source.origin_of(name),
                    tensor: name.to_string(),
                    expected: expected.to_vec(),
                    found,
                });
            }
            source.read(name)
        };
        // A 2-D weight packed as `precision` asks, or `None` to load it f32.
        let packed = |name: &str, shape: &[usize]| -> Result<Option<PackedMatrix>> {
            if !packs {
                return Ok(None);
            }
            let stored = source.storage_type(name).unwrap_or_default();
            match precision {
                Precision::Quantize(to) => {
                    if !matches!(stored.as_str(), "F32" | "F16" | "BF16") {
                        return Err(ModelError::invalid(format!(
                            "{}: tensor `{name}` is already quantized ({stored}); --quantize takes f32/f16/bf16 checkpoints \
                             (a quantized checkpoint runs on its own blocks without it)",
                            source.origin_of(name)
                        )));
                    }
                    let values = read(name, shape)?;
                    PackedMatrix::quantize(to, shape[0], shape[1], &values.data)
                        .map(Some)
                        .map_err(|e| ModelError::invalid(format!("{}: tensor `{name}` ({stored}): {e}", source.origin_of(name))))
                }
                _ => source.read_packed(name),
            }
        };
        let projection = |layer: usize, kind: LinearKind| -> Result<StoredProjection> {
            let prefix = names::layer(layer, kind.hf_path());
            let name = format!("{prefix}.weight");
            let shape = kind.shape(config);
            let bias = if kind.has_bias(config) { Some(read(&format!("{prefix}.bias"), &[shape[0]])?) } else { None };
            if source.shape(&name).as_deref() == Some(&shape[..])
                && let Some(weight) = packed(&name, &shape)?
            {
                return Ok(StoredProjection::Packed(Arc::new(PackedLinear::new(weight, bias.map(|b| b.data), device)?)));
            }
            Ok(StoredProjection::Dense(init::linear(read(&name, &shape)?, bias, device)))
        };

        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let norm = |rest: &str| -> Result<_> { Ok(init::rms_norm(read(&names::layer(i, rest), &[d])?, config.rms_norm_eps, device)) };
            let mut layer = DecoderLayer {
                input_layernorm: norm("input_layernorm.weight")?,
                self_attn: SelfAttention {
                    q_proj: None,
                    k_proj: None,
                    v_proj: None,
                    o_proj: None,
                    packed: PackedSlots::default(),
                    packed_lora: PackedAdapters::none(),
                    num_heads: config.num_attention_heads,
                    num_kv_heads: config.num_key_value_heads,
                    head_dim: config.head_dim,
                },
                post_attention_layernorm: norm("post_attention_layernorm.weight")?,
                mlp: SwiGluMlp {
                    gate_proj: None,
                    up_proj: None,
                    down_proj: None,
                    packed: PackedSlots::default(),
                    packed_lora: PackedAdapters::none(),
                },
            };
            for kind in LinearKind::ALL {
                layer.set_projection(kind, projection(i, kind)?);
            }
            layers.push(layer);
        }
        // The head is the largest matrix a decoding step reads: packed too when allowed.
        let head_name = if config.tie_word_embeddings { names::EMBED } else { names::LM_HEAD };
        let packed_head = match if precision.packs_head() { packed(head_name, &[config.vocab_size, d])? } else { None } {
            Some(weight) => Some(Arc::new(PackedLinear::new(weight, None, device)?)),
            None => None,
        };
        // Tied to a packed head, the embedding's f32 table is built only if something reads it
        // (lookups gather packed rows); it then holds the packed values, as every path does.
        let embed_tokens = match (&packed_head, config.tie_word_embeddings) {
            (Some(head), true) => init::embedding_from_packed(head.clone(), device),
            _ => init::embedding(read(names::EMBED, &[config.vocab_size, d])?, device),
        };
        let mut lm_head = if config.tie_word_embeddings {
            None
        } else {
            Some(init::linear(read(names::LM_HEAD, &[config.vocab_size, d])?, None, device))
        };
        // Quantized at load, an untied head's f32 twin (large batches, export) holds the quantized
        // values too, so every path uses the same weights. (A GGUF's twin is its own blocks
        // dequantised already.)
        if let (Precision::Quantize(_), Some(head), Some(linear)) = (precision, &packed_head, &mut lm_head) {
            let values = Tensor::<2>::from_data(TensorData::new(head.weight.dequantize(), [config.vocab_size, d]), device);
            linear.weight = burn::module::Param::from_tensor(values.transpose());
        }
        Ok(CausalLm {
            embed_tokens,
            layers,
            norm: init::rms_norm(read(names::FINAL_NORM, &[d])?, config.rms_norm_eps, device),
            lm_head,
            packed_head,
            config: config.clone(),
            rope: RotaryEmbedding::new(config),
            dense_products: Products::F32,
            checkpoint_layers: false,
        })
    }

    /// Every parameter under its HF name and in HF layout, read back to the host (through
    /// [`crate::readback`]; native only, like the export that needs it).
    #[cfg(not(target_family = "wasm"))]
    pub fn to_hf_tensors(&self) -> Result<Vec<(String, HostTensor)>> {
        use crate::nn::projection::Weights;
        use crate::readback::{block_on, to_vec_f32};
        fn host<const D: usize>(t: Tensor<D>) -> Result<HostTensor> {
            let dims = t.dims().to_vec();
            Ok(HostTensor::new(dims, block_on(to_vec_f32(t))?))
        }
        let host2 = host::<2>;
        let host1 = host::<1>;
        let linear = |prefix: String, layer: &DecoderLayer, kind: LinearKind, out: &mut Vec<(String, HostTensor)>| -> Result<()> {
            let dense;
            let l = match layer.weights(kind)? {
                Weights::Dense(l) => l,
                // A LoRA adapter on a packed base exports merged, as a dense weight's does.
                Weights::Packed(p, adapter) => {
                    dense = crate::nn::projection::merged_dense(p, adapter, &self.device());
                    &dense
                }
            };
            out.push((format!("{prefix}.weight"), host2(l.weight.val().transpose())?));
            if let Some(b) = &l.bias {
                out.push((format!("{prefix}.bias"), host1(b.val())?));
            }
            Ok(())
        };
        let mut out = vec![(names::EMBED.to_string(), host2(self.embed_tokens.weight.val())?)];
        for (i, layer) in self.layers.iter().enumerate() {
            let p = |rest: &str| names::layer(i, rest);
            out.push((p("input_layernorm.weight"), host1(layer.input_layernorm.gamma.val())?));
            out.push((p("post_attention_layernorm.weight"), host1(layer.post_attention_layernorm.gamma.val())?));
            for kind in LinearKind::ALL {
                linear(p(kind.hf_path()), layer, kind, &mut out)?;
            }
        }
        out.push((names::FINAL_NORM.to_string(), host1(self.norm.gamma.val())?));
        if let Some(head) = &self.lm_head {
            out.push((names::LM_HEAD.to_string(), host2(head.weight.val().transpose())?));
        }
        Ok(out)
    }
}
