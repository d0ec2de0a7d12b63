//! `rosetta bench`: throughput measurements, written as JSON, with the PyTorch reference run
//! in the same invocation so the two numbers come from the same machine state.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};
use rosetta_model::TokenBatch;
use serde_json::{Value, json};
use std::time::Instant;

use crate::model_args::ModelArgs;
use crate::output::write_json;

#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Forward-pass tokens/s at the given batch sizes and sequence length.
    Forward(ForwardArgs),
    /// Training-step tokens/s (forward, loss, backward, AdamW), full and LoRA.
    Train(TrainArgs),
    /// The WGSL kernels against composed tensor ops (time, memory, bytes moved).
    Kernels(crate::commands::bench_kernels::Args),
}

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[arg(long, default_value_t = 4)]
    batch: usize,
    #[arg(long, default_value_t = 256)]
    seq: usize,
    #[arg(long, default_value_t = 3)]
    steps: usize,
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// LoRA rank of the LoRA measurement (alpha = 2 × rank, all seven projections).
    #[arg(long, default_value_t = 8)]
    lora_rank: usize,
    #[arg(long)]
    python: Option<PathBuf>,
    #[arg(long)]
    no_reference: bool,
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct ForwardArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    batch: Vec<usize>,
    #[arg(long, default_value_t = 128)]
    seq: usize,
    #[arg(long, default_value_t = 5)]
    iters: usize,
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Also time HF transformers (PyTorch eager, CPU) with this Python (default: the reference
    /// venv of scripts/setup-python.sh, if present).
    #[arg(long)]
    python: Option<PathBuf>,
    /// Skip the PyTorch reference.
    #[arg(long)]
    no_reference: bool,
    #[arg(long)]
    json: Option<PathBuf>,
}

fn reference_python(explicit: Option<PathBuf>) -> Option<PathBuf> {
    explicit.or_else(|| std::env::var_os("ROSETTA_PYTHON").map(PathBuf::from)).or_else(|| {
        let venv = std::env::var_os("ROSETTA_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| ".".into())).join(".cache/rosetta/venv"));
        let python = venv.join("bin/python");
        python.exists().then_some(python)
    })
}

pub fn run(command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Forward(args) => forward(args),
        BenchCommand::Train(args) => train_step(args),
        BenchCommand::Kernels(args) => crate::commands::bench_kernels::run(args),
    }
}

/// Deterministic pseudo-random ids (a fixed LCG): the content does not change the cost.
fn synthetic_ids(rows: usize, seq: usize, vocab: u64) -> Vec<Vec<u32>> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    (0..rows)
        .map(|_| {
            (0..seq)
                .map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    ((state >> 33) % vocab) as u32
                })
                .collect()
        })
        .collect()
}

/// Runs a reference script of scripts/reference/ and returns its JSON, or None when no Python
/// reference is available (said on stderr).
fn run_reference(python: Option<PathBuf>, no_reference: bool, script: &str, args: &[String]) -> Result<Option<Value>> {
    if no_reference {
        return Ok(None);
    }
    let Some(python) = reference_python(python) else {
        eprintln!("reference: skipped — no Python reference venv (run scripts/setup-python.sh or pass --python)");
        return Ok(None);
    };
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/reference").join(script);
    let output = Command::new(&python)
        .arg(&script)
        .args(args)
        .env("TRANSFORMERS_VERBOSITY", "error")
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    if !output.status.success() {
        bail!("the PyTorch reference failed:\n{}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(Some(serde_json::from_slice(&output.stdout).context("reading the reference's JSON")?))
}

fn train_step(args: TrainArgs) -> Result<()> {
    use rosetta_model::burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
    use rosetta_train::config::LoraSection;

    if args.steps == 0 || args.seq < 2 || args.batch == 0 || args.lora_rank == 0 {
        bail!("--steps, --batch and --lora-rank must be at least 1 and --seq at least 2");
    }
    let model_path = args.model.model_path()?;
    let checkpoint = args.model.open()?;
    let device = args.model.device()?.autodiff();
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let rows: Vec<rosetta_data::PackedRow> = synthetic_ids(args.batch, args.seq, checkpoint.config.vocab_size as u64)
        .into_iter()
        .map(|ids| rosetta_data::PackedRow::single(ids, ""))
        .collect();
    let normalizer = rows.iter().map(|r| r.num_predictions()).sum::<usize>() as f32;
    let mut results = Vec::new();
    for mode in ["full", "lora"] {
        let mut model = checkpoint.load(&device)?;
        if mode == "lora" {
            let lora = LoraSection { rank: args.lora_rank, alpha: 2.0 * args.lora_rank as f64, targets: LoraSection::all_targets() };
            model = rosetta_train::adapt::apply_lora(model, &lora)?;
        }
        let mut optimizer: ModuleOptimizer = AdamWConfig::new().with_weight_decay(0.1).init();
        let mut seconds = 0.0;
        for step in 0..args.warmup + args.steps {
            let start = Instant::now();
            let loss = rosetta_train::loss::packed_loss(&model, &rows, normalizer, &rosetta_model::Interventions::none())?;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(1e-4, model, grads);
            // Reading one parameter back waits for the update to finish on any backend.
            let _ = model.norm.gamma.val().slice(0..1).into_data();
            if step >= args.warmup {
                seconds += start.elapsed().as_secs_f64();
            }
        }
        let per_step = seconds / args.steps as f64;
        let tps = (args.batch * args.seq) as f64 / per_step;
        eprintln!("rosetta ({}, {mode}): {per_step:.2} s/step, {tps:.1} tokens/s", args.model.device);
        let reference = run_reference(
            args.python.clone(),
            args.no_reference,
            "bench_train.py",
            &[
                model_path.display().to_string(),
                "--batch".into(),
                args.batch.to_string(),
                "--seq".into(),
                args.seq.to_string(),
                "--steps".into(),
                args.steps.to_string(),
                "--warmup".into(),
                args.warmup.to_string(),
                "--threads".into(),
                threads.to_string(),
                "--lora-rank".into(),
                if mode == "lora" { args.lora_rank.to_string() } else { "0".into() },
            ],
        )?;
        let ratio = reference.as_ref().and_then(|r| r["tokens_per_second"].as_f64()).map(|t| tps / t);
        if let (Some(r), Some(ratio)) = (&reference, ratio) {
            eprintln!(
                "transformers (torch {}, {} threads, {mode}): {:.2} s/step, {:.1} tokens/s — rosetta / transformers = {ratio:.2}",
                r["torch"].as_str().unwrap_or("?"),
                r["threads"],
                r["seconds_per_step"].as_f64().unwrap_or(f64::NAN),
                r["tokens_per_second"].as_f64().unwrap_or(f64::NAN)
            );
        }
        results.push(json!({"mode": mode, "rosetta": {"seconds_per_step": per_step, "tokens_per_second": tps}, "reference": reference, "ratio_rosetta_over_reference": ratio}));
    }
    let report = json!({
        "benchmark": "train",
        "model": checkpoint.origin.0,
        "device": args.model.device,
        "threads": threads,
        "batch": args.batch, "seq": args.seq, "steps": args.steps, "lora_rank": args.lora_rank,
        "optimizer": "AdamW (weight decay 0.1), causal-LM loss",
        "results": results,
    });
    match &args.json {
        Some(path) => write_json(path, &report)?,
        None => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(())
}

fn forward(args: ForwardArgs) -> Result<()> {
    if args.iters == 0 || args.seq == 0 || args.batch.contains(&0) {
        bail!("--iters, --seq and every --batch must be at least 1");
    }
    let model_path = args.model.model_path()?;
    let (checkpoint, model) = args.model.load()?;
    let vocab = checkpoint.config.vocab_size as u64;
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mut ours = Vec::new();
    for &batch in &args.batch {
        let input = TokenBatch::pad(&synthetic_ids(batch, args.seq, vocab), rosetta_model::Padding::Right, 0)?;
        let run_once = || -> Result<()> {
            // Reading one value back waits for the whole forward to finish on any backend.
            let logits = model.forward(&input);
            let [b, s, v] = logits.dims();
            logits.slice([b - 1..b, s - 1..s, v - 1..v]).into_data();
            Ok(())
        };
        for _ in 0..args.warmup {
            run_once()?;
        }
        let start = Instant::now();
        for _ in 0..args.iters {
            run_once()?;
        }
        let seconds = start.elapsed().as_secs_f64() / args.iters as f64;
        let tps = (batch * args.seq) as f64 / seconds;
        eprintln!("rosetta ({}): batch {batch} × seq {}: {seconds:.3} s/forward, {tps:.0} tokens/s", args.model.device, args.seq);
        ours.push(json!({"batch": batch, "seq": args.seq, "seconds": seconds, "tokens_per_second": tps}));
    }

    let batches = args.batch.iter().map(|b| b.to_string()).collect::<Vec<_>>().join(",");
    let reference = run_reference(
        args.python.clone(),
        args.no_reference,
        "bench_forward.py",
        &[
            model_path.display().to_string(),
            "--batch".into(),
            batches,
            "--seq".into(),
            args.seq.to_string(),
            "--iters".into(),
            args.iters.to_string(),
            "--warmup".into(),
            args.warmup.to_string(),
            "--threads".into(),
            threads.to_string(),
        ],
    )?;
    if let Some(value) = &reference {
        for r in value["results"].as_array().into_iter().flatten() {
            eprintln!(
                "transformers (torch {}, {} threads): batch {} × seq {}: {:.3} s/forward, {:.0} tokens/s",
                value["torch"].as_str().unwrap_or("?"),
                value["threads"],
                r["batch"],
                r["seq"],
                r["seconds"].as_f64().unwrap_or(f64::NAN),
                r["tokens_per_second"].as_f64().unwrap_or(f64::NAN)
            );
        }
    }
    let ratios: Vec<Value> = match &reference {
        Some(reference) => ours
            .iter()
            .zip(reference["results"].as_array().into_iter().flatten())
            .map(|(a, b)| {
                let ratio = a["tokens_per_second"].as_f64().unwrap_or(0.0) / b["tokens_per_second"].as_f64().unwrap_or(f64::NAN);
                eprintln!("batch {}: rosetta / transformers = {ratio:.2}", a["batch"]);
                json!({"batch": a["batch"], "ratio": ratio})
            })
            .collect(),
        None => Vec::new(),
    };
    let report = json!({
        "benchmark": "forward",
        "model": checkpoint.origin.0,
        "device": args.model.device,
        "threads": threads,
        "rosetta": ours,
        "reference": reference,
        "ratio_rosetta_over_reference": ratios,
    });
    match &args.json {
        Some(path) => write_json(path, &report)?,
        None => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(())
}
