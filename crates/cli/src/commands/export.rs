//! `rosetta export`: any checkpoint Rosetta reads, written as an HF directory, or as a GGUF file
//! llama.cpp loads (`--gguf TYPE`); or a LoRA run's adapter in PEFT's format (`--peft-from`).

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use rosetta_model::export::{ExportDtype, ExportOptions, export_hf};
use rosetta_model::gguf_export::{GgufExportType, export_gguf};
use rosetta_model::peft::PeftAdapter;

use crate::model_args::ModelArgs;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Output directory (written atomically); the output file with --gguf.
    #[arg(long)]
    out: PathBuf,
    /// Write one GGUF file for llama.cpp instead of an HF directory, with 2-D weights in this
    /// type: f32, f16 or q8_0 (norms stay f32).
    #[arg(long, value_name = "TYPE", value_parser = parse_gguf_type, conflicts_with_all = ["sparse", "dtype"])]
    gguf: Option<GgufExportType>,
    /// Weight dtype: f32, f16 or bf16.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Replace the output directory if it exists.
    #[arg(long)]
    overwrite: bool,
    /// Store pruned weights (≥ 10% zeros) compressed: non-zero values + a 1-bit keep map.
    /// Rosetta reads it back exactly; transformers needs the default dense export.
    #[arg(long)]
    sparse: bool,
    /// Write the LoRA adapter of this training run (its latest checkpoint) as a PEFT adapter
    /// directory (adapter_config.json + adapter_model.safetensors) instead of a model.
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["sparse", "model", "adapter", "gguf"])]
    peft_from: Option<PathBuf>,
}

/// Zero fraction from which a weight is stored compressed: below it the bitmap costs more than
/// the zeros it saves (break-even is 1/32 in f32 and 1/16 in f16).
pub const SPARSE_FROM: f64 = 0.1;

pub fn run(args: Args) -> Result<()> {
    if let Some(run) = &args.peft_from {
        return export_peft(run, &args.out, args.overwrite, &args.model);
    }
    if let Some(ty) = args.gguf {
        let (checkpoint, model) = args.model.load()?;
        let resolved = args.model.model_path()?;
        let name = match &args.model.model {
            Some(spec) => rosetta_model::hub::display_name(spec, &resolved),
            None => rosetta_model::hub::display_name(&resolved, &resolved),
        };
        let written = export_gguf(&model, &checkpoint.tokenizer, &args.out, ty, &name, args.overwrite)?;
        if let Some(warning) = &written.warning {
            eprintln!("warning: {warning}");
        }
        if !written.fallbacks.is_empty() {
            eprintln!("note: {} tensors have rows that are not whole 32-value blocks and were written as f16", written.fallbacks.len());
        }
        println!("wrote {} ({ty:?}, {} tensors, {:.1} MB)", written.path.display(), written.tensors, written.bytes as f64 / 1e6);
        return Ok(());
    }
    let dtype: ExportDtype = args.dtype.parse()?;
    let (checkpoint, model) = args.model.load()?;
    let options = ExportOptions {
        dtype,
        overwrite: args.overwrite,
        extras: checkpoint.extras.clone(),
        sparse_from: args.sparse.then_some(SPARSE_FROM),
    };
    let dir = export_hf(&model, &checkpoint.tokenizer, &args.out, &options)?;
    println!("wrote {} ({:?}, {} parameters)", dir.display(), dtype, checkpoint.config.num_parameters());
    Ok(())
}

fn parse_gguf_type(s: &str) -> Result<GgufExportType, String> {
    GgufExportType::parse(s).ok_or_else(|| format!("unknown GGUF type `{s}` (use {})", GgufExportType::NAMES))
}

fn export_peft(run: &Path, out: &Path, overwrite: bool, model: &ModelArgs) -> Result<()> {
    let (config, _, trained, step) = rosetta_train::trainer::load_run_model(run, &model.device()?)?;
    let Some(lora) = &config.lora else {
        bail!(
            "{} is not a LoRA run (its config has no [lora]): export its merged model with `rosetta export {}`",
            run.display(),
            run.join("final").display()
        );
    };
    let base = config.model.path.as_ref().map(|p| p.display().to_string());
    let Some(adapter) = PeftAdapter::from_model(&trained, lora.rank, lora.alpha, base)? else {
        bail!("{}: the checkpoint at step {step} carries no LoRA factors", run.display());
    };
    let dir = adapter.write(out, overwrite)?;
    println!(
        "wrote {} (PEFT LoRA adapter of step {step}: r = {}, alpha = {}, {} projections)",
        dir.display(),
        lora.rank,
        lora.alpha,
        adapter.factors.len()
    );
    Ok(())
}
