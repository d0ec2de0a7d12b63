//! `rosetta bench lab`: the web lab's rooms as a visitor meets them, natively on any device — the
//! functions the page's worker runs (`rosetta-lab`), with the worker's sizes: loading the model,
//! "Measure speed", the shift room's geometry and a strength change (the next-token view, then the
//! sentences' bits per character), the features room, and a sparsity change (Wanda calibration,
//! masks, each language's bits per character). On a GPU machine `--device wgpu` is the lab's model
//! on WebGPU's native implementation (`scripts/gpu/run.sh`): the nearest measurement of the page on
//! that GPU where the machine has no browser. The browser's own numbers come from
//! `tests/browser/lab.bench.mjs`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use rosetta_data::corpus::CorpusDir;
use rosetta_lab::features::{magnitudes, pruned_bits_per_char, scored_texts};
use rosetta_lab::manifest::{ManifestOptions, build};
use rosetta_lab::shift::{SHIFT_SENTENCES, ShiftBase, compute_geometry, next_token_view, plan};
use rosetta_lab::speed::measure_speed;
use rosetta_model::Interventions;
use rosetta_model::readback::block_on;
use serde_json::json;

use crate::model_args::ModelArgs;
use crate::output::{progress, table, write_json};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// The language the shift moves toward English (default: the first of the manifest's other
    /// languages, as the page opens).
    #[arg(long)]
    lang: Option<String>,
    /// The shift strength the strength change moves to (the page's slider, from 0).
    #[arg(long, default_value_t = 1.0)]
    strength: f32,
    /// The sparsity the sparsity change moves to (the page's slider, from 0).
    #[arg(long, default_value_t = 0.5)]
    sparsity: f32,
    #[arg(long)]
    json: Option<PathBuf>,
}

/// What the run has measured so far: the JSON (rewritten after every step, so that a run stopped
/// by a time limit — the GPU run bounds each step — keeps what it finished) and the table's rows.
struct Report {
    path: Option<PathBuf>,
    json: serde_json::Map<String, serde_json::Value>,
    rows: Vec<Vec<String>>,
    device: String,
    bar: indicatif::ProgressBar,
}

impl Report {
    fn record(&mut self, fields: serde_json::Value, step: &str, result: String) -> Result<()> {
        if let serde_json::Value::Object(fields) = fields {
            self.json.extend(fields);
        }
        // Also on stderr as it happens (a log without a terminal shows no progress bar), with the
        // bar stepped aside while the line is written.
        self.bar.suspend(|| eprintln!("{step}: {result}"));
        self.rows.push(vec![self.device.clone(), step.to_string(), result]);
        match &self.path {
            Some(path) => write_json(path, &serde_json::Value::Object(self.json.clone())),
            None => Ok(()),
        }
    }
}

/// Seconds since `since`.
fn seconds(since: Instant) -> f64 {
    since.elapsed().as_secs_f64()
}

pub fn run(args: Args) -> Result<()> {
    let started = Instant::now();
    let (checkpoint, model) = args.model.load()?;
    let load_seconds = seconds(started);
    let tokenizer = &checkpoint.tokenizer;
    let manifest = build(&CorpusDir::embedded(), &ManifestOptions::default()).map_err(anyhow::Error::msg).context("the lab's manifest")?;
    let lang = match &args.lang {
        Some(lang) if manifest.langs.contains(lang) => lang.clone(),
        Some(lang) => {
            anyhow::bail!("the lab serves no {lang} sentences (it has {}): pick one of those with --lang", manifest.langs.join(", "))
        }
        None => manifest
            .langs
            .iter()
            .find(|l| **l != manifest.english)
            .cloned()
            .context("the lab's manifest has no language besides English")?,
    };
    let pause = || async {};
    let device = format!("{:?}", args.model.device);
    let bar = progress(5, "lab rooms");
    let mut report =
        Report { path: args.json.clone(), json: serde_json::Map::new(), rows: Vec::new(), device: device.clone(), bar: bar.clone() };
    report.record(
        json!({"model": checkpoint.origin.0, "device": device, "precision": format!("{:?}", args.model.precision), "load_seconds": load_seconds}),
        "model ready",
        format!("{load_seconds:.2} s"),
    )?;

    bar.set_message("Measure speed");
    let speed = block_on(measure_speed(&model))?;
    report.record(
        json!({"forward_tokens_per_second": speed.forward, "decode_tokens_per_second": speed.decode}),
        "forward, batch 1 × 64 / decode, batch 1",
        format!("{:.0} / {:.1} tokens/s", speed.forward, speed.decode),
    )?;
    bar.inc(1);

    bar.set_message("geometry");
    let t = Instant::now();
    let per_lang = SHIFT_SENTENCES.min(manifest.parallel.len());
    let geometry = block_on(compute_geometry(&model, tokenizer, &manifest, per_lang, pause, |_| {}))?;
    let plan = plan(&geometry)?;
    let geometry_seconds = seconds(t);
    report.record(
        json!({"geometry_seconds": geometry_seconds}),
        &format!("geometry, {} languages × {per_lang}", manifest.langs.len()),
        format!("{geometry_seconds:.2} s"),
    )?;
    bar.inc(1);

    // What the page computes once per language (and keeps) before the first strength change: the
    // unshifted next-token view and bits per character. Not timed, as the page's change is not.
    bar.set_message("strength change");
    let texts: Vec<&str> = manifest.sentences(&lang).into_iter().take(per_lang).collect();
    let first = *texts.first().context("the lab's manifest has no sentences")?;
    let one = block_on(ShiftBase::new(&model, tokenizer, &plan, &[first], pause))?;
    let base = block_on(ShiftBase::new(&model, tokenizer, &plan, &texts, pause))?;
    let base_bits_per_char = block_on(base.bits_per_char(&model, &Interventions::none(), pause))?;
    let interventions = plan.scaled_interventions(&lang, args.strength, &model.device())?;
    let t = Instant::now();
    let view = block_on(next_token_view(&model, tokenizer, &one, &interventions, 8))?;
    let next_token_seconds = seconds(t);
    let shifted_bits_per_char = block_on(base.bits_per_char(&model, &interventions, pause))?;
    let bits_per_char_seconds = seconds(t);
    report.record(
        json!({"shift": {
            "lang": lang,
            "strength": args.strength,
            "sentences": per_lang,
            "next_token_seconds": next_token_seconds,
            "bits_per_char_seconds": bits_per_char_seconds,
            "bits_per_char": [base_bits_per_char, shifted_bits_per_char],
            "next_token_top": view.top.first().map(|(token, p)| json!([token, p])),
        }}),
        &format!("strength 0 → {} ({lang}): next-token view, then bits/char of {per_lang} sentences", args.strength),
        format!("{next_token_seconds:.2} s, {bits_per_char_seconds:.2} s"),
    )?;
    bar.inc(1);

    bar.set_message("features");
    let t = Instant::now();
    block_on(magnitudes(&model, tokenizer, "translation", &manifest.translation_prompts))?;
    block_on(magnitudes(&model, tokenizer, "monolingual", &manifest.monolingual_prompts))?;
    let texts = scored_texts(&manifest);
    let dense = block_on(pruned_bits_per_char(&model, tokenizer, &manifest.translation_prompts, 0.0, &texts, pause, |_| {}))?;
    let features_seconds = seconds(t);
    report.record(json!({"features_seconds": features_seconds}), "features room", format!("{features_seconds:.2} s"))?;
    bar.inc(1);

    bar.set_message("sparsity change");
    let t = Instant::now();
    let pruned = block_on(pruned_bits_per_char(&model, tokenizer, &manifest.translation_prompts, args.sparsity, &texts, pause, |_| {}))?;
    let sparsity_seconds = seconds(t);
    report.record(
        json!({"sparsity": {
            "sparsity": args.sparsity,
            "seconds": sparsity_seconds,
            "dense_bits_per_char": dense,
            "pruned_bits_per_char": pruned,
        }}),
        &format!("sparsity 0 → {}", args.sparsity),
        format!("{sparsity_seconds:.2} s"),
    )?;
    bar.finish_and_clear();
    println!("{}", table(&["the lab on", "step", "result"], &report.rows));
    Ok(())
}
