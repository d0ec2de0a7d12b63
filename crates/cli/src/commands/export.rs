//! `rosetta export`: any checkpoint Rosetta reads, written as an HF directory.

use std::path::PathBuf;

use anyhow::Result;
use rosetta_model::export::{ExportDtype, ExportOptions, export_hf};

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
}

/// Zero fraction from which a weight is stored compressed: below it the bitmap costs more than
/// the zeros it saves (break-even is 1/32 in f32 and 1/16 in f16).
pub const SPARSE_FROM: f64 = 0.1;

pub fn run(args: Args) -> Result<()> {
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
