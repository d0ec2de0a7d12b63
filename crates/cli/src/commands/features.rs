//! `rosetta features`: Kim et al.'s magnitude-feature analysis — per layer and hidden dimension,
//! the L2 norm over a prompt's tokens averaged over prompts, for translation, monolingual and
//! code prompts; the top-x% overlap between settings; a heatmap per setting and an overlap plot;
//! `features.json` for the web lab.

use std::path::PathBuf;

use anyhow::Result;
use rosetta_prune::CalibKind;
use rosetta_prune::features::{LayerFeatures, outliers, overlap};
use rosetta_viz::{Heatmap, LineChart, Series};
use serde_json::json;

use crate::commands::calib_args::CalibArgs;
use crate::model_args::ModelArgs;
use crate::output::{table, write_json, write_result};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Calibration settings to analyse and compare (the first is compared with each other).
    #[arg(long, value_delimiter = ',', default_value = "translation,monolingual,code",
          value_parser = |s: &str| s.parse::<CalibKind>().map_err(|e| e.to_string()))]
    calib: Vec<CalibKind>,
    #[command(flatten)]
    calibration: CalibArgs,
    /// Top fractions of dimensions whose overlap is reported.
    #[arg(long, value_delimiter = ',', default_value = "0.01,0.05")]
    top: Vec<f64>,
    /// Output directory (features.json, features-<setting>.svg, overlap.svg).
    #[arg(long, default_value = "out/features")]
    out: PathBuf,
}

/// Ratios to the median above this are drawn alike (a few features reach 100× and would wash
/// out the rest).
const HEATMAP_CLAMP: f64 = 8.0;

pub fn run(args: Args) -> Result<()> {
    anyhow::ensure!(!args.calib.is_empty(), "--calib needs at least one setting");
    anyhow::ensure!(args.top.iter().all(|t| *t > 0.0 && *t <= 1.0), "--top fractions must be in (0, 1]");
    let (checkpoint, model) = args.model.load()?;
    let layers = model.num_layers();
    let mut settings = Vec::new();
    for kind in &args.calib {
        let calibration = args.calibration.calibration(*kind, &model, &checkpoint.tokenizer)?;
        eprintln!("{kind}: {} prompts, {} tokens", calibration.prompts, calibration.tokens);
        let stats = calibration.all_stats(&model)?;
        settings.push(LayerFeatures::from_stats_blocking(&kind.to_string(), calibration.prompts, &stats, layers)?);
    }
    std::fs::create_dir_all(&args.out)?;

    // Overlap of the first setting's top dimensions with every other setting's, per layer.
    let first = &settings[0];
    let mut overlaps = serde_json::Map::new();
    let mut series = Vec::new();
    for other in &settings[1..] {
        for &fraction in &args.top {
            let per_layer = overlap(first, other, fraction)?;
            let key = format!("{}-vs-{}@{}", first.setting, other.setting, fraction);
            series.push(Series {
                name: format!("{} vs {} (top {}%)", first.setting, other.setting, fraction * 100.0),
                points: per_layer.iter().enumerate().map(|(l, v)| (l as f64, *v)).collect(),
            });
            overlaps.insert(key, json!(per_layer));
        }
    }
    let mut rows = Vec::new();
    for layer in 0..layers {
        let mut row = vec![layer.to_string()];
        for s in &settings {
            let top = outliers(&s.norms[layer], 6.0);
            row.push(top.iter().take(3).map(|(d, v)| format!("{d}:{v:.0}")).collect::<Vec<_>>().join(" "));
        }
        for s in series.iter() {
            row.push(format!("{:.2}", s.points[layer].1));
        }
        rows.push(row);
    }
    let mut header = vec!["layer".to_string()];
    header.extend(settings.iter().map(|s| format!("{} outliers (dim:norm)", s.setting)));
    header.extend(series.iter().map(|s| s.name.clone()));
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    println!("{}", table(&header, &rows));

    for s in &settings {
        // Each layer relative to its median dimension, so the large-magnitude features stand out
        // whatever the layer's overall scale.
        let relative = |row: &Vec<f32>| {
            let mut sorted = row.clone();
            sorted.sort_by(f32::total_cmp);
            let median = sorted[sorted.len() / 2].max(1e-12) as f64;
            row.iter().map(|v| (*v as f64 / median).min(HEATMAP_CLAMP)).collect::<Vec<f64>>()
        };
        let heatmap = Heatmap {
            title: format!("Feature norm ÷ layer median (clamped at {HEATMAP_CLAMP}) — attention input, {} prompts", s.setting),
            x_label: "hidden dimension".into(),
            y_label: "layer".into(),
            values: s.norms.iter().map(relative).collect(),
            row_labels: (0..layers).map(|l| l.to_string()).collect(),
        };
        write_result(&args.out.join(format!("features-{}.svg", s.setting)), heatmap.to_svg().as_bytes())?;
    }
    let widest = args.top.iter().copied().fold(0.0, f64::max);
    let charted: Vec<Series> = series.iter().filter(|s| s.name.ends_with(&format!("(top {}%)", widest * 100.0))).cloned().collect();
    if !charted.is_empty() {
        let chart = LineChart {
            title: format!("Overlap of the top {}% dimensions: {} vs others", widest * 100.0, first.setting),
            x_label: "layer".into(),
            y_label: "overlap".into(),
            series: charted,
            band: None,
        };
        write_result(&args.out.join("overlap.svg"), chart.to_svg().as_bytes())?;
    }
    // Three decimals are plenty for norms in the tens and keep the file a third the size.
    let rounded: Vec<LayerFeatures> = settings
        .iter()
        .map(|s| LayerFeatures {
            norms: s.norms.iter().map(|r| r.iter().map(|v| (v * 1000.0).round() / 1000.0).collect()).collect(),
            ..s.clone()
        })
        .collect();
    let report = json!({
        "schema": "rosetta-features-v1: norms[setting][layer][dim] = mean over prompts of the L2 norm over the prompt's tokens of the attention input",
        "model": checkpoint.origin.0,
        "layers": layers,
        "hidden_size": model.config().hidden_size,
        "settings": rounded,
        "overlap": overlaps,
        "outliers": settings.iter().map(|s| (s.setting.clone(), s.norms.iter().map(|n| outliers(n, 6.0)).collect::<Vec<_>>())).collect::<std::collections::BTreeMap<_, _>>(),
    });
    write_json(&args.out.join("features.json"), &report)?;
    println!("wrote {}", args.out.display());
    Ok(())
}
