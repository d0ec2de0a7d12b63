//! `rosetta plot`: training curves from a run's metrics.jsonl — loss and learning rate per step,
//! held-out bits/char per language per evaluation — as one SVG.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Result, bail};
use rosetta_train::metrics::read_metrics;
use rosetta_viz::{LineChart, Series, stack_vertically};

use crate::output::write_result;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A run directory or its metrics.jsonl.
    metrics: PathBuf,
    /// The SVG to write (default: curves.svg beside the metrics).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    let path = if args.metrics.is_dir() { args.metrics.join("metrics.jsonl") } else { args.metrics.clone() };
    let records = read_metrics(&path)?;
    let mut loss = Vec::new();
    let mut eval: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for r in &records {
        let Some(step) = r.get("step").and_then(|s| s.as_f64()) else { continue };
        if let Some(l) = r.get("loss").and_then(|l| l.as_f64()) {
            loss.push((step, l));
        }
        if let Some(langs) = r.get("eval").and_then(|e| e.as_object()) {
            for (lang, v) in langs {
                if let Some(bpc) = v.get("bits_per_char").and_then(|b| b.as_f64()) {
                    eval.entry(lang.clone()).or_default().push((step, bpc));
                }
            }
        }
    }
    if loss.is_empty() && eval.is_empty() {
        bail!("{}: no training steps or evaluations to plot", path.display());
    }
    let loss_chart = LineChart {
        title: "Training loss".into(),
        x_label: "step".into(),
        y_label: "loss (nats/token)".into(),
        series: vec![Series { name: "train loss".into(), points: loss }],
        band: None,
    };
    let eval_chart = LineChart {
        title: "Held-out bits per character".into(),
        x_label: "step".into(),
        y_label: "bits / char".into(),
        series: eval.into_iter().map(|(name, points)| Series { name, points }).collect(),
        band: None,
    };
    let out = args.out.unwrap_or_else(|| path.with_file_name("curves.svg"));
    write_result(&out, stack_vertically(&[loss_chart.to_svg(), eval_chart.to_svg()]).as_bytes())?;
    println!("wrote {}", out.display());
    Ok(())
}
