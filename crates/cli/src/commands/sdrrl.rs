//! `rosetta sdrrl`: self-distillation from the resource-rich language (Zhang et al., ACL 2024) —
//! build the transfer set from the model's own English answers, fine-tune on it with the
//! trainer's SFT, and compare models on an answer-quality proxy.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use indicatif::ProgressBar;
use rosetta_data::corpus::CorpusDir;
use rosetta_data::instruction::read_instructions;
use rosetta_data::{BadLines, ParallelCorpus};
use rosetta_model::Checkpoint;
use rosetta_model::choice::choice_logprobs_blocking;
use rosetta_model::tokenizer::chat::{CHATML, ChatMessage, render};
use rosetta_sdrrl::langid::LanguageId;
use rosetta_sdrrl::{Answers, BuildInputs, Interrupt, Kind, SdrrlConfig, Shares, build};
use rosetta_train::TrainConfig;
use serde_json::json;

use crate::commands::train::run_config;
use crate::model_args::{ModelArgs, default_model_path};
use crate::output::{progress, table, write_json};

#[derive(clap::Subcommand, Debug)]
pub enum SdrrlCommand {
    /// Build the transfer set: the model's English answers, their translations, code-switched
    /// and completion variants, parallel pairs — resumable, filtered, in the configured shares.
    Build(BuildArgs),
    /// SFT on a transfer set (full or LoRA) through the trainer.
    Train(TrainArgs),
    /// Answer-quality proxies per model: likelihood of reference English answers and of human
    /// reference translations into each target.
    Eval(EvalArgs),
}

pub fn run(command: SdrrlCommand) -> Result<()> {
    match command {
        SdrrlCommand::Build(args) => run_build(args),
        SdrrlCommand::Train(args) => run_train(args),
        SdrrlCommand::Eval(args) => run_eval(args),
    }
}

#[derive(clap::Args, Debug)]
pub struct BuildArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Instruction JSONL (`{"instruction", "response"}`, Alpaca or ShareGPT); default: the
    /// embedded English instructions (chatterbot-corpus).
    #[arg(long)]
    instructions: Option<PathBuf>,
    #[arg(long, default_value = "en")]
    source_lang: String,
    #[arg(long, value_delimiter = ',', required_unless_present = "config")]
    targets: Vec<String>,
    /// A TOML build config (`rosetta_sdrrl::SdrrlConfig`); flags given override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// `translate`: the translate-then-SFT baseline (reference answers, translated; no
    /// self-distillation, no code-switching or completions).
    #[arg(long, value_parser = ["translate"])]
    baseline: Option<String>,
    #[arg(long)]
    max_instructions: Option<usize>,
    #[arg(long)]
    max_new_tokens: Option<usize>,
    #[arg(long)]
    batch_size: Option<usize>,
    /// External translations instead of the model's own.
    #[arg(long)]
    translations: Option<PathBuf>,
    /// Parallel JSONL for shots, lexicon and parallel pairs (default: embedded training split).
    #[arg(long)]
    parallel: Option<PathBuf>,
    #[arg(long)]
    out: PathBuf,
}

/// Stage bars for the build.
fn stage_progress() -> impl FnMut(&str, usize, usize) {
    let mut bar: Option<(String, ProgressBar)> = None;
    move |stage: &str, done: usize, total: usize| {
        if bar.as_ref().is_none_or(|(s, _)| s != stage) {
            if let Some((_, b)) = bar.take() {
                b.finish_and_clear();
            }
            bar = Some((stage.to_string(), progress(total as u64, stage)));
        }
        if let Some((_, b)) = &bar {
            b.set_position(done as u64);
            if done >= total {
                b.finish_and_clear();
            }
        }
    }
}

fn language_id(corpus: &CorpusDir) -> Result<LanguageId> {
    let docs = corpus.read_monolingual_train()?;
    Ok(LanguageId::train(docs.iter().map(|d| (d.lang.as_str(), d.text.as_str()))))
}

fn run_build(args: BuildArgs) -> Result<()> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            toml::from_str::<SdrrlConfig>(&text).with_context(|| format!("{}: invalid SDRRL config", path.display()))?
        }
        None => SdrrlConfig::new(&args.source_lang, &args.targets),
    };
    if !args.targets.is_empty() {
        config.targets = args.targets.clone();
    }
    if args.baseline.is_some() {
        config.answers = Answers::Reference;
        config.shares = Shares::translate_baseline();
    }
    config.max_instructions = args.max_instructions.or(config.max_instructions);
    config.max_new_tokens = args.max_new_tokens.unwrap_or(config.max_new_tokens);
    config.batch_size = args.batch_size.unwrap_or(config.batch_size);
    config.translations = args.translations.clone().or(config.translations.clone());
    config.parallel = args.parallel.clone().or(config.parallel.clone());
    let corpus = CorpusDir::embedded();
    let instructions_path = args.instructions.clone().unwrap_or_else(|| corpus.instructions_train());
    let (instructions, skipped) = read_instructions(&instructions_path, Some(&config.source_lang), BadLines::Fail)?;
    if skipped.skipped > 0 {
        eprintln!("skipped {} bad lines of {}", skipped.skipped, instructions_path.display());
    }
    let parallel_path = config.parallel.clone().unwrap_or_else(|| corpus.parallel_train());
    let (parallel, _) = ParallelCorpus::read(&parallel_path, BadLines::Fail)?;
    let (checkpoint, model) = args.model.load()?;
    let langid = language_id(&corpus)?;
    let inputs = BuildInputs { instructions: &instructions, parallel: &parallel, langid: &langid, model_name: checkpoint.origin.0.clone() };
    let mut bars = stage_progress();
    let stats = build(&model, &checkpoint.tokenizer, &inputs, &config, &args.out, Interrupt::default(), &mut bars)
        .with_context(|| format!("building the transfer set in {}", args.out.display()))?;

    let rows: Vec<Vec<String>> = Kind::ALL
        .iter()
        .map(|k| {
            vec![k.name().to_string(), stats.available[k.name()].to_string(), stats.written.get(k.name()).copied().unwrap_or(0).to_string()]
        })
        .collect();
    println!("{} instructions → {}", stats.instructions, stats.transfer.display());
    println!("{}", table(&["kind", "candidates", "written"], &rows));
    println!("dropped: {}", stats.skipped);
    if !stats.missing.is_empty() {
        println!("warning: no candidates survived for {}; the other kinds keep their shares", stats.missing.join(", "));
    }
    for (stage, g) in &stats.generation {
        if g.prompts > 0 {
            println!(
                "{stage}: {} prompts, {} new tokens in {:.1} s ({:.1} tokens/s, batch {})",
                g.prompts,
                g.new_tokens,
                g.seconds,
                g.tokens_per_second(),
                g.batch_size
            );
        }
    }
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// The build directory (its transfer.jsonl) or a transfer.jsonl.
    #[arg(long)]
    transfer: PathBuf,
    /// The model to fine-tune (default: SmolLM2-135M-Instruct).
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 40)]
    steps: usize,
    #[arg(long, default_value_t = 4)]
    batch_size: usize,
    #[arg(long, default_value_t = 256)]
    seq_len: usize,
    #[arg(long, default_value_t = 1e-4)]
    lr: f64,
    /// LoRA rank (0: full fine-tuning).
    #[arg(long, default_value_t = 0)]
    lora_rank: usize,
    /// Languages whose held-out bits/char are tracked.
    #[arg(long, value_delimiter = ',', default_value = "hu,en")]
    eval_langs: Vec<String>,
    #[arg(long)]
    resume: bool,
    /// Training device (`cpu`, `wgpu`, `cuda`).
    #[arg(long, default_value = "cpu")]
    device: String,
}

fn toml_path(p: &Path) -> String {
    p.display().to_string().replace('\\', "\\\\").replace('"', "\\\"")
}

fn run_train(args: TrainArgs) -> Result<()> {
    let transfer = if args.transfer.is_dir() { args.transfer.join("transfer.jsonl") } else { args.transfer.clone() };
    anyhow::ensure!(transfer.exists(), "{} has no transfer set; run `rosetta sdrrl build` first", args.transfer.display());
    // The config sits next to the run; absolute paths keep it valid wherever it is read from.
    let transfer = std::path::absolute(&transfer)?;
    let out = std::path::absolute(&args.out)?;
    let model = match &args.model {
        Some(spec) => rosetta_model::hub::resolve(spec, &rosetta_model::hub::HubSettings::from_env())?,
        None => default_model_path(),
    };
    let model = std::path::absolute(model)?;
    let corpus = CorpusDir::embedded();
    let lora =
        if args.lora_rank > 0 { format!("\n[lora]\nrank = {}\nalpha = {}\n", args.lora_rank, 2 * args.lora_rank) } else { String::new() };
    let text = format!(
        r#"# Written by `rosetta sdrrl train`: SFT on a transfer set.
[model]
path = "{model}"
devices = ["{device}"]

[data]
objective = "sft"
train = ["{train}"]
eval = "{eval}"
eval_langs = [{langs}]
eval_docs_per_lang = 60
seq_len = {seq}
batch_size = {batch}

[optim]
lr = {lr:e}
min_lr = {min_lr:e}
warmup_steps = 4
weight_decay = 0.1
grad_clip = 1.0

[run]
steps = {steps}
out = "{out}"
eval_every = {steps}
checkpoint_every = 20
keep_last = 1
{lora}"#,
        model = toml_path(&model),
        device = args.device,
        train = toml_path(&transfer),
        eval = toml_path(&corpus.monolingual_test()),
        langs = args.eval_langs.iter().map(|l| format!("\"{l}\"")).collect::<Vec<_>>().join(", "),
        seq = args.seq_len,
        batch = args.batch_size,
        lr = args.lr,
        min_lr = args.lr / 10.0,
        steps = args.steps,
        out = toml_path(&out),
    );
    let path = out.with_extension("toml");
    crate::output::write_result(&path, text.as_bytes())?;
    let config = TrainConfig::from_toml_file(&path)?;
    run_config(&config, args.resume)?;
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// Models as NAME=PATH.
    #[arg(long, value_delimiter = ',', required = true)]
    models: Vec<String>,
    /// Held-out English instructions with reference answers (default: the embedded test split).
    #[arg(long)]
    instructions: Option<PathBuf>,
    /// Held-out parallel JSONL for the target-language proxy (default: the embedded test split).
    #[arg(long)]
    parallel: Option<PathBuf>,
    #[arg(long, value_delimiter = ',', default_value = "hu")]
    targets: Vec<String>,
    /// Items per measure.
    #[arg(long, default_value_t = 60)]
    max_items: usize,
    /// Where eval.json goes.
    #[arg(long)]
    out: PathBuf,
}

/// Answer-quality proxies that need no model-made references: the mean log-probability per token
/// of (a) the reference answers of held-out English instructions (English retention) and (b) the
/// human reference translation of held-out English sentences given a translation instruction in
/// the chat template, per target.
fn run_eval(args: EvalArgs) -> Result<()> {
    let models: Vec<(String, PathBuf)> = args
        .models
        .iter()
        .map(|m| {
            m.split_once('=')
                .map(|(n, p)| (n.to_string(), PathBuf::from(p)))
                .ok_or_else(|| anyhow::anyhow!("--models: `{m}` is not NAME=PATH"))
        })
        .collect::<Result<_>>()?;
    let corpus = CorpusDir::embedded();
    let path = args.instructions.clone().unwrap_or_else(|| corpus.instructions_test());
    let (instructions, _) = read_instructions(&path, Some("en"), BadLines::Fail)?;
    let english: Vec<(String, String)> =
        instructions.iter().take(args.max_items).map(|r| (r.instruction.clone(), r.response.clone())).collect();
    let parallel_path = args.parallel.clone().unwrap_or_else(|| corpus.parallel_test());
    let (parallel, _) = ParallelCorpus::read(&parallel_path, BadLines::Fail)?;
    let mut translation: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for t in &args.targets {
        let langs = ["en".to_string(), t.clone()];
        let aligned = parallel.aligned(&langs).with_context(|| format!("{}", parallel_path.display()))?;
        let step = (aligned.len() / args.max_items.max(1)).max(1);
        let items = aligned
            .iter()
            .step_by(step)
            .take(args.max_items)
            .map(|(_, p)| (format!("Translate into {}:\n{}", rosetta_data::language_name(t), p[0]), p[1].to_string()))
            .collect();
        translation.insert(t.clone(), items);
    }
    let mut rows = Vec::new();
    let mut report = serde_json::Map::new();
    for (name, path) in &models {
        let checkpoint = Checkpoint::open(path, None)?;
        let model = checkpoint.load(&rosetta_model::DeviceKind::Cpu.device()?)?;
        let tokenizer = &checkpoint.tokenizer;
        let template = tokenizer.chat_template.clone().unwrap_or_else(|| CHATML.to_string());
        let bar = progress((english.len() + translation.values().map(Vec::len).sum::<usize>()) as u64, name);
        let mean = |pairs: &[(String, String)]| -> Result<f64> {
            let mut sum = 0.0;
            for (x, y) in pairs {
                let prompt = render(
                    &template,
                    &[ChatMessage::user(x.clone())],
                    true,
                    tokenizer.bos_token.as_deref(),
                    tokenizer.eos_token.as_deref(),
                )?;
                sum += choice_logprobs_blocking(&model, tokenizer, &prompt, &[y])?[0];
                bar.inc(1);
            }
            Ok(sum / pairs.len().max(1) as f64)
        };
        let en = mean(&english)?;
        let mut entry = json!({"en_answers": en});
        let mut row = vec![name.clone(), format!("{en:.3}")];
        for (t, items) in &translation {
            let value = mean(items)?;
            entry[format!("{t}_translation")] = json!(value);
            row.push(format!("{value:.3}"));
        }
        bar.finish_and_clear();
        report.insert(name.clone(), entry);
        rows.push(row);
    }
    let mut header = vec!["model".to_string(), "en answers".to_string()];
    header.extend(translation.keys().map(|t| format!("en→{t} reference")));
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    println!(
        "mean log-probability per token (nats; higher is better) of references: {} English answers, {} translations per target",
        english.len(),
        args.max_items
    );
    println!("{}", table(&header, &rows));
    write_json(
        &args.out.join("eval.json"),
        &json!({"instructions": path, "parallel": parallel_path, "items": args.max_items, "models": report}),
    )?;
    Ok(())
}
