//! `rosetta classify`: zero-shot accuracy on labelled multiple-choice items (translation choice,
//! language identification) by mean per-token log-probability of each choice — the protocol
//! Kim et al. use for XNLI and MARC, on the labelled multilingual text reachable here.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use rosetta_data::corpus::CorpusDir;
use rosetta_data::tasks::{ChoiceItem, language_id, translation_choice};
use rosetta_data::{BadLines, ParallelCorpus};
use rosetta_model::choice::choice_logprobs_blocking;
use rosetta_model::{CausalLm, TextTokenizer};
use serde_json::json;

use crate::model_args::ModelArgs;
use crate::output::{progress, table, write_json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Task {
    TranslationChoice,
    LanguageId,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[arg(long, value_enum, default_value = "translation-choice")]
    task: Task,
    #[arg(long, value_delimiter = ',', default_value = "hu,de,zh,th,sw,ny,yo,zu")]
    langs: Vec<String>,
    /// Items per language.
    #[arg(long, default_value_t = 50)]
    items: usize,
    /// Wrong choices per translation-choice item.
    #[arg(long, default_value_t = 3)]
    distractors: usize,
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Items for `task` from the embedded corpus's held-out splits.
pub fn items(task: Task, langs: &[String], per_lang: usize, distractors: usize) -> Result<Vec<ChoiceItem>> {
    let corpus = CorpusDir::embedded();
    Ok(match task {
        Task::TranslationChoice => {
            let (parallel, _) = ParallelCorpus::read(&corpus.parallel_test(), BadLines::Fail)?;
            let mut all = Vec::new();
            for lang in langs.iter().filter(|l| l.as_str() != "en") {
                all.extend(translation_choice(&parallel, lang, per_lang, distractors, 0)?);
            }
            all
        }
        Task::LanguageId => language_id(&corpus.read_monolingual_test()?, langs, per_lang, 300)?,
    })
}

/// Accuracy per language (correct, total).
pub fn accuracy(model: &CausalLm, tokenizer: &TextTokenizer, items: &[ChoiceItem]) -> Result<BTreeMap<String, (usize, usize)>> {
    let bar = progress(items.len() as u64, "classifying");
    let mut out: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for item in items {
        let choices: Vec<&str> = item.choices.iter().map(String::as_str).collect();
        let scores = choice_logprobs_blocking(model, tokenizer, &item.prompt, &choices).context("scoring choices")?;
        let best = scores.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i).unwrap_or(0);
        let entry = out.entry(item.lang.clone()).or_default();
        entry.0 += usize::from(best == item.answer);
        entry.1 += 1;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(out)
}

pub fn run(args: Args) -> Result<()> {
    let items = items(args.task, &args.langs, args.items, args.distractors)?;
    let (checkpoint, model) = args.model.load()?;
    let results = accuracy(&model, &checkpoint.tokenizer, &items)?;
    let chance = match args.task {
        Task::TranslationChoice => 1.0 / (args.distractors + 1) as f64,
        Task::LanguageId => 1.0 / args.langs.len() as f64,
    };
    let rows: Vec<Vec<String>> =
        results.iter().map(|(lang, (c, n))| vec![lang.clone(), n.to_string(), format!("{:.1}%", 100.0 * *c as f64 / *n as f64)]).collect();
    println!("{:?}, zero-shot by mean log-probability per token (chance {:.0}%):", args.task, chance * 100.0);
    println!("{}", table(&["lang", "items", "accuracy"], &rows));
    if let Some(path) = &args.json {
        let langs: serde_json::Map<String, serde_json::Value> =
            results.iter().map(|(l, (c, n))| (l.clone(), json!({"correct": c, "items": n, "accuracy": *c as f64 / *n as f64}))).collect();
        write_json(path, &json!({"task": format!("{:?}", args.task), "chance": chance, "model": checkpoint.origin.0, "languages": langs}))?;
    }
    Ok(())
}
