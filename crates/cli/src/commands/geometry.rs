//! `rosetta geometry`: ShifCon's language geometry per layer — language vectors, the subspace
//! distance of shifted states to English (the band criterion), parallel-pair cosines and
//! retrieval, a 2-D PCA per site — and the chosen band [L_to, L_bk). Writes `geometry.json` (also
//! what the web lab reads), `distance.svg`, `alignment.svg` and `pca.svg`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use rosetta_data::{BadLines, ParallelCorpus};
use rosetta_shifcon::charts;
use rosetta_shifcon::geometry::{Geometry, GeometryOptions};
use rosetta_shifcon::measure::{MeasureOptions, measure_geometry_blocking};
use rosetta_shifcon::states::StateOptions;
use rosetta_shifcon::subspace::DistanceOptions;
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
    /// The band starts at ⌈EARLIEST_START · layers⌉ or later (0: anywhere after the first layer).
    #[arg(long, default_value_t = 1.0 / 3.0)]
    earliest_start: f64,
    /// Resamples of the sentences for the band's uncertainty (0: none).
    #[arg(long, default_value_t = 200)]
    bootstrap: usize,
    /// Sentence states and vectors as Rosetta makes them, or as the released ShifCon code does
    /// (`released`: every token pooled, start token included, unit length).
    #[arg(long, default_value = "rosetta")]
    conventions: rosetta_shifcon::Conventions,
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Output directory.
    #[arg(long, default_value = "out/geometry")]
    out: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    anyhow::ensure!(args.langs.contains(&args.english), "--langs must include the dominant language `{}`", args.english);
    anyhow::ensure!(args.langs.len() >= 2, "--langs needs the dominant language and at least one other");
    anyhow::ensure!((0.0..1.0).contains(&args.earliest_start), "--earliest-start must be in [0, 1) (got {})", args.earliest_start);
    let parallel = args.parallel.clone().unwrap_or_else(|| rosetta_data::corpus::CorpusDir::embedded().parallel_train());
    let (corpus, _) = ParallelCorpus::read(&parallel, BadLines::Fail)?;
    let aligned = corpus.aligned(&args.langs)?;
    let n = args.sentences.min(aligned.len());
    if n < args.sentences {
        eprintln!("note: {} has {n} records with all of {}; using those", parallel.display(), args.langs.join(", "));
    }
    let texts: BTreeMap<String, Vec<&str>> =
        args.langs.iter().enumerate().map(|(k, lang)| (lang.clone(), aligned.iter().take(n).map(|(_, t)| t[k]).collect())).collect();
    rosetta_shifcon::measure::check_sentences(&texts, &args.english)
        .with_context(|| format!("{}: records with all of {}", parallel.display(), args.langs.join(", ")))?;
    let (_, model) = args.model.load()?;
    let checkpoint_tokenizer = args.model.open()?.tokenizer;
    let layers = model.num_layers();

    let options = MeasureOptions {
        states: StateOptions { batch_size: args.batch_size, conventions: args.conventions, ..Default::default() },
        geometry: GeometryOptions {
            english: args.english.clone(),
            distance: DistanceOptions { dims: args.dims, shrinkage: args.shrinkage },
            beta: args.beta,
            earliest_start: args.earliest_start,
            bootstrap: args.bootstrap,
            ..Default::default()
        },
    };
    let start = Instant::now();
    let bar = progress((n * args.langs.len()) as u64, "sentence states, then the analysis");
    let geometry = measure_geometry_blocking(&model, &checkpoint_tokenizer, &texts, &options, |done, _| bar.set_position(done as u64))?;
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    print_table(&geometry);
    let band = &geometry.band;
    println!(
        "\nband (β = {}, from site {} on): L_to = {}, L_bk = {} — layers {}..{} run in the `{}` subspace; it {}. \
         All sentences pick {}..{}; with no earliest start, {}..{}. The {} individually closest sites {:?} {}",
        band.beta,
        band.earliest,
        band.to,
        band.back,
        band.to,
        band.back - 1,
        geometry.english,
        band.confidence(),
        band.point_estimate[0],
        band.point_estimate[1],
        band.unrestricted[0],
        band.unrestricted[1],
        band.smallest_sites.len(),
        band.smallest_sites,
        if band.contiguous { "are that window" } else { "are not contiguous" }
    );
    if let Some(stability) = &band.stability {
        let wins: Vec<String> =
            stability.wins.iter().map(|w| format!("{}..{} {:.0} %", w.window[0], w.window[1], 100.0 * w.frequency)).collect();
        println!("windows under resampling: {}", wins.join(", "));
    }
    println!("time: {n} sentences × {} languages × {} sites: {seconds:.1} s (forward passes and analysis)", args.langs.len(), layers + 1);

    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let mut record = serde_json::to_value(&geometry)?;
    record["model"] = json!(args.model.model_path()?.display().to_string());
    record["parallel"] = json!(parallel.display().to_string());
    record["timing"] = json!({"sentences": n, "languages": args.langs.len(), "sites": layers + 1,
        "seconds": seconds, "device": format!("{:?}", args.model.device)});
    write_json(&args.out.join("geometry.json"), &record)?;
    write_result(&args.out.join("distance.svg"), charts::distance_chart(&geometry).as_bytes())?;
    write_result(&args.out.join("alignment.svg"), charts::alignment_chart(&geometry).as_bytes())?;
    write_result(&args.out.join("pca.svg"), charts::pca_chart(&geometry).as_bytes())?;
    let mut written = vec!["geometry.json", "distance.svg", "alignment.svg", "pca.svg"];
    if let Some(svg) = charts::band_stability_chart(&geometry) {
        write_result(&args.out.join("band.svg"), svg.as_bytes())?;
        written.push("band.svg");
    }
    println!("wrote {}/{{{}}}", args.out.display(), written.join(", "));
    Ok(())
}

fn targets(g: &Geometry) -> Vec<&String> {
    g.langs.iter().filter(|l| **l != g.english).collect()
}

fn print_table(g: &Geometry) {
    let mut header = vec!["site".to_string()];
    for lang in targets(g) {
        header.extend([
            format!("{lang} cov"),
            format!("{lang} Δμ held out"),
            format!("{lang} noise"),
            format!("{lang} Δμ raw"),
            format!("{lang} cos"),
            format!("{lang} R@1"),
        ]);
    }
    let rows: Vec<Vec<String>> = g
        .sites
        .iter()
        .map(|s| {
            let mut row = vec![format!("{}{}", s.site, if (g.band.to..g.band.back).contains(&s.site) { " *" } else { "" })];
            for lang in targets(g) {
                let l = &s.langs[lang];
                row.extend([
                    format!("{:.2}", l.shifted.covariance),
                    format!("{:.2}", l.shifted.mean),
                    format!("{:.2}", l.shifted.mean_noise),
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
