//! `rosetta info`: what a checkpoint is.

use anyhow::Result;
use serde_json::json;

use crate::model_args::ModelArgs;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let checkpoint = args.model.open()?;
    let c = &checkpoint.config;
    let t = &checkpoint.tokenizer;
    let tokenizer_json: serde_json::Value = serde_json::from_str(&t.to_json()?)?;
    let tokenizer_model = tokenizer_json["model"]["type"].as_str().unwrap_or("?").to_string();
    let byte_level = t.to_json()?.contains("\"ByteLevel\"");
    let storage = checkpoint.storage_summary();
    if args.json {
        let value = json!({
            "model": checkpoint.origin.0,
            "format": checkpoint.format,
            "config": c,
            "parameters": c.num_parameters(),
            "storage": storage,
            "tokenizer": {
                "model": tokenizer_model,
                "byte_level": byte_level,
                "vocab_size": t.vocab_size(),
                "bos": t.bos_token, "eos": t.eos_token,
                "add_bos": t.add_bos_token,
                "chat_template": t.chat_template.is_some(),
            },
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    let storage_text = storage.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", ");
    println!("model         {} ({:?})", checkpoint.origin, checkpoint.format);
    println!("architecture  {} ({})", c.architecture.model_type(), c.architecture.hf_class());
    println!("parameters    {:.1} M", c.num_parameters() as f64 / 1e6);
    println!(
        "shape         {} layers, hidden {}, MLP {}, {} heads ({} KV, head dim {})",
        c.num_hidden_layers, c.hidden_size, c.intermediate_size, c.num_attention_heads, c.num_key_value_heads, c.head_dim
    );
    println!(
        "vocabulary    {} rows, head {}, context {} tokens",
        c.vocab_size,
        if c.tie_word_embeddings { "tied to the embedding" } else { "separate" },
        c.max_position_embeddings
    );
    println!(
        "rope          theta {}, scaling {}",
        c.rope_theta,
        match &c.rope_scaling {
            None => "none".to_string(),
            Some(s) => format!("{s:?}").chars().take(100).collect(),
        }
    );
    println!("bias          qkv {}, o {}, mlp {}", c.qkv_bias, c.o_bias, c.mlp_bias);
    println!("storage       {storage_text}");
    println!(
        "tokenizer     {}{} with {} tokens; bos {:?}, eos {:?}, adds bos: {}, chat template: {}",
        tokenizer_model,
        if byte_level { " (byte-level)" } else { "" },
        t.vocab_size(),
        t.bos_token.as_deref().unwrap_or("-"),
        t.eos_token.as_deref().unwrap_or("-"),
        t.add_bos_token,
        if t.chat_template.is_some() { "yes" } else { "no" }
    );
    Ok(())
}
