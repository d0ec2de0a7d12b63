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
    /// Prefill and greedy-decode tokens/s and peak memory, beside llama.cpp and HF transformers.
    Generate(GenerateArgs),
    /// Training-step tokens/s (forward, loss, backward, AdamW), full and LoRA.
    Train(TrainArgs),
    /// The WGSL kernels against composed tensor ops (time, memory, bytes moved).
    Kernels(crate::commands::bench_kernels::Args),
    /// The web lab's rooms natively on a device (the worker's computations and sizes).
    Lab(crate::commands::bench_lab::Args),
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
    /// Which steps to measure: `full`, `lora` (over f32 weights), `qlora` (LoRA over the
    /// checkpoint's quantized blocks, as `[lora] base = "auto"` trains on the CPU; PyTorch's
    /// side is its f32 LoRA).
    #[arg(long, value_delimiter = ',', default_value = "full,lora")]
    modes: Vec<String>,
    /// What the step computes in: `f32`, or `bf16` / `f16` with f32 master weights (the
    /// training config's `[optim] precision`; PyTorch runs under autocast in the same type).
    #[arg(long, default_value = "f32", value_parser = parse_train_precision)]
    train_precision: rosetta_train::precision::TrainPrecision,
    /// burn's balanced gradient checkpointing (memory-bound ops recomputed in backward).
    #[arg(long)]
    gradient_checkpointing: bool,
    /// Activation checkpointing by decoder layer (`[optim] activation_checkpointing`): each
    /// layer's input kept, the layer replayed in backward.
    #[arg(long)]
    activation_checkpointing: bool,
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

#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    batch: Vec<usize>,
    /// Prompt length (synthetic ids; the content does not change the cost).
    #[arg(long, default_value_t = 128)]
    prompt_tokens: usize,
    /// Greedy tokens decoded after the prompt (no stop token ends them early).
    #[arg(long, default_value_t = 64)]
    new_tokens: usize,
    /// Runs per measurement; the best is reported (as every peer reports).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    #[arg(long)]
    python: Option<PathBuf>,
    /// Skip the peers (llama.cpp and PyTorch).
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
        BenchCommand::Generate(args) => generate(args),
        BenchCommand::Train(args) => train_step(args),
        BenchCommand::Kernels(args) => crate::commands::bench_kernels::run(args),
        BenchCommand::Lab(args) => crate::commands::bench_lab::run(args),
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

/// A reference script's command line: the model, then `--flag value` pairs.
fn reference_args(model: &std::path::Path, flags: &[(&str, String)]) -> Vec<String> {
    std::iter::once(model.display().to_string()).chain(flags.iter().flat_map(|(f, v)| [f.to_string(), v.clone()])).collect()
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

/// The llama.cpp peer (scripts/peers/llama_bench.mjs through npm node-llama-cpp, installed by
/// scripts/setup-peers.sh) on a GGUF: prefill and decode tokens/s at batch 1. None, said on
/// stderr, when the model is not a GGUF or the peer is not installed.
fn run_llama(model: &std::path::Path, threads: usize, prompt_tokens: usize, new_tokens: usize, repeats: usize) -> Result<Option<Value>> {
    if model.extension().is_none_or(|e| e != "gguf") {
        eprintln!("llama.cpp: skipped — it reads GGUF files only");
        return Ok(None);
    }
    let cache = std::env::var_os("ROSETTA_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| ".".into())).join(".cache/rosetta"));
    let modules = cache.join("tools/llama/node_modules");
    if !modules.join("node-llama-cpp").exists() {
        eprintln!("llama.cpp: skipped — not installed (run scripts/setup-peers.sh)");
        return Ok(None);
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/peers/llama_bench.mjs");
    // Node resolves packages next to the script; a copy beside node_modules finds them.
    let runner = modules.parent().unwrap_or(&modules).join("llama_bench.mjs");
    std::fs::copy(&script, &runner).with_context(|| format!("copying {} to {}", script.display(), runner.display()))?;
    let output = Command::new("node")
        .arg(&runner)
        .arg(model)
        .args(["--threads", &threads.to_string(), "--prompt-tokens", &prompt_tokens.to_string()])
        .args(["--new-tokens", &new_tokens.to_string(), "--repeats", &repeats.to_string()])
        .output()
        .context("running node (llama.cpp peer)")?;
    if !output.status.success() {
        bail!("the llama.cpp peer failed:\n{}", String::from_utf8_lossy(&output.stderr));
    }
    let line = String::from_utf8_lossy(&output.stdout).lines().last().unwrap_or_default().to_string();
    Ok(Some(serde_json::from_str(&line).with_context(|| format!("reading the llama.cpp peer's JSON: {line}"))?))
}

/// Peak resident memory of this process so far (Linux `VmHWM`), in bytes.
/// Resets the process's peak RSS to its current RSS (Linux ≥ 4.0: `5` to `clear_refs`), so the
/// next reading of [`peak_rss_bytes`] is the work since. Elsewhere, nothing (peaks accumulate).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// A generation of one token and one of `config`'s, each run inside `observe` (which counts or
/// times its launches): the two observations and the decode steps between them (`None` without
/// any), so `whole − prefill` over `steps` is one decode step.
#[cfg(feature = "wgpu")]
fn observe_decode<T>(
    model: &rosetta_model::CausalLm,
    prompts: &[Vec<u32>],
    config: &rosetta_model::generate::GenerationConfig,
    observe: impl Fn(
        &dyn Fn() -> rosetta_model::Result<rosetta_model::generate::GenerationOutput>,
    ) -> (rosetta_model::Result<rosetta_model::generate::GenerationOutput>, T),
) -> Result<Option<(T, T, usize)>> {
    use rosetta_model::generate::{GenerationConfig, generate_blocking};
    let run = |tokens: usize| {
        let config = GenerationConfig { max_new_tokens: tokens, ..config.clone() };
        observe(&|| generate_blocking(model, prompts, &config, &rosetta_model::Interventions::none(), |_, _| {}))
    };
    let (first, prefill) = run(1);
    first?;
    let (all, whole) = run(config.max_new_tokens);
    let steps = all?.tokens.iter().map(Vec::len).min().unwrap_or(0).saturating_sub(1);
    Ok((steps > 0).then_some((prefill, whole, steps)))
}

/// The kernels one decode step launches on a GPU (what bounds decoding there).
#[cfg(feature = "wgpu")]
fn decode_step_launches(
    model: &rosetta_model::CausalLm,
    prompts: &[Vec<u32>],
    config: &rosetta_model::generate::GenerationConfig,
) -> Result<Value> {
    use rosetta_kernels::wgpu::launches::count_launches;
    let Some((prefill, whole, steps)) = observe_decode(model, prompts, config, |generate| count_launches(generate))? else {
        return Ok(Value::Null);
    };
    let decode = whole.since(&prefill);
    let per_step = decode.total() as f64 / steps as f64;
    let mut by_kernel: Vec<(&String, &u64)> = decode.0.iter().collect();
    by_kernel.sort_by(|a, b| b.1.cmp(a.1));
    eprintln!("rosetta: {per_step:.0} kernel launches per decode step");
    let by_kernel: serde_json::Map<String, Value> =
        by_kernel.into_iter().take(16).map(|(name, n)| (name.clone(), json!(*n as f64 / steps as f64))).collect();
    Ok(json!({"total": per_step, "by_kernel": by_kernel}))
}

/// The device time of one decode step's kernels, by kernel, beside the step's untimed wall time
/// (`step_seconds`): their difference is what the host spends issuing launches and waiting.
#[cfg(feature = "wgpu")]
fn decode_step_kernel_time(
    model: &rosetta_model::CausalLm,
    prompts: &[Vec<u32>],
    config: &rosetta_model::generate::GenerationConfig,
    step_seconds: f64,
) -> Result<Value> {
    use rosetta_kernels::wgpu::launches::time_launches;
    let Some((prefill, whole, steps)) = observe_decode(model, prompts, config, |generate| time_launches(generate))? else {
        return Ok(Value::Null);
    };
    let per_step = whole.since(&prefill).scaled(1.0 / steps as f64);
    Ok(kernel_time_json(&per_step, step_seconds, "a decode step"))
}

/// `times` (of one step) as JSON beside the untimed step's wall time, with a line on stderr.
#[cfg(feature = "wgpu")]
fn kernel_time_json(times: &rosetta_kernels::wgpu::launches::KernelTimes, step_seconds: f64, what: &str) -> Value {
    let kernel_seconds = times.seconds();
    let mut by_kernel: Vec<_> = times.by_kernel.iter().collect();
    by_kernel.sort_by(|a, b| b.1.seconds.total_cmp(&a.1.seconds));
    let top: Vec<String> = by_kernel.iter().take(4).map(|(name, t)| format!("{name} {:.2} ms", 1e3 * t.seconds)).collect();
    eprintln!(
        "rosetta: {what} spends {:.2} ms in kernels of its {:.2} ms ({:.0} %; over the timed run {} launches timed on the device, {} on the host): {}",
        1e3 * kernel_seconds,
        1e3 * step_seconds,
        100.0 * kernel_seconds / step_seconds.max(1e-12),
        times.device_timed,
        times.system_timed,
        top.join(", ")
    );
    let by_kernel: serde_json::Map<String, Value> =
        by_kernel.into_iter().take(16).map(|(name, t)| (name.clone(), json!({"launches": t.launches, "seconds": t.seconds}))).collect();
    json!({
        "kernel_seconds": kernel_seconds,
        "step_seconds": step_seconds,
        "device_timed_launches": times.device_timed,
        "host_timed_launches": times.system_timed,
        "unmeasured_launches": times.unmeasured,
        "by_kernel": by_kernel,
    })
}

fn generate(args: GenerateArgs) -> Result<()> {
    use rosetta_model::generate::{GenerationConfig, Sampling, generate_blocking};
    if args.repeats == 0 || args.prompt_tokens == 0 || args.new_tokens == 0 || args.batch.contains(&0) {
        bail!("--repeats, --prompt-tokens, --new-tokens and every --batch must be at least 1");
    }
    let model_path = args.model.model_path()?;
    let (checkpoint, model) = args.model.load()?;
    let (packed, projections) = model.packed_projections();
    let storage = format!("{packed}/{projections} projections packed, {:.0} MB packed", model.packed_bytes() as f64 / 1e6);
    eprintln!("rosetta: {storage}");
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let config = GenerationConfig { max_new_tokens: args.new_tokens, sampling: Sampling::Greedy, ..Default::default() };
    let mut ours = Vec::new();
    for &batch in &args.batch {
        let prompts = synthetic_ids(batch, args.prompt_tokens, checkpoint.config.vocab_size as u64);
        let (mut prefill, mut decode) = (0f64, 0f64);
        for _ in 0..args.repeats {
            let out = generate_blocking(&model, &prompts, &config, &rosetta_model::Interventions::none(), |_, _| {})?;
            prefill = prefill.max((batch * args.prompt_tokens) as f64 / out.prefill_seconds.max(1e-9));
            decode = decode.max(out.decode_tokens_per_second());
        }
        eprintln!("rosetta ({}): batch {batch}: prefill {prefill:.0} tokens/s, decode {decode:.1} tokens/s", args.model.device);
        let entry = json!({"batch": batch, "prefill_tokens_per_second": prefill, "decode_tokens_per_second": decode});
        #[cfg(feature = "wgpu")]
        let entry = match rosetta_kernels::is_wgpu(&model.device()) {
            true => {
                let mut entry = entry;
                entry["decode_step_launches"] = decode_step_launches(&model, &prompts, &config)?;
                entry["decode_step_kernel_time"] = decode_step_kernel_time(&model, &prompts, &config, batch as f64 / decode.max(1e-12))?;
                entry
            }
            false => entry,
        };
        ours.push(entry);
    }
    let peak = peak_rss_bytes();
    if let Some(bytes) = peak {
        eprintln!("rosetta: peak RSS {:.0} MB", bytes as f64 / 1e6);
    }
    let llama = if args.no_reference { None } else { run_llama(&model_path, threads, args.prompt_tokens, args.new_tokens, args.repeats)? };
    if let Some(l) = &llama {
        eprintln!(
            "llama.cpp ({} threads): batch 1: prefill {:.0} tokens/s, decode {:.1} tokens/s",
            l["threads"],
            l["prefill_tokens_per_second"].as_f64().unwrap_or(f64::NAN),
            l["decode_tokens_per_second"].as_f64().unwrap_or(f64::NAN)
        );
    }
    let batches = args.batch.iter().map(|b| b.to_string()).collect::<Vec<_>>().join(",");
    let transformers = run_reference(
        args.python.clone(),
        args.no_reference,
        "bench_generate.py",
        &reference_args(
            &model_path,
            &[
                ("--batch", batches),
                ("--prompt-tokens", args.prompt_tokens.to_string()),
                ("--new-tokens", args.new_tokens.to_string()),
                ("--repeats", args.repeats.to_string()),
                ("--threads", threads.to_string()),
            ],
        ),
    )?;
    let find = |value: &Option<Value>, batch: &Value| -> Option<Value> {
        value.as_ref()?["results"].as_array()?.iter().find(|r| &r["batch"] == batch).cloned()
    };
    let mut ratios = Vec::new();
    for row in &ours {
        let ratio = |peer: &Value, key: &str| row[key].as_f64().unwrap_or(0.0) / peer[key].as_f64().unwrap_or(f64::NAN);
        let mut entry = json!({"batch": row["batch"]});
        if let Some(t) = find(&transformers, &row["batch"]) {
            entry["prefill_over_transformers"] = json!(ratio(&t, "prefill_tokens_per_second"));
            entry["decode_over_transformers"] = json!(ratio(&t, "decode_tokens_per_second"));
            eprintln!(
                "transformers: batch {}: prefill {:.0} tokens/s, decode {:.1} tokens/s",
                row["batch"],
                t["prefill_tokens_per_second"].as_f64().unwrap_or(f64::NAN),
                t["decode_tokens_per_second"].as_f64().unwrap_or(f64::NAN)
            );
        }
        if let Some(l) = llama.as_ref().filter(|_| row["batch"] == 1) {
            entry["prefill_over_llama_cpp"] = json!(ratio(l, "prefill_tokens_per_second"));
            entry["decode_over_llama_cpp"] = json!(ratio(l, "decode_tokens_per_second"));
        }
        ratios.push(entry);
    }
    for r in &ratios {
        let show = |k: &str| r[k].as_f64().map_or("—".to_string(), |v| format!("{v:.2}"));
        eprintln!(
            "batch {}: rosetta / llama.cpp prefill {} decode {}; rosetta / transformers prefill {} decode {}",
            r["batch"],
            show("prefill_over_llama_cpp"),
            show("decode_over_llama_cpp"),
            show("prefill_over_transformers"),
            show("decode_over_transformers")
        );
    }
    let report = json!({
        "benchmark": "generate",
        "model": checkpoint.origin.0,
        "device": args.model.device,
        "precision": format!("{:?}", args.model.precision()),
        "storage": storage,
        "threads": threads,
        "prompt_tokens": args.prompt_tokens,
        "new_tokens": args.new_tokens,
        "rosetta": ours,
        "rosetta_peak_rss_bytes": peak,
        "llama_cpp": llama,
        "transformers": transformers,
        "ratios": ratios,
    });
    match &args.json {
        Some(path) => write_json(path, &report)?,
        None => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(())
}

fn parse_train_precision(s: &str) -> std::result::Result<rosetta_train::precision::TrainPrecision, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|_| format!("unknown precision `{s}` (use f32, bf16 or f16)"))
}

/// The PyTorch reference's name of a training precision (its autocast type).
fn torch_dtype(precision: rosetta_train::precision::TrainPrecision) -> &'static str {
    use rosetta_train::precision::TrainPrecision;
    match precision {
        TrainPrecision::F32 => "float32",
        TrainPrecision::Bf16 => "bfloat16",
        TrainPrecision::F16 => "float16",
    }
}

fn train_step(args: TrainArgs) -> Result<()> {
    use rosetta_model::burn::optim::{GradientsParams, ModuleOptimizer};
    use rosetta_train::config::LoraSection;

    if args.steps == 0 || args.seq < 2 || args.batch == 0 || args.lora_rank == 0 {
        bail!("--steps, --batch and --lora-rank must be at least 1 and --seq at least 2");
    }
    if let Some(bad) = args.modes.iter().find(|m| !["full", "lora", "qlora"].contains(&m.as_str())) {
        bail!("--modes takes `full`, `lora` and `qlora`, not `{bad}`");
    }
    let model_path = args.model.model_path()?;
    let checkpoint = args.model.open()?;
    let device = args.model.device()?.autodiff();
    let device = if args.gradient_checkpointing { device.gradient_checkpointing() } else { device };
    let precision = args.train_precision;
    if let Err(reason) = precision.check_device(&device) {
        bail!("--train-precision: {reason}");
    }
    let mut loss_scale = (precision == rosetta_train::precision::TrainPrecision::F16).then(rosetta_train::precision::LossScale::default);
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let rows: Vec<rosetta_data::PackedRow> = synthetic_ids(args.batch, args.seq, checkpoint.config.vocab_size as u64)
        .into_iter()
        .map(|ids| rosetta_data::PackedRow::single(ids, ""))
        .collect();
    let normalizer = rows.iter().map(|r| r.num_predictions()).sum::<usize>() as f32;
    let mut results = Vec::new();
    for mode in args.modes.iter().map(String::as_str) {
        // Each mode's peak memory is its own: the previous mode's model is gone by now, and its
        // freed heap goes back to the kernel before the peak restarts from what is live.
        crate::allocator::release_freed_memory();
        reset_peak_rss();
        let mut model = if mode == "qlora" {
            let model = checkpoint.load_with(&device, rosetta_model::Precision::PackedBase)?;
            let (packed, projections) = model.packed_projections();
            eprintln!("rosetta (qlora): {packed}/{projections} projections packed, {:.0} MB", model.packed_bytes() as f64 / 1e6);
            model
        } else {
            args.model.load_model(&checkpoint, &device)?
        };
        model = model.with_layer_checkpointing(args.activation_checkpointing);
        if mode != "full" {
            let lora = LoraSection {
                rank: args.lora_rank,
                alpha: 2.0 * args.lora_rank as f64,
                targets: LoraSection::all_targets(),
                init: None,
                base: rosetta_train::config::LoraBase::Auto,
            };
            model = rosetta_train::adapt::apply_lora(model, &lora, 0)?;
        }
        // The trainer's optimizer (burn's AdamW constants, weight decay 0.1), so the step costs what a
        // training run's does.
        let hyper = rosetta_kernels::adamw::AdamWHyper { beta_1: 0.9, beta_2: 0.999, epsilon: 1e-5, weight_decay: 0.1 };
        let mut optimizer = ModuleOptimizer::from(rosetta_train::optimizer::FusedAdamW::new(hyper));
        let mut seconds = 0.0;
        let mut train_step = |model: rosetta_model::CausalLm| -> Result<rosetta_model::CausalLm> {
            let compute = precision.compute_model(&model);
            let loss = rosetta_train::loss::packed_loss(&compute, &rows, normalizer, &rosetta_model::Interventions::none())?;
            let loss = rosetta_train::precision::LossScale::scale_loss(loss_scale.as_ref(), loss);
            let mut grads = GradientsParams::from_grads(loss.backward(), &model);
            // The trainer's f16 bookkeeping, so the step costs what it costs there.
            if let Some(l) = &mut loss_scale {
                l.unscale(&model, &mut grads);
                l.update(true);
            }
            let model = optimizer.step(1e-4, model, grads);
            // Reading one parameter back waits for the update to finish on any backend.
            let _ = model.norm.gamma.val().slice(0..1).into_data();
            Ok(model)
        };
        for step in 0..args.warmup + args.steps {
            let start = Instant::now();
            model = train_step(model)?;
            if step >= args.warmup {
                seconds += start.elapsed().as_secs_f64();
            }
        }
        let per_step = seconds / args.steps as f64;
        // On a GPU, one more step with its kernels timed: where a step's time goes (issue 18).
        #[cfg(feature = "wgpu")]
        let step_kernel_time = match rosetta_kernels::is_wgpu(&device) {
            true => {
                let (stepped, times) = rosetta_kernels::wgpu::launches::time_launches(|| train_step(model));
                drop(stepped?);
                kernel_time_json(&times, per_step, &format!("a {mode} training step"))
            }
            false => Value::Null,
        };
        #[cfg(not(feature = "wgpu"))]
        let step_kernel_time = Value::Null;
        let tps = (args.batch * args.seq) as f64 / per_step;
        // This mode's peak (reset above where the kernel allows it; else the process's so far).
        let peak_rss = peak_rss_bytes();
        eprintln!(
            "rosetta ({}, {mode}): {per_step:.2} s/step, {tps:.1} tokens/s, peak RSS {:.0} MB",
            args.model.device,
            peak_rss.map_or(f64::NAN, |b| b as f64 / 1e6)
        );
        let reference = run_reference(
            args.python.clone(),
            args.no_reference,
            "bench_train.py",
            &reference_args(
                &model_path,
                &[
                    ("--batch", args.batch.to_string()),
                    ("--seq", args.seq.to_string()),
                    ("--steps", args.steps.to_string()),
                    ("--warmup", args.warmup.to_string()),
                    ("--threads", threads.to_string()),
                    ("--lora-rank", if mode == "full" { "0".into() } else { args.lora_rank.to_string() }),
                    ("--dtype", torch_dtype(precision).to_string()),
                    ("--gradient-checkpointing", u8::from(args.activation_checkpointing).to_string()),
                ],
            ),
        )?;
        let ratio = reference.as_ref().and_then(|r| r["tokens_per_second"].as_f64()).map(|t| tps / t);
        if let (Some(r), Some(ratio)) = (&reference, ratio) {
            eprintln!(
                "transformers (torch {}, {} threads, {mode}): {:.2} s/step, {:.1} tokens/s, peak RSS {:.0} MB — rosetta / transformers = {ratio:.2}",
                r["torch"].as_str().unwrap_or("?"),
                r["threads"],
                r["seconds_per_step"].as_f64().unwrap_or(f64::NAN),
                r["tokens_per_second"].as_f64().unwrap_or(f64::NAN),
                r["peak_rss_bytes"].as_f64().unwrap_or(f64::NAN) / 1e6
            );
        }
        results.push(json!({"mode": mode, "rosetta": {"seconds_per_step": per_step, "tokens_per_second": tps, "peak_rss_bytes": peak_rss, "step_kernel_time": step_kernel_time}, "reference": reference, "ratio_rosetta_over_reference": ratio}));
    }
    let report = json!({
        "benchmark": "train",
        "model": checkpoint.origin.0,
        "device": args.model.device,
        "threads": threads,
        "batch": args.batch, "seq": args.seq, "steps": args.steps, "lora_rank": args.lora_rank,
        "optimizer": "AdamW (weight decay 0.1), causal-LM loss",
        "precision": precision.name(),
        "activation_checkpointing": args.activation_checkpointing,
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
        &reference_args(
            &model_path,
            &[
                ("--batch", batches),
                ("--seq", args.seq.to_string()),
                ("--iters", args.iters.to_string()),
                ("--warmup", args.warmup.to_string()),
                ("--threads", threads.to_string()),
            ],
        ),
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
    // llama.cpp's forward over a prompt is its prefill (batch 1; its logits are the last
    // position's only, so it does less work than a forward with all logits).
    let llama = if args.no_reference { None } else { run_llama(&model_path, threads, args.seq, 8, args.iters.min(3))? };
    let llama_ratio = llama.as_ref().and_then(|l| {
        let ours_b1 = ours.iter().find(|r| r["batch"] == 1)?["tokens_per_second"].as_f64()?;
        let theirs = l["prefill_tokens_per_second"].as_f64()?;
        eprintln!(
            "llama.cpp ({} threads): prefill {theirs:.0} tokens/s; batch 1: rosetta / llama.cpp = {:.2}",
            l["threads"],
            ours_b1 / theirs
        );
        Some(ours_b1 / theirs)
    });
    let report = json!({
        "benchmark": "forward",
        "llama_cpp": llama,
        "ratio_rosetta_over_llama_cpp_batch1": llama_ratio,
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
