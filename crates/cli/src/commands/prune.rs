//! `rosetta prune`: Wanda / magnitude / random pruning of every decoder linear layer, calibrated
//! on translation or monolingual prompts (Kim et al. 2024), written as an HF directory with the
//! bit-packed masks; `rosetta prune-sweep`: the comparison table over sparsities and methods.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use rosetta_data::{BadLines, ParallelCorpus};
use rosetta_kernels::masking::Sparsity;
use rosetta_model::export::{ExportOptions, export_hf};
use rosetta_model::{CausalLm, Checkpoint};
use rosetta_prune::CalibKind;
use rosetta_prune::masks::masks_to_safetensors;
use rosetta_prune::{PruneMethod, PruneOptions, PruneSummary, ScoreRule, prune_model};
use rosetta_viz::{LineChart, Series, stack_vertically};
use serde_json::json;

use crate::commands::calib_args::CalibArgs;
use crate::commands::score::{default_parallel_path, score_parallel};
use crate::model_args::ModelArgs;
use crate::output::{progress, table, write_json, write_result};

#[derive(clap::Args, Debug, Clone)]
pub struct PruneArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[arg(long, default_value = "wanda", value_parser = |s: &str| s.parse::<PruneMethod>().map_err(|e| e.to_string()))]
    method: PruneMethod,
    /// Calibration prompts for Wanda.
    #[arg(long, default_value = "translation", value_parser = |s: &str| s.parse::<CalibKind>().map_err(|e| e.to_string()))]
    calib: CalibKind,
    /// Fraction of each output row's weights to zero, in [0, 1).
    #[arg(long, default_value_t = 0.5)]
    sparsity: f64,
    /// N:M sparsity instead (keep N of every M consecutive inputs), e.g. 2:4.
    #[arg(long)]
    nm: Option<String>,
    /// `plain` Wanda, or `mt-code`: s_mt ⊙ (s_mt / s_code), also calibrating on code.
    #[arg(long, default_value = "plain", value_parser = parse_rule)]
    score: ScoreRule,
    #[command(flatten)]
    calibration: CalibArgs,
    /// Output HF directory (with `masks.safetensors`).
    #[arg(long)]
    out: PathBuf,
    #[arg(long)]
    overwrite: bool,
    /// Store the pruned weights compressed (values + 1-bit map; Rosetta-only, much smaller).
    #[arg(long)]
    sparse: bool,
    /// Weight dtype of the export: f32, f16 or bf16.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Also write the calibration token ids as JSON (`{"samples": [[ids]]}`), for the reference
    /// benchmark `scripts/reference/bench_wanda.py`.
    #[arg(long)]
    save_calibration: Option<PathBuf>,
}

fn parse_rule(s: &str) -> Result<ScoreRule, String> {
    match s {
        "plain" => Ok(ScoreRule::Plain),
        "mt-code" => Ok(ScoreRule::MtCode),
        other => Err(format!("unknown score `{other}` (use plain or mt-code)")),
    }
}

fn parse_sparsity(sparsity: f64, nm: Option<&str>) -> Result<Sparsity> {
    if let Some(nm) = nm {
        let parse = |v: &str| v.trim().parse::<usize>().ok();
        let (n, m) = nm
            .split_once(':')
            .and_then(|(n, m)| Some((parse(n)?, parse(m)?)))
            .with_context(|| format!("--nm `{nm}` is not N:M (e.g. 2:4)"))?;
        anyhow::ensure!(n > 0 && n < m, "--nm {n}:{m}: N:M sparsity keeps N of every M weights and needs 0 < N < M");
        return Ok(Sparsity::NM { n, m });
    }
    anyhow::ensure!(
        (0.0..1.0).contains(&sparsity),
        "--sparsity {sparsity} is outside [0, 1): 0 keeps everything, 1 would delete every weight"
    );
    Ok(Sparsity::Unstructured(sparsity))
}

/// Prunes a freshly loaded model; returns it with the summary, the masks' bytes and the seconds
/// spent on calibration + masking.
fn prune_loaded(
    args: &PruneArgs,
    checkpoint: &Checkpoint,
    mut model: CausalLm,
    sparsity: Sparsity,
) -> Result<(CausalLm, PruneSummary, Vec<u8>, f64)> {
    let start = Instant::now();
    let mut calibration = match args.method {
        PruneMethod::Wanda => Some(args.calibration.calibration(args.calib, &model, &checkpoint.tokenizer)?),
        _ => None,
    };
    let mut code = match (args.method, args.score) {
        (PruneMethod::Wanda, ScoreRule::MtCode) => Some(args.calibration.calibration(CalibKind::Code, &model, &checkpoint.tokenizer)?),
        _ => None,
    };
    if let (Some(path), Some(c)) = (&args.save_calibration, &calibration) {
        write_json(path, &json!({"samples": c.sequences()}))?;
    }
    let options = PruneOptions { method: args.method, sparsity, rule: args.score, seed: args.calibration.seed };
    let bar = progress(model.num_layers() as u64, "pruning layers");
    let (masks, summary) = prune_model(&mut model, calibration.as_mut(), code.as_mut(), &options, |done, _| bar.set_position(done as u64))?;
    let bytes = masks_to_safetensors(&masks)?;
    let seconds = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    Ok((model, summary, bytes, seconds))
}

pub fn run(args: PruneArgs) -> Result<()> {
    let sparsity = parse_sparsity(args.sparsity, args.nm.as_deref())?;
    let (checkpoint, model) = args.model.load()?;
    let (model, summary, masks, seconds) = prune_loaded(&args, &checkpoint, model, sparsity)?;
    let extras = json!({"pruning": {
        "method": args.method, "calibration": args.calib, "score": args.score, "sparsity": format!("{sparsity:?}"),
        "achieved_sparsity": summary.sparsity(), "prompts": args.calibration.prompts, "langs": args.calibration.langs,
        "base_model": checkpoint.origin.0, "paper": "Kim et al. 2024, Pruning Multilingual LLMs for Multilingual Inference",
    }});
    let options = ExportOptions {
        overwrite: args.overwrite,
        extras: Some(extras),
        dtype: args.dtype.parse()?,
        sparse_from: args.sparse.then_some(crate::commands::export::SPARSE_FROM),
    };
    let dir = export_hf(&model, &checkpoint.tokenizer, &args.out, &options).with_context(|| format!("writing {}", args.out.display()))?;
    let weights = std::fs::metadata(dir.join("model.safetensors")).map(|m| m.len()).unwrap_or(0);
    write_result(&dir.join("masks.safetensors"), &masks)?;
    println!(
        "{:?} pruning ({:?} calibration, {:?}): {:.1}% of decoder linear weights zeroed in {seconds:.1} s (calibration + masks)",
        args.method,
        args.calib,
        sparsity,
        summary.sparsity() * 100.0
    );
    println!(
        "wrote {} (weights {:.1} MB{}; masks {:.1} MB, 1 bit per weight)",
        dir.display(),
        weights as f64 / 1e6,
        if args.sparse { ", compressed" } else { "" },
        masks.len() as f64 / 1e6
    );
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct SweepArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[arg(long, value_delimiter = ',', default_value = "0.1,0.3,0.5")]
    sparsities: Vec<f64>,
    /// Variants: magnitude, random, wanda-monolingual, wanda-translation, wanda-mt-code.
    #[arg(long, value_delimiter = ',', default_value = "magnitude,random,wanda-monolingual,wanda-translation")]
    variants: Vec<String>,
    #[command(flatten)]
    calibration: CalibArgs,
    /// Languages scored on the held-out parallel text.
    #[arg(long, value_delimiter = ',', default_value = "en,hu,de,zh,sw")]
    score_langs: Vec<String>,
    #[arg(long, default_value_t = 50)]
    max_sentences: usize,
    /// Translation-choice items per non-English language (zero-shot accuracy); 0 skips it.
    #[arg(long, default_value_t = 25)]
    choice_items: usize,
    /// Report directory (report.md, report.json, pruning.svg).
    #[arg(long, default_value = "reports/pruning")]
    out: PathBuf,
}

fn variant(name: &str) -> Result<(PruneMethod, CalibKind, ScoreRule)> {
    Ok(match name {
        "magnitude" => (PruneMethod::Magnitude, CalibKind::Translation, ScoreRule::Plain),
        "random" => (PruneMethod::Random, CalibKind::Translation, ScoreRule::Plain),
        "wanda-monolingual" => (PruneMethod::Wanda, CalibKind::Monolingual, ScoreRule::Plain),
        "wanda-translation" => (PruneMethod::Wanda, CalibKind::Translation, ScoreRule::Plain),
        "wanda-mt-code" => (PruneMethod::Wanda, CalibKind::Translation, ScoreRule::MtCode),
        other => anyhow::bail!("unknown variant `{other}` (magnitude, random, wanda-monolingual, wanda-translation, wanda-mt-code)"),
    })
}

pub fn sweep(args: SweepArgs) -> Result<()> {
    let variants: Vec<(String, (PruneMethod, CalibKind, ScoreRule))> =
        args.variants.iter().map(|v| Ok((v.clone(), variant(v)?))).collect::<Result<_>>()?;
    let sparsities: Vec<Sparsity> = args.sparsities.iter().map(|s| parse_sparsity(*s, None)).collect::<Result<_>>()?;
    let (corpus, _) = ParallelCorpus::read(&default_parallel_path(), BadLines::Fail)?;
    let checkpoint = args.model.open()?;
    let device = args.model.device()?;
    let choice_items = if args.choice_items > 0 {
        crate::commands::classify::items(crate::commands::classify::Task::TranslationChoice, &args.score_langs, args.choice_items, 3)?
    } else {
        Vec::new()
    };
    // bits/char per language, and translation-choice accuracy under "acc:<lang>".
    let score = |model: &CausalLm| -> Result<BTreeMap<String, f64>> {
        let results = score_parallel(model, &checkpoint.tokenizer, &corpus, &args.score_langs, "en", args.max_sentences, 8, None)?;
        let mut out: BTreeMap<String, f64> = results.into_iter().map(|r| (r.lang, r.cost.bits_per_char())).collect();
        for (lang, (correct, total)) in crate::commands::classify::accuracy(model, &checkpoint.tokenizer, &choice_items)? {
            out.insert(format!("acc:{lang}"), correct as f64 / total as f64);
        }
        Ok(out)
    };
    let columns: Vec<String> = {
        let mut c = args.score_langs.clone();
        if args.choice_items > 0 {
            c.extend(args.score_langs.iter().filter(|l| l.as_str() != "en").map(|l| format!("acc:{l}")));
        }
        c
    };
    let base = score(&args.model.load_model(&checkpoint, &device)?)?;
    eprintln!("unpruned: {base:?}");
    let mut records = vec![json!({"variant": "unpruned", "sparsity": 0.0, "bits_per_char": base, "seconds": 0.0})];
    let mut results: BTreeMap<(String, usize), (BTreeMap<String, f64>, f64)> = BTreeMap::new();
    for (name, (method, calib, rule)) in &variants {
        for (si, sparsity) in sparsities.iter().enumerate() {
            let prune_args = PruneArgs {
                model: args.model.clone(),
                method: *method,
                calib: *calib,
                sparsity: 0.0,
                nm: None,
                score: *rule,
                calibration: args.calibration.clone(),
                out: PathBuf::new(),
                overwrite: false,
                sparse: false,
                dtype: "f32".into(),
                save_calibration: None,
            };
            let (model, summary, _, seconds) =
                prune_loaded(&prune_args, &checkpoint, args.model.load_model(&checkpoint, &device)?, *sparsity)?;
            let bits = score(&model)?;
            eprintln!("{name} {sparsity:?}: {:.1}% zero, {seconds:.1} s; {bits:?}", summary.sparsity() * 100.0);
            records.push(json!({"variant": name, "sparsity": args.sparsities[si], "achieved_sparsity": summary.sparsity(),
                "bits_per_char": bits, "seconds_calibration_and_masks": seconds}));
            results.insert((name.clone(), si), (bits, seconds));
        }
    }

    let mut header = vec!["variant".to_string(), "sparsity".to_string()];
    header.extend(columns.iter().cloned());
    header.push("prune s".into());
    let mut rows = vec![{
        let mut r = vec!["unpruned".to_string(), "0".to_string()];
        r.extend(columns.iter().map(|l| format!("{:.3}", base[l])));
        r.push("-".into());
        r
    }];
    for (si, s) in args.sparsities.iter().enumerate() {
        for (name, _) in &variants {
            let (bits, seconds) = &results[&(name.clone(), si)];
            let mut r = vec![name.clone(), format!("{s}")];
            r.extend(columns.iter().map(|l| format!("{:.3}", bits[l])));
            r.push(format!("{seconds:.1}"));
            rows.push(r);
        }
    }
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let text = table(&header, &rows);
    println!(
        "held-out bits/char (parallel test, {} sentences per language); acc:X = zero-shot translation-choice accuracy (4 choices, {} items):\n{text}",
        args.max_sentences, args.choice_items
    );

    let charts: Vec<String> = args
        .score_langs
        .iter()
        .map(|lang| {
            let mut series: Vec<Series> = variants
                .iter()
                .map(|(name, _)| Series {
                    name: name.clone(),
                    points: std::iter::once((0.0, base[lang]))
                        .chain(args.sparsities.iter().enumerate().map(|(si, s)| (*s, results[&(name.clone(), si)].0[lang])))
                        .collect(),
                })
                .collect();
            series.sort_by(|a, b| a.name.cmp(&b.name));
            LineChart {
                title: format!("{lang}: bits/char after pruning"),
                x_label: "sparsity".into(),
                y_label: "bits / char".into(),
                series,
                band: None,
            }
            .to_svg()
        })
        .collect();
    std::fs::create_dir_all(&args.out)?;
    write_result(&args.out.join("pruning.svg"), stack_vertically(&charts).as_bytes())?;
    let md = format!(
        "# Pruning {} (Kim et al. 2024)\n\nHeld-out bits/char on the embedded parallel test split ({} sentences per language); `acc:X` is zero-shot \
         translation-choice accuracy (X sentence → its English translation among 4, mean log-prob per token; chance 25%); \
         Wanda calibrated on {} prompts ({}-shot translation or monolingual documents, langs {}); `prune s` = calibration + masks.\n\n```\n{text}\n```\n\n![bits/char vs sparsity](pruning.svg)\n",
        checkpoint.origin.0,
        args.max_sentences,
        args.calibration.prompts,
        args.calibration.shots,
        args.calibration.langs.join(","),
    );
    write_result(&args.out.join("report.md"), md.as_bytes())?;
    write_json(&args.out.join("report.json"), &json!({"model": checkpoint.origin.0, "results": records}))?;
    println!("report in {}", args.out.display());
    Ok(())
}
