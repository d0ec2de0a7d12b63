//! `rosetta vocab`: vocabulary extension for a target language (Csaki et al. 2023) — train a
//! target BPE, extend a model's tokenizer with real merges and resize the model, report
//! fertility before/after, and the two-stage training recipe.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rosetta_data::BadLines;
use rosetta_data::corpus::CorpusDir;
use rosetta_data::monolingual::{Document, read_documents};
use rosetta_data::parallel::ParallelCorpus;
use rosetta_model::export::{ExportOptions, export_hf};
use rosetta_model::scoring::{ScoreOptions, TextCost, score_texts_blocking};
use rosetta_model::{CausalLm, Checkpoint, TextTokenizer};
use rosetta_viz::{BarChart, BarGroup};
use rosetta_vocab::fertility::{Fertility, fertility};
use rosetta_vocab::{BpeTrainOptions, ExtendOptions, InitMethod, Mode};
use serde_json::{Value, json};

use crate::model_args::ModelArgs;
use crate::output::{table, write_json, write_result};

#[derive(clap::Subcommand, Debug)]
pub enum VocabCommand {
    /// Train a BPE tokenizer on target-language text with the base model's text pipeline.
    Train(TrainArgs),
    /// Add (or swap in) K target-language BPE tokens and resize the model; writes an HF directory.
    Extend(ExtendArgs),
    /// Fertility per language before/after, the new tokens with their old pieces, a plot, and
    /// optionally held-out bits/char of several models.
    Report(ReportArgs),
    /// Extend, train the new rows (stage 1), then mixed continued pretraining (stage 2).
    Recipe(RecipeArgs),
}

#[derive(clap::Args, Debug, Clone)]
pub struct CorpusArgs {
    /// Corpus directory (`rosetta data build` layout). Default: the embedded corpus.
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// Extra target-language text: .jsonl documents or plain text in --lang.
    #[arg(long)]
    text: Vec<PathBuf>,
}

impl CorpusArgs {
    fn dir(&self) -> CorpusDir {
        self.corpus.clone().map(CorpusDir::new).unwrap_or_else(CorpusDir::embedded)
    }

    /// Training text in `lang`: monolingual train documents, the `lang` side of the parallel
    /// train split, and any --text files.
    fn texts(&self, lang: &str) -> Result<Vec<String>> {
        let dir = self.dir();
        let mut texts: Vec<String> = dir.read_monolingual_train()?.into_iter().filter(|d| d.lang == lang).map(|d| d.text).collect();
        if dir.parallel_train().exists() {
            let (parallel, _) = ParallelCorpus::read(&dir.parallel_train(), BadLines::Fail)?;
            texts.extend(parallel.records.iter().filter_map(|r| r.texts.get(lang).cloned()));
        }
        for path in &self.text {
            let (docs, _) = read_documents(path, Some(lang), BadLines::Fail)?;
            texts.extend(docs.into_iter().filter(|d| d.lang == lang).map(|d| d.text));
        }
        anyhow::ensure!(
            !texts.is_empty(),
            "no `{lang}` text in {} or --text; choose a language the corpus has (`rosetta data stats`) or pass --text FILE",
            dir.root.display()
        );
        Ok(texts)
    }
}

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[arg(long)]
    lang: String,
    #[command(flatten)]
    corpus: CorpusArgs,
    #[arg(long, default_value_t = 8000)]
    vocab_size: usize,
    #[arg(long, default_value_t = 2)]
    min_frequency: u64,
    /// Where to write the trained tokenizer.json.
    #[arg(long)]
    out: PathBuf,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ExtendArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[arg(long)]
    lang: String,
    #[command(flatten)]
    corpus: CorpusArgs,
    /// How many new tokens (K).
    #[arg(long, default_value_t = 1000)]
    new_tokens: usize,
    #[arg(long, default_value = "add", value_parser = |s: &str| s.parse::<Mode>().map_err(|e| e.to_string()))]
    mode: Mode,
    #[arg(long, default_value = "mean", value_parser = |s: &str| s.parse::<InitMethod>().map_err(|e| e.to_string()))]
    init: InitMethod,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output HF directory (model.safetensors, config.json, tokenizer.json, rosetta.json).
    #[arg(long)]
    out: PathBuf,
    #[arg(long)]
    overwrite: bool,
}

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// The base model (or its tokenizer).
    #[command(flatten)]
    model: ModelArgs,
    /// The extended model directory written by `vocab extend` or `vocab recipe`.
    #[arg(long)]
    extended: PathBuf,
    #[command(flatten)]
    corpus: CorpusArgs,
    /// Models to score on held-out monolingual text, as NAME=PATH (repeatable).
    #[arg(long = "score", value_name = "NAME=PATH")]
    score: Vec<String>,
    /// Languages for bits/char (default: the target and English).
    #[arg(long, value_delimiter = ',')]
    score_langs: Vec<String>,
    #[arg(long, default_value_t = 100)]
    docs_per_lang: usize,
    /// Report directory (report.md, report.json, fertility.svg).
    #[arg(long)]
    out: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct RecipeArgs {
    #[command(flatten)]
    extend: ExtendArgs,
    #[arg(long, default_value_t = 40)]
    stage1_steps: usize,
    #[arg(long, default_value_t = 80)]
    stage2_steps: usize,
    #[arg(long, default_value = "hu:0.75,en:0.25")]
    mix: String,
    #[arg(long, default_value_t = 4)]
    batch_size: usize,
    #[arg(long, default_value_t = 256)]
    seq_len: usize,
    #[arg(long, default_value_t = 1e-3)]
    stage1_lr: f64,
    #[arg(long, default_value_t = 1e-4)]
    stage2_lr: f64,
    /// Training devices (e.g. cuda, wgpu, or cpu,cpu).
    #[arg(long, value_delimiter = ',', default_value = "cpu")]
    train_devices: Vec<String>,
    /// Continue stopped stages from their checkpoints.
    #[arg(long)]
    resume: bool,
}

pub fn run(command: VocabCommand) -> Result<()> {
    match command {
        VocabCommand::Train(args) => train(args),
        VocabCommand::Extend(args) => extend(&args).map(drop),
        VocabCommand::Report(args) => report(args),
        VocabCommand::Recipe(args) => recipe(args),
    }
}

fn train(args: TrainArgs) -> Result<()> {
    let checkpoint = args.model.open()?;
    let texts = args.corpus.texts(&args.lang)?;
    let options = BpeTrainOptions { vocab_size: args.vocab_size, min_frequency: args.min_frequency };
    let trained =
        rosetta_vocab::train::train_bpe(checkpoint.tokenizer.inner(), &checkpoint.tokenizer.origin().to_string(), &texts, options)?;
    let json = trained.to_string(true).map_err(|e| anyhow::anyhow!("{e}"))?;
    write_result(&args.out, json.as_bytes())?;
    println!("trained a {}-token {} BPE on {} texts → {}", trained.get_vocab_size(false), args.lang, texts.len(), args.out.display());
    Ok(())
}

fn extend(args: &ExtendArgs) -> Result<PathBuf> {
    let (checkpoint, mut model) = args.model.load()?;
    let vocab = model.config().vocab_size;
    let base = rosetta_vocab::base_tables(&checkpoint.tokenizer, vocab)?;
    let texts = args.corpus.texts(&args.lang)?;
    let options =
        ExtendOptions { lang: args.lang.clone(), new_tokens: args.new_tokens, mode: args.mode, first_new_id: vocab as u32, max_rounds: 64 };
    eprintln!("choosing {} {} tokens from {} texts…", args.new_tokens, args.lang, texts.len());
    let extension = rosetta_vocab::plan(&checkpoint.tokenizer, &base, &texts, &options)?;
    let (tokenizer, record) = rosetta_vocab::apply(&mut model, &checkpoint.tokenizer, &extension, args.init, args.seed)?;
    let mut extras = record;
    extras["vocab_extension"]["lang"] = json!(args.lang);
    extras["vocab_extension"]["mode"] = json!(args.mode);
    extras["vocab_extension"]["base_model"] = json!(args.model.model_path()?.display().to_string());
    let options = ExportOptions { overwrite: args.overwrite, extras: Some(extras), ..Default::default() };
    let dir = export_hf(&model, &tokenizer, &args.out, &options).with_context(|| format!("writing {}", args.out.display()))?;
    let before = fertility(checkpoint.tokenizer.inner(), &documents(&texts, &args.lang))?;
    let after = fertility(tokenizer.inner(), &documents(&texts, &args.lang))?;
    println!(
        "{} new {} tokens ({:?} mode, {:?} init; {} candidates rejected in {} verification rounds); vocabulary {} → {}",
        extension.new_tokens.len(),
        args.lang,
        args.mode,
        args.init,
        extension.rejected,
        extension.rounds,
        vocab,
        model.config().vocab_size
    );
    if let (Some(b), Some(a)) = (before.get(&args.lang), after.get(&args.lang)) {
        println!(
            "{} training text: {:.4} → {:.4} tokens/char ({:+.1}%)",
            args.lang,
            b.tokens_per_char(),
            a.tokens_per_char(),
            (a.tokens_per_char() / b.tokens_per_char() - 1.0) * 100.0
        );
    }
    println!("wrote {}", dir.display());
    Ok(dir)
}

fn documents(texts: &[String], lang: &str) -> Vec<Document> {
    texts.iter().map(|t| Document { lang: lang.to_string(), text: t.clone(), source: None, id: None }).collect()
}

/// Held-out documents: the monolingual test split plus the parallel test split's sentences.
fn held_out(dir: &CorpusDir) -> Result<Vec<Document>> {
    let mut docs = dir.read_monolingual_test()?;
    if dir.parallel_test().exists() {
        let (parallel, _) = ParallelCorpus::read(&dir.parallel_test(), BadLines::Fail)?;
        for r in &parallel.records {
            docs.extend(r.texts.iter().map(|(lang, text)| Document { lang: lang.clone(), text: text.clone(), source: None, id: None }));
        }
    }
    Ok(docs)
}

fn report(args: ReportArgs) -> Result<()> {
    let base = args.model.open()?;
    let extended = Checkpoint::open(&args.extended, None)?;
    let record = extended.extras.as_ref().and_then(|e| e.get("vocab_extension")).cloned().with_context(|| {
        format!(
            "{} has no vocab_extension record in rosetta.json: give a directory written by `rosetta vocab extend`",
            args.extended.display()
        )
    })?;
    let lang = record.get("lang").and_then(Value::as_str).unwrap_or("hu").to_string();
    let dir = args.corpus.dir();
    let docs = held_out(&dir)?;
    let before = fertility(base.tokenizer.inner(), &docs)?;
    let after = fertility(extended.tokenizer.inner(), &docs)?;

    let mut rows = Vec::new();
    let mut fertility_json = serde_json::Map::new();
    for (l, b) in &before {
        let a = &after[l];
        let change = (a.tokens_per_char() / b.tokens_per_char() - 1.0) * 100.0;
        rows.push(vec![
            l.clone(),
            b.chars.to_string(),
            format!("{:.4}", b.tokens_per_char()),
            format!("{:.4}", a.tokens_per_char()),
            format!("{change:+.1}%"),
            format!("{:.3}", b.tokens_per_word()),
            format!("{:.3}", a.tokens_per_word()),
        ]);
        fertility_json.insert(
            l.clone(),
            json!({"before": fertility_record(b), "after": fertility_record(a), "tokens_per_char_change_percent": change}),
        );
    }
    let fertility_table =
        table(&["lang", "chars", "tok/char before", "tok/char after", "change", "tok/word before", "tok/word after"], &rows);
    println!("held-out fertility ({} documents of {}):\n{fertility_table}", docs.len(), dir.root.display());

    // The new tokens with their old segmentation, most used first.
    let ids: Vec<u32> = record["new_token_ids"].as_array().into_iter().flatten().filter_map(|v| v.as_u64().map(|v| v as u32)).collect();
    let lang_docs: Vec<&Document> = docs.iter().filter(|d| d.lang == lang).collect();
    let texts: Vec<String> = lang_docs.iter().map(|d| d.text.clone()).collect();
    let usage = rosetta_vocab::extend::count_ids(extended.tokenizer.inner(), &texts)?;
    let mut tokens: Vec<(u32, usize)> = ids.iter().map(|&id| (id, usage.get(&id).copied().unwrap_or(0))).collect();
    tokens.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut token_rows = Vec::new();
    for &(id, count) in tokens.iter().take(40) {
        let text = extended.tokenizer.decode(&[id], false)?;
        let old = base.tokenizer.encode(&text, false)?;
        let pieces: Vec<String> =
            old.iter().map(|&o| base.tokenizer.decode(&[o], false).map(|p| format!("{p:?}"))).collect::<rosetta_model::Result<_>>()?;
        token_rows.push(vec![id.to_string(), format!("{text:?}"), pieces.join(" + "), count.to_string()]);
    }
    let tokens_table = table(&["id", "new token", "old pieces", "uses (held-out)"], &token_rows);
    println!("\nmost used new {lang} tokens on held-out text:\n{tokens_table}");

    let chart = BarChart {
        title: format!("Tokens per character, before and after extending for {lang}"),
        y_label: "tokens / char".into(),
        series: vec!["base".into(), "extended".into()],
        groups: before
            .iter()
            .map(|(l, b)| BarGroup { label: l.clone(), values: vec![b.tokens_per_char(), after[l].tokens_per_char()] })
            .collect(),
    };
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    write_result(&args.out.join("fertility.svg"), chart.to_svg().as_bytes())?;

    let score_langs = if args.score_langs.is_empty() { vec![lang.clone(), "en".to_string()] } else { args.score_langs.clone() };
    let (score_table, score_json) = score_models(&args.score, &score_langs, &dir, args.docs_per_lang, &args.model)?;
    if let Some(t) = &score_table {
        println!("\nheld-out bits/char ({} monolingual test documents per language):\n{t}", args.docs_per_lang);
    }

    let mut md = format!(
        "# Vocabulary extension report: {lang}\n\nBase: `{}`  \nExtended: `{}` ({} new tokens, mode {}, init {})\n\n\
         ## Fertility on held-out text\n\n```\n{fertility_table}\n```\n\n![fertility](fertility.svg)\n\n## Most used new tokens\n\n```\n{tokens_table}\n```\n",
        base.origin,
        args.extended.display(),
        ids.len(),
        record.get("mode").and_then(Value::as_str).unwrap_or("?"),
        record.get("init").and_then(Value::as_str).unwrap_or("?"),
    );
    if let Some(t) = &score_table {
        md.push_str(&format!("\n## Held-out bits/char\n\nBits per character do not depend on the tokenizer, so models with different vocabularies compare directly.\n\n```\n{t}\n```\n"));
    }
    write_result(&args.out.join("report.md"), md.as_bytes())?;
    write_json(
        &args.out.join("report.json"),
        &json!({"lang": lang, "fertility": fertility_json, "new_tokens": token_rows, "bits_per_char": score_json, "extension": record}),
    )?;
    println!("\nreport in {}", args.out.display());
    Ok(())
}

fn fertility_record(f: &Fertility) -> Value {
    json!({"documents": f.documents, "chars": f.chars, "words": f.words, "tokens": f.tokens,
        "tokens_per_char": f.tokens_per_char(), "tokens_per_word": f.tokens_per_word()})
}

fn score_models(
    specs: &[String],
    langs: &[String],
    dir: &CorpusDir,
    per_lang: usize,
    device_args: &ModelArgs,
) -> Result<(Option<String>, Value)> {
    if specs.is_empty() {
        return Ok((None, Value::Null));
    }
    let docs = dir.read_monolingual_test()?;
    let mut by_lang: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for lang in langs {
        let chosen: Vec<&str> = docs.iter().filter(|d| &d.lang == lang).take(per_lang).map(|d| d.text.as_str()).collect();
        anyhow::ensure!(!chosen.is_empty(), "no held-out `{lang}` documents in {}", dir.monolingual_test().display());
        by_lang.insert(lang, chosen);
    }
    let device = device_args.device()?;
    let mut rows = Vec::new();
    let mut out = serde_json::Map::new();
    for spec in specs {
        let (name, path) = spec.split_once('=').with_context(|| format!("--score `{spec}` is not NAME=PATH"))?;
        let checkpoint = Checkpoint::open(Path::new(path), None)?;
        let model = checkpoint.load(&device)?;
        let mut row = vec![name.to_string()];
        let mut record = serde_json::Map::new();
        for (lang, texts) in &by_lang {
            let cost = bits(&model, &checkpoint.tokenizer, texts)?;
            row.push(format!("{:.3}", cost.bits_per_char()));
            record.insert(lang.to_string(), json!({"bits_per_char": cost.bits_per_char(), "tokens": cost.tokens, "chars": cost.chars}));
        }
        eprintln!("scored {name}");
        rows.push(row);
        out.insert(name.to_string(), Value::Object(record));
    }
    let mut header = vec!["model"];
    header.extend(by_lang.keys().copied());
    Ok((Some(table(&header, &rows)), Value::Object(out)))
}

fn bits(model: &CausalLm, tokenizer: &TextTokenizer, texts: &[&str]) -> Result<TextCost> {
    let options = ScoreOptions::for_model(model);
    Ok(score_texts_blocking(model, tokenizer, texts, &options)?.into_iter().fold(TextCost::default(), |a, b| a + b))
}

fn recipe(args: RecipeArgs) -> Result<()> {
    let out = &args.extend.out;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let extended = out.join("extended");
    if !(args.resume && extended.join("rosetta.json").exists()) {
        let mut extend_args = args.extend.clone();
        extend_args.out = extended.clone();
        extend_args.overwrite = true;
        extend(&extend_args)?;
    }
    let corpus = args.extend.corpus.dir();
    let abs = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
    let (train, eval) = (abs(corpus.monolingual_train()), abs(corpus.monolingual_test()));
    let lang = &args.extend.lang;
    let devices = args.train_devices.iter().map(|d| format!("{d:?}")).collect::<Vec<_>>().join(", ");
    let stage = |name: &str, model: &Path, steps: usize, lr: f64, trainable: &str, mix: &str| -> Result<PathBuf> {
        let run = abs(out.join(name));
        let config = format!(
            "# {name} of `rosetta vocab recipe` (rerun or resume with `rosetta train --config` on this file).\n\
             [model]\npath = {model:?}\ndevices = [{devices}]\n\n\
             [data]\ntrain = [{train:?}]\nmix = {mix:?}\neval = {eval:?}\neval_langs = [{lang:?}, \"en\"]\neval_docs_per_lang = 100\nseq_len = {}\nbatch_size = {}\n\n\
             [optim]\nlr = {lr:e}\nmin_lr = {:e}\nwarmup_steps = {}\nweight_decay = {}\ngrad_clip = 1.0\n\n\
             [freeze]\ntrainable = {trainable:?}\n\n\
             [run]\nsteps = {steps}\nout = {run:?}\neval_every = {steps}\ncheckpoint_every = 20\nkeep_last = 1\nexport = true\n",
            args.seq_len,
            args.batch_size,
            lr / 10.0,
            (steps / 10).max(1),
            if trainable == "all" { 0.1 } else { 0.0 },
            model = abs(model.to_path_buf()),
        );
        let path = out.join(format!("{name}.toml"));
        write_result(&path, config.as_bytes())?;
        let config = rosetta_train::TrainConfig::from_toml_file(&path)?;
        let resume = args.resume && run.join("state.json").exists() || args.resume && run.join("checkpoints").exists();
        println!("\n{name}: {steps} steps, {trainable} trainable, mix {mix} ({})", path.display());
        let summary = crate::commands::train::run_config(&config, resume)?;
        summary.final_model.with_context(|| format!("{name} ended without exporting a model"))
    };
    // Stage 1: only the new rows learn, on target text alone (Csaki et al.'s embedding warm-up).
    let stage1 = stage("stage1", &extended, args.stage1_steps, args.stage1_lr, "new-embedding-rows", &format!("{lang}:1.0"))?;
    // Stage 2: everything trains on the target/English mix.
    let stage2 = stage("stage2", &stage1, args.stage2_steps, args.stage2_lr, "all", &args.mix)?;
    println!("\nfinal model (HF directory): {}", stage2.display());
    Ok(())
}
