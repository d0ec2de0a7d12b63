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
        let venv = std::env::var_os("ROSETTA_VENV").map(PathBuf::from).unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| ".".into())).join(".cache/rosetta/venv")
        });
        let python = venv.join("bin/python");
        python.exists().then_some(python)
    })
}

pub fn run(command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Forward(args) => forward(args),
    }
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
        // Deterministic pseudo-random ids (a fixed LCG): the content does not change the cost.
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let sequences: Vec<Vec<u32>> = (0..batch)
            .map(|_| {
                (0..args.seq)
                    .map(|_| {
                        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        ((state >> 33) % vocab) as u32
                    })
                    .collect()
            })
            .collect();
        let input = TokenBatch::pad(&sequences, rosetta_model::Padding::Right, 0)?;
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

    let reference: Option<Value> = match (args.no_reference, reference_python(args.python.clone())) {
        (true, _) => None,
        (false, None) => {
            eprintln!("reference: skipped — no Python reference venv (run scripts/setup-python.sh or pass --python)");
            None
        }
        (false, Some(python)) => {
            let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/reference/bench_forward.py");
            let batches = args.batch.iter().map(|b| b.to_string()).collect::<Vec<_>>().join(",");
            let output = Command::new(&python)
                .arg(&script)
                .arg(&model_path)
                .args(["--batch", &batches, "--seq", &args.seq.to_string()])
                .args(["--iters", &args.iters.to_string(), "--warmup", &args.warmup.to_string()])
                .args(["--threads", &threads.to_string()])
                .env("TRANSFORMERS_VERBOSITY", "error")
                .output()
                .with_context(|| format!("running {}", python.display()))?;
            if !output.status.success() {
                bail!("the PyTorch reference failed:\n{}", String::from_utf8_lossy(&output.stderr));
            }
            let value: Value = serde_json::from_slice(&output.stdout).context("reading the reference's JSON")?;
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
            Some(value)
        }
    };
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
