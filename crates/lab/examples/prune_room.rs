//! Times the features room's sparsity change natively (flex, the worker's CPU path) on a real
//! checkpoint kept as the worker keeps it: calibration, Wanda masks, and each language's
//! bits per character, step by step (`reports/lab/README.md`).
//!
//!   cargo run --release -p rosetta-lab --example prune_room -- MODEL.gguf [SPARSITY]
use std::time::Instant;

use rosetta_data::corpus::CorpusDir;
use rosetta_lab::features::pruned_bits_per_char;
use rosetta_lab::manifest::{ManifestOptions, build};
use rosetta_model::burn::prelude::Device;
use rosetta_model::readback::block_on;
use rosetta_model::{Checkpoint, Precision};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: prune_room MODEL.gguf [SPARSITY]")?;
    let sparsity: f32 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(0.5);
    let manifest = build(&CorpusDir::embedded(), &ManifestOptions::default())?;
    let checkpoint = Checkpoint::open(std::path::Path::new(&path), None)?;
    let model = checkpoint.load_with(&Device::flex(), Precision::Auto)?;
    let texts: Vec<(String, Vec<&str>)> =
        manifest.langs.iter().map(|l| (l.clone(), manifest.sentences(l).into_iter().take(8).collect())).collect();
    let started = Instant::now();
    let mut last = 0.0;
    let out = block_on(pruned_bits_per_char(
        &model,
        &checkpoint.tokenizer,
        &manifest.translation_prompts,
        sparsity,
        &texts,
        || async {},
        |f| {
            let now = started.elapsed().as_secs_f64();
            println!("{:>5.1} %  +{:.2} s", f * 100.0, now - last);
            last = now;
        },
    ))?;
    println!("{out:?} in {:.2} s", started.elapsed().as_secs_f64());
    Ok(())
}
