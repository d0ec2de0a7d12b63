//! `rosetta geometry`: ShifCon's language geometry per layer — language vectors, the subspace
//! distance of shifted states to English (the band criterion), parallel-pair cosines and
//! retrieval, a 2-D PCA per site — and the chosen band [L_to, L_bk). Writes `geometry.json` (also
//! what the web lab reads), `distance.svg`, `alignment.svg` and `pca.svg`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use rosetta_data::{BadLines, ParallelCorpus};
use rosetta_model::Interventions;
use rosetta_shifcon::geometry::{Geometry, GeometryOptions, analyse};
use rosetta_shifcon::states::{StateOptions, sentence_states_blocking};
use rosetta_shifcon::subspace::DistanceOptions;
use rosetta_viz::{LineChart, ScatterChart, ScatterGroup, Series};
use serde_json::json;

use crate::model_args::ModelArgs;
use crate::output::{progress, table, write_json, write_result};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Parallel JSONL (`{"en": …, "hu": …}`); default: the embedded corpus's training split.
    #[arg(long)]
    parallel: Option<PathBuf>,
    /// Languages, the dominant one included; records with all of them are used.
    #[arg(long, value_delimiter = ',', default_value = "en,hu,de,zh")]
    langs: Vec<String>,
    /// The dominant language the others are shifted toward.
    #[arg(long, default_value = "en")]
    english: String,
    /// Sentences per language.
    #[arg(long, default_value_t = 200)]
    sentences: usize,
    /// Fraction of layers in the band.
    #[arg(long, default_value_t = 0.3)]
    beta: f64,
    /// Dimensions of the principal subspace the covariances are compared in.
    #[arg(long, default_value_t = 16)]
    dims: usize,
    /// Shrinkage of each covariance toward a scaled identity.
    #[arg(long, default_value_t = 0.1)]
    shrinkage: f64,
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Output directory.
    #[arg(long, default_value = "out/geometry")]
    out: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    anyhow::ensure!(args.langs.contains(&args.english), "--langs must include the dominant language `{}`", args.english);
    anyhow::ensure!(args.langs.len() >= 2, "--langs needs the dominant language and at least one other");
    let parallel = args.parallel.clone().unwrap_or_else(|| rosetta_data::corpus::CorpusDir::embedded().parallel_train());
    let (corpus, _) = ParallelCorpus::read(&parallel, BadLines::Fail)?;
    let aligned = corpus.aligned(&args.langs)?;
    anyhow::ensure!(
        aligned.len() >= args.sentences.min(32).max(16),
        "{}: only {} records have all of {}; choose languages that occur together (or fewer of them)",
        parallel.display(),
        aligned.len(),
        args.langs.join(", ")
    );
    let n = args.sentences.min(aligned.len());
    if n < args.sentences {
        eprintln!("note: {} has {n} records with all of {}; using those", parallel.display(), args.langs.join(", "));
    }
    let (_, model) = args.model.load()?;
    let checkpoint_tokenizer = args.model.open()?.tokenizer;
    let layers = model.num_layers();
    let sites: Vec<usize> = (0..=layers).collect();

    let forward_start = Instant::now();
    let bar = progress((n * args.langs.len()) as u64, "sentence states");
    let mut states = BTreeMap::new();
    for (k, lang) in args.langs.iter().enumerate() {
        let texts: Vec<&str> = aligned.iter().take(n).map(|(_, t)| t[k]).collect();
        let options = StateOptions { batch_size: args.batch_size, ..Default::default() };
        let base = bar.position();
        let per_site = sentence_states_blocking(&model, &checkpoint_tokenizer, &texts, &sites, &options, &Interventions::none(), |done| {
            bar.set_position(base + done as u64)
        })?;
        states.insert(lang.clone(), per_site);
    }
    bar.finish_and_clear();
    let forward_seconds = forward_start.elapsed().as_secs_f64();

    let analysis_start = Instant::now();
    let options = GeometryOptions {
        english: args.english.clone(),
        distance: DistanceOptions { dims: args.dims, shrinkage: args.shrinkage },
        beta: args.beta,
        ..Default::default()
    };
    let geometry = analyse(&states, &options)?;
    let analysis_seconds = analysis_start.elapsed().as_secs_f64();

    print_table(&geometry);
    let band = &geometry.band;
    println!(
        "\nband (β = {}): L_to = {}, L_bk = {} — layers {}..{} run in the `{}` subspace; the {} individually closest sites {:?} {}",
        band.beta,
        band.to,
        band.back,
        band.to,
        band.back - 1,
        geometry.english,
        band.smallest_sites.len(),
        band.smallest_sites,
        if band.contiguous { "are that window" } else { "are not contiguous" }
    );
    println!(
        "time: {n} sentences × {} languages × {} sites: forward {forward_seconds:.1} s, analysis {analysis_seconds:.1} s",
        args.langs.len(),
        layers + 1
    );

    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let mut record = serde_json::to_value(&geometry)?;
    record["model"] = json!(args.model.model_path()?.display().to_string());
    record["parallel"] = json!(parallel.display().to_string());
    record["timing"] = json!({"sentences": n, "languages": args.langs.len(), "sites": layers + 1,
        "forward_seconds": forward_seconds, "analysis_seconds": analysis_seconds, "device": format!("{:?}", args.model.device)});
    write_json(&args.out.join("geometry.json"), &record)?;
    write_result(&args.out.join("distance.svg"), distance_chart(&geometry).as_bytes())?;
    write_result(&args.out.join("alignment.svg"), alignment_chart(&geometry).as_bytes())?;
    write_result(&args.out.join("pca.svg"), pca_chart(&geometry).as_bytes())?;
    println!("wrote {}/{{geometry.json, distance.svg, alignment.svg, pca.svg}}", args.out.display());
    Ok(())
}

fn targets(g: &Geometry) -> Vec<&String> {
    g.langs.iter().filter(|l| **l != g.english).collect()
}

fn print_table(g: &Geometry) {
    let mut header = vec!["site".to_string()];
    for lang in targets(g) {
        header.extend([format!("{lang} dist"), format!("{lang} Δμ raw"), format!("{lang} cos"), format!("{lang} R@1")]);
    }
    let rows: Vec<Vec<String>> = g
        .sites
        .iter()
        .map(|s| {
            let mut row = vec![format!("{}{}", s.site, if (g.band.to..g.band.back).contains(&s.site) { " *" } else { "" })];
            for lang in targets(g) {
                let l = &s.langs[lang];
                row.extend([
                    format!("{:.2}", l.shifted.total()),
                    format!("{:.1}", l.raw.mean),
                    format!("{:.3}", l.parallel_cosine),
                    format!("{:.2}", l.retrieval_top1),
                ]);
            }
            row
        })
        .collect();
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    println!("{}", table(&header, &rows));
}

fn band_marker(g: &Geometry) -> Option<(f64, f64, String)> {
    Some((g.band.to as f64, (g.band.back - 1) as f64, format!("band {}..{}", g.band.to, g.band.back)))
}

fn distance_chart(g: &Geometry) -> String {
    let mut series: Vec<Series> = targets(g)
        .into_iter()
        .map(|lang| Series {
            name: format!("{lang} (shifted)"),
            points: g.sites.iter().map(|s| (s.site as f64, s.langs[lang].shifted.total())).collect(),
        })
        .collect();
    series.push(Series { name: "mean".into(), points: g.sites.iter().map(|s| (s.site as f64, s.mean_shifted_distance)).collect() });
    LineChart {
        title: format!("Subspace distance to {} after the shift, per residual site", g.english),
        x_label: "residual site (input of layer)".into(),
        y_label: "sqrt(Σ log² λ) + ‖Δμ‖".into(),
        series,
        band: band_marker(g),
    }
    .to_svg()
}

fn alignment_chart(g: &Geometry) -> String {
    let mut cos = Vec::new();
    let mut retrieval = Vec::new();
    for lang in targets(g) {
        cos.push(Series {
            name: format!("{lang} parallel"),
            points: g.sites.iter().map(|s| (s.site as f64, s.langs[lang].parallel_cosine)).collect(),
        });
        cos.push(Series {
            name: format!("{lang} mismatched"),
            points: g.sites.iter().map(|s| (s.site as f64, s.langs[lang].mismatched_cosine)).collect(),
        });
        retrieval
            .push(Series { name: lang.clone(), points: g.sites.iter().map(|s| (s.site as f64, s.langs[lang].retrieval_top1)).collect() });
    }
    let cos = LineChart {
        title: format!("Cosine of sentence states with {} (raw)", g.english),
        x_label: "residual site".into(),
        y_label: "mean cosine".into(),
        series: cos,
        band: band_marker(g),
    };
    let retrieval = LineChart {
        title: format!("Translation retrieval from {} (centred states)", g.english),
        x_label: "residual site".into(),
        y_label: "top-1 accuracy".into(),
        series: retrieval,
        band: band_marker(g),
    };
    rosetta_viz::stack_vertically(&[cos.to_svg(), retrieval.to_svg()])
}

/// PCA scatters at the first layer's output, the band's middle and the last layer.
fn pca_chart(g: &Geometry) -> String {
    let last = g.num_layers;
    let middle = (g.band.to + g.band.back) / 2;
    let charts: Vec<String> = [1.min(last), middle, last]
        .into_iter()
        .map(|site| {
            let s = &g.sites[site];
            ScatterChart {
                title: format!("Site {site}: sentence states, first two principal components"),
                groups: s
                    .pca
                    .iter()
                    .map(|(lang, pts)| ScatterGroup {
                        name: lang.clone(),
                        points: pts.iter().map(|p| (p[0] as f64, p[1] as f64)).collect(),
                    })
                    .collect(),
            }
            .to_svg()
        })
        .collect();
    rosetta_viz::stack_vertically(&charts)
}
