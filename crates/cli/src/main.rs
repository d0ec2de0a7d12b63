//! `rosetta`: the command-line front end of Rosetta.
//!
//! Every subcommand takes a model (an HF directory, a GGUF file, or nothing for the default
//! SmolLM2-135M-Instruct) and `--device cpu|wgpu|cuda`. Errors are reported once, here, with
//! their causes; the exit code is 1 for failures and 2 for usage errors (clap).

mod allocator;
mod commands;
mod model_args;
mod output;
mod static_server;
mod threads;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "rosetta", version, about = "Cross-lingual transfer lab for LLaMA-family models")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Architecture, sizes, tokenizer and storage types of a model.
    Info(commands::info::Args),
    /// Generate text from a prompt (tokens/s reported).
    Generate(commands::generate::Args),
    /// Per-language bits per character on parallel text: the cross-lingual gap.
    Score(commands::score::Args),
    /// Write a model as an HF directory (safetensors + config.json + tokenizer.json).
    Export(commands::export::Args),
    /// Continued pretraining or SFT from a TOML config (full or LoRA), resumable.
    Train(commands::train::Args),
    /// The corpus: rebuild it from packages, count it, sample a mixture.
    #[command(subcommand)]
    Data(commands::data::DataCommand),
    /// Training curves (SVG) from a run's metrics.
    Plot(commands::plot::Args),
    /// Zero-shot multiple-choice accuracy per language (translation choice, language id).
    Classify(commands::classify::Args),
    /// Magnitude features per layer under translation/monolingual/code prompts (Kim et al. 2024).
    Features(commands::features::Args),
    /// Language geometry per layer and ShifCon's layer band (subspace distance, cosines, PCA).
    Geometry(commands::geometry::Args),
    /// SDRRL: transfer sets from the model's own English answers, SFT on them, evaluation.
    #[command(subcommand)]
    Sdrrl(commands::sdrrl::SdrrlCommand),
    /// Prune every decoder linear layer (Wanda with translation calibration, magnitude, random).
    Prune(commands::prune::PruneArgs),
    /// Bits/char per language over sparsities and pruning variants: the comparison report.
    PruneSweep(commands::prune::SweepArgs),
    /// Vocabulary extension for a target language (Csaki et al. 2023).
    #[command(subcommand)]
    Vocab(commands::vocab::VocabCommand),
    /// The web lab: build the page if needed, serve it on 127.0.0.1 with the default model, open it.
    Lab(commands::lab::Args),
    /// Benchmarks (not tests): throughput next to the PyTorch reference.
    #[command(subcommand)]
    Bench(commands::bench::BenchCommand),
    /// Serve this host's devices to training runs on other hosts (`ws://HOST:PORT` in
    /// `model.devices`): multi-node training over burn's remote backend.
    #[cfg(feature = "remote")]
    ServeDevice(commands::serve_device::Args),
}

fn main() {
    allocator::keep_freed_buffers();
    let cli = Cli::parse();
    let result = match cli.command {
        // burn's server runs each client's operations on threads of its own runtime; the CPU
        // backend's kernels then use rayon's global pool, so no compute pool of ours beside it.
        #[cfg(feature = "remote")]
        Command::ServeDevice(args) => commands::serve_device::run(args),
        command => run_on_compute_pool(command),
    };
    if let Err(error) = result {
        eprintln!("error: {error}");
        for cause in error.chain().skip(1) {
            eprintln!("  caused by: {cause}");
        }
        if let Some(hint) = flag_hint(&error) {
            eprintln!("  hint: {hint}");
        }
        std::process::exit(1);
    }
}

fn run_on_compute_pool(command: Command) -> anyhow::Result<()> {
    threads::on_compute_pool(|| match command {
        Command::Info(args) => commands::info::run(args),
        Command::Generate(args) => commands::generate::run(args),
        Command::Score(args) => commands::score::run(args),
        Command::Export(args) => commands::export::run(args),
        Command::Train(args) => commands::train::run(args),
        Command::Data(cmd) => commands::data::run(cmd),
        Command::Plot(args) => commands::plot::run(args),
        Command::Vocab(cmd) => commands::vocab::run(cmd),
        Command::Features(args) => commands::features::run(args),
        Command::Classify(args) => commands::classify::run(args),
        Command::Geometry(args) => commands::geometry::run(args),
        Command::Sdrrl(cmd) => commands::sdrrl::run(cmd),
        Command::Prune(args) => commands::prune::run(args),
        Command::PruneSweep(args) => commands::prune::sweep(args),
        Command::Lab(args) => commands::lab::run(args),
        Command::Bench(cmd) => commands::bench::run(cmd),
        // Dispatched in `main`, outside the pool.
        #[cfg(feature = "remote")]
        Command::ServeDevice(_) => Err(anyhow::anyhow!("serve-device runs outside the compute pool")),
    })
}

/// Libraries name their settings (the lab shows the same errors); here they get the flag that
/// sets them on the command line.
fn flag_hint(error: &anyhow::Error) -> Option<&'static str> {
    error.chain().find_map(|cause| {
        if let Some(rosetta_data::DataError::BadLine { .. }) = cause.downcast_ref() {
            return Some("pass --skip-bad-lines to skip such lines");
        }
        if let Some(rosetta_vocab::VocabError::NotEnoughTokens { .. }) = cause.downcast_ref() {
            return Some("lower --new-tokens (or give more target-language text with --text)");
        }
        None
    })
}
