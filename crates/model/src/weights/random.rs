//! Randomly initialised weights for a config: HF's initialisation (normal with std
//! `initializer_range`, biases zero, norms one). Used for students trained from scratch (the
//! lab's distillation room) and for test fixtures.

use rosetta_rng::SplitMix64;

use super::{HostTensor, WeightSource, names};
use crate::config::ModelConfig;
use crate::error::{ModelError, Origin, Result};

pub struct RandomWeights {
    origin: Origin,
    tensors: std::collections::BTreeMap<String, HostTensor>,
}

impl RandomWeights {
    pub fn new(config: &ModelConfig, seed: u64, std: f32) -> Self {
        let mut rng = SplitMix64::new(seed);
        let mut tensors = std::collections::BTreeMap::new();
        let mut add = |name: String, shape: Vec<usize>, fill: Option<f32>, rng: &mut SplitMix64| {
            let n: usize = shape.iter().product();
            let data = match fill {
                Some(v) => vec![v; n],
                None => (0..n).map(|_| rng.normal() * std).collect(),
            };
            tensors.insert(name, HostTensor::new(shape, data));
        };
        let d = config.hidden_size;
        let q = config.num_attention_heads * config.head_dim;
        let kv = config.num_key_value_heads * config.head_dim;
        add(names::EMBED.into(), vec![config.vocab_size, d], None, &mut rng);
        if !config.tie_word_embeddings {
            add(names::LM_HEAD.into(), vec![config.vocab_size, d], None, &mut rng);
        }
        add(names::FINAL_NORM.into(), vec![d], Some(1.0), &mut rng);
        for i in 0..config.num_hidden_layers {
            let p = |rest: &str| names::layer(i, rest);
            add(p("input_layernorm.weight"), vec![d], Some(1.0), &mut rng);
            add(p("post_attention_layernorm.weight"), vec![d], Some(1.0), &mut rng);
            let projections = [
                ("self_attn.q_proj", q, d, config.qkv_bias),
                ("self_attn.k_proj", kv, d, config.qkv_bias),
                ("self_attn.v_proj", kv, d, config.qkv_bias),
                ("self_attn.o_proj", d, q, config.o_bias),
                ("mlp.gate_proj", config.intermediate_size, d, config.mlp_bias),
                ("mlp.up_proj", config.intermediate_size, d, config.mlp_bias),
                ("mlp.down_proj", d, config.intermediate_size, config.mlp_bias),
            ];
            for (name, out, inp, bias) in projections {
                add(p(&format!("{name}.weight")), vec![out, inp], None, &mut rng);
                if bias {
                    add(p(&format!("{name}.bias")), vec![out], Some(0.0), &mut rng);
                }
            }
        }
        RandomWeights { origin: Origin(format!("random init (seed {seed})")), tensors }
    }
}

impl WeightSource for RandomWeights {
    fn origin(&self) -> &Origin {
        &self.origin
    }

    fn names(&self) -> Vec<String> {
        self.tensors.keys().cloned().collect()
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.tensors.get(name).map(|t| t.shape.clone())
    }

    fn storage_type(&self, name: &str) -> Option<String> {
        self.tensors.contains_key(name).then(|| "F32".to_string())
    }

    fn read(&self, name: &str) -> Result<HostTensor> {
        self.tensors.get(name).cloned().ok_or_else(|| ModelError::MissingTensor {
            origin: self.origin.clone(),
            tensor: name.to_string(),
            architecture: "random".into(),
        })
    }
}
