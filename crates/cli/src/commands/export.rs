//! `rosetta export`: any checkpoint Rosetta reads, written as an HF directory; or a LoRA run's
//! adapter in PEFT's format (`--peft-from`).

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use rosetta_model::export::{ExportDtype, ExportOptions, export_hf};
use rosetta_model::peft::PeftAdapter;

use crate::model_args::ModelArgs;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Output directory (written atomically).
    #[arg(long)]
    out: PathBuf,
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
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["sparse", "model"])]
    peft_from: Option<PathBuf>,
}

/// Zero fraction from which a weight is stored compressed: below it the bitmap costs more than
/// the zeros it saves (break-even is 1/32 in f32 and 1/16 in f16).
pub const SPARSE_FROM: f64 = 0.1;

pub fn run(args: Args) -> Result<()> {
    if let Some(run) = &args.peft_from {
        return export_peft(run, &args.out, args.overwrite, &args.model);
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
