//! Loading [`CausalLm`] from a checkpoint's tensors and handing them back for export, both under
//! HF names and in HF layout. Every projection is built and exported through [`LinearKind`], so
//! the seven projections are named in one place (`LinearKind::hf_path`).

use burn::nn::Linear;
use burn::prelude::*;

use super::CausalLm;
use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::intervention::LinearKind;
use crate::nn::attention::SelfAttention;
use crate::nn::decoder_layer::DecoderLayer;
use crate::nn::init;
use crate::nn::mlp::SwiGluMlp;
use crate::nn::rotary::RotaryEmbedding;
use crate::weights::{HostTensor, WeightSource, names};

impl CausalLm {
    /// Builds the model from a checkpoint, checking every tensor's presence and shape.
    pub fn from_source(config: &ModelConfig, source: &dyn WeightSource, device: &Device) -> Result<Self> {
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
        let projection = |layer: usize, kind: LinearKind| -> Result<Linear> {
            let prefix = names::layer(layer, kind.hf_path());
            let weight = read(&format!("{prefix}.weight"), &kind.shape(config))?;
            let bias = if kind.has_bias(config) { Some(read(&format!("{prefix}.bias"), &[kind.shape(config)[0]])?) } else { None };
            Ok(init::linear(weight, bias, device))
        };

        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let norm = |rest: &str| -> Result<_> { Ok(init::rms_norm(read(&names::layer(i, rest), &[d])?, config.rms_norm_eps, device)) };
            layers.push(DecoderLayer {
                input_layernorm: norm("input_layernorm.weight")?,
                self_attn: SelfAttention {
                    q_proj: projection(i, LinearKind::QProj)?,
                    k_proj: projection(i, LinearKind::KProj)?,
                    v_proj: projection(i, LinearKind::VProj)?,
                    o_proj: projection(i, LinearKind::OProj)?,
                    num_heads: config.num_attention_heads,
                    num_kv_heads: config.num_key_value_heads,
                    head_dim: config.head_dim,
                },
                post_attention_layernorm: norm("post_attention_layernorm.weight")?,
                mlp: SwiGluMlp {
                    gate_proj: projection(i, LinearKind::GateProj)?,
                    up_proj: projection(i, LinearKind::UpProj)?,
                    down_proj: projection(i, LinearKind::DownProj)?,
                },
            });
        }
        let embed_tokens = init::embedding(read(names::EMBED, &[config.vocab_size, d])?, device);
        let lm_head = if config.tie_word_embeddings {
            None
        } else {
            Some(init::linear(read(names::LM_HEAD, &[config.vocab_size, d])?, None, device))
        };
        Ok(CausalLm {
            embed_tokens,
            layers,
            norm: init::rms_norm(read(names::FINAL_NORM, &[d])?, config.rms_norm_eps, device),
            lm_head,
            config: config.clone(),
            rope: RotaryEmbedding::new(config),
        })
    }

    /// Every parameter under its HF name and in HF layout, read back to the host (through
    /// [`crate::readback`]; native only, like the export that needs it).
    #[cfg(not(target_family = "wasm"))]
    pub fn to_hf_tensors(&self) -> Result<Vec<(String, HostTensor)>> {
        use crate::readback::{block_on, to_vec_f32};
        fn host<const D: usize>(t: Tensor<D>) -> Result<HostTensor> {
            let dims = t.dims().to_vec();
            Ok(HostTensor::new(dims, block_on(to_vec_f32(t))?))
        }
        let host2 = host::<2>;
        let host1 = host::<1>;
        let linear = |prefix: String, l: &Linear, out: &mut Vec<(String, HostTensor)>| -> Result<()> {
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
                linear(p(kind.hf_path()), layer.projection(kind), &mut out)?;
            }
        }
        out.push((names::FINAL_NORM.to_string(), host1(self.norm.gamma.val())?));
        if let Some(head) = &self.lm_head {
            out.push((names::LM_HEAD.to_string(), host2(head.weight.val().transpose())?));
        }
        Ok(out)
    }
}
