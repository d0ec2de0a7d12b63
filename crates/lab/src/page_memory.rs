//! What a browser tab can hold, checked before the page reads or builds anything that would not
//! fit: a wasm32 module addresses at most 4 GiB, one `Vec` at most 2 GiB, and running out traps
//! the module (the page's model code dies with it). So a picked file's size is checked before it
//! is read (`File.size` is metadata), and a model's f32 footprint before it is built.

use rosetta_model::ModelConfig;

/// The most bytes one pick reads into the page: under wasm32's 2-GiB `Vec`, with room left for
/// the model built from them.
pub const MAX_PICKED_BYTES: u64 = 1536 << 20;

/// The most bytes a picked tokenizer (`tokenizer.json`) may have: the largest real ones are
/// ≈ 20 MB.
pub const MAX_TOKENIZER_BYTES: u64 = 64 << 20;

/// What the model may take in the page: its weights as f32 plus the file bytes held while it is
/// built, under wasm32's 4 GiB with room for activations and the page's own state.
pub const MODEL_BUDGET_BYTES: u64 = 3 << 30;

/// Refuses a pick whose files add up to more than `limit` bytes, naming the largest.
pub fn check_picked_sizes(files: &[(String, u64)], limit: u64) -> Result<(), String> {
    let total: u64 = files.iter().map(|(_, size)| size).sum();
    if total <= limit {
        return Ok(());
    }
    let largest = files.iter().max_by_key(|(_, size)| *size).map(|(name, size)| format!("{name}: {}", human_bytes(*size)));
    Err(format!(
        "the picked files hold {} ({}), more than this page can read (at most {}; a browser page runs WebAssembly in at most 4 GiB). \
         Nothing was read. Run this model natively with `rosetta`, or pick a smaller (quantized) one",
        human_bytes(total),
        largest.unwrap_or_default(),
        human_bytes(limit)
    ))
}

/// Bytes the page needs to build and hold `config`'s model from `file_bytes` of files: the
/// files while it is built, plus the weights — as f32, or, when `stays_quantized` (a quantized
/// file kept in its blocks), about the file's own blocks again plus the f32 tables a room may
/// build: the embedding table tied to a packed head, built on first read (large-batch logits), or
/// an untied embedding and its LM-head twin.
pub fn model_bytes_in_page(config: &ModelConfig, file_bytes: u64, stays_quantized: bool) -> u64 {
    let weights = if stays_quantized {
        let embedding = (config.vocab_size as u64).saturating_mul(config.hidden_size as u64).saturating_mul(4);
        let tables = if config.tie_word_embeddings { 1 } else { 2 };
        file_bytes.saturating_add(embedding.saturating_mul(tables))
    } else {
        config.num_parameters().saturating_mul(4)
    };
    weights.saturating_add(file_bytes)
}

/// Refuses a model the page could not hold, before any weight is built.
pub fn check_model_fits_page(config: &ModelConfig, file_bytes: u64, stays_quantized: bool) -> Result<(), String> {
    let needed = model_bytes_in_page(config, file_bytes, stays_quantized);
    if needed <= MODEL_BUDGET_BYTES {
        return Ok(());
    }
    let held = if stays_quantized { "its quantized weights and f32 embeddings" } else { "its weights as f32" };
    Err(format!(
        "this model needs about {} in the page ({} parameters: {held}, plus its files while it is built), more than a browser \
         page can give WebAssembly (at most {} of its 4 GiB). Run it natively with `rosetta`, or pick a smaller model",
        human_bytes(needed),
        config.num_parameters(),
        human_bytes(MODEL_BUDGET_BYTES)
    ))
}

/// The largest single weight as f32 bytes: what one WebGPU storage buffer must hold.
pub fn largest_weight_bytes(config: &ModelConfig) -> u64 {
    let d = config.hidden_size as u64;
    let widest = [config.vocab_size as u64, config.intermediate_size as u64, (config.num_attention_heads * config.head_dim) as u64]
        .into_iter()
        .max()
        .unwrap_or(0);
    widest * d * 4
}

pub fn human_bytes(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_over_the_limit_are_refused_before_reading() {
        let ok = [("config.json".to_string(), 700), ("model.safetensors".to_string(), 269 << 20)];
        assert!(check_picked_sizes(&ok, MAX_PICKED_BYTES).is_ok());
        let big = [("tokenizer.json".to_string(), 3 << 20), ("model-q8.gguf".to_string(), 3 << 30)];
        let err = check_picked_sizes(&big, MAX_PICKED_BYTES).unwrap_err();
        for says in ["model-q8.gguf: 3.0 GiB", "at most 1.5 GiB", "Nothing was read", "natively"] {
            assert!(err.contains(says), "{err:?} lacks {says:?}");
        }
    }

    #[test]
    fn the_default_model_fits_a_seven_billion_one_does_not() {
        let smollm2 = ModelConfig::from_hf_json(
            r#"{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 576, "intermediate_size": 1536,
                "num_attention_heads": 9, "num_key_value_heads": 3, "num_hidden_layers": 30, "vocab_size": 49152,
                "rms_norm_eps": 1e-5, "rope_theta": 100000.0, "tie_word_embeddings": true}"#,
            "config.json",
        )
        .unwrap();
        assert!(check_model_fits_page(&smollm2, 98 << 20, false).is_ok());
        // Kept quantized, SmolLM2 needs well under its f32 footprint (≈ 540 MB of weights).
        assert!(model_bytes_in_page(&smollm2, 98 << 20, true) < 450 << 20);
        let mut seven_b = smollm2.clone();
        (seven_b.hidden_size, seven_b.intermediate_size, seven_b.num_attention_heads) = (4096, 11008, 32);
        (seven_b.num_key_value_heads, seven_b.head_dim, seven_b.num_hidden_layers) = (32, 128, 32);
        for stays_quantized in [false, true] {
            let err = check_model_fits_page(&seven_b, 4 << 30, stays_quantized).unwrap_err();
            assert!(err.contains("natively") && err.contains("GiB"), "{err}");
        }
        // A 1B-class model in 4 bits fits kept quantized, not as f32.
        let mut one_b = seven_b.clone();
        (one_b.hidden_size, one_b.intermediate_size, one_b.num_hidden_layers, one_b.head_dim) = (2048, 5632, 22, 64);
        assert!(check_model_fits_page(&one_b, 640 << 20, true).is_ok());
        assert!(check_model_fits_page(&one_b, 640 << 20, false).is_err());
    }
}
