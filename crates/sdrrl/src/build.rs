//! Building the transfer set (SDRRL's data construction) from English instructions:
//!
//! 1. **answers** — the model's own answer y_en to every x_en (`answers.jsonl`, resumable), or the
//!    reference answers for the translate-then-SFT baseline;
//! 2. **translations** of x_en and y_en into every target, line by line, by the model itself with
//!    few-shot prompts from the parallel corpus (`translations.jsonl`, resumable), or from an
//!    external file;
//! 3. **code-switching** with a lexicon aligned on the parallel corpus;
//! 4. **completions** — a prefix of y_t given, the model writes the rest (`completions.jsonl`);
//! 5. **parallel** pairs as translation instructions.
//!
//! Every generation passes the filters ([`crate::filters`]); the kinds are then sampled to the
//! configured shares and written as instruction JSONL (`transfer.jsonl`, what `rosetta train`'s
//! SFT reads) with each record's kind and provenance, plus `stats.json`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use rosetta_data::{InstructionRecord, ParallelCorpus, language_name};
use rosetta_model::generate::{GenerationConfig, Sampling};
use rosetta_model::tokenizer::chat::{CHATML, ChatMessage, render};
use rosetta_model::{CausalLm, TextTokenizer};
use rosetta_rng::SplitMix64;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::config::{Answers, Kind, SdrrlConfig};
use crate::error::{Result, SdrrlError};
use crate::filters::{Skip, SkipLog};
use crate::generation::{GenerationLog, GenerationStats, Job};
use crate::langid::LanguageId;
use crate::lexicon::Lexicon;

/// One example of the transfer set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferRecord {
    pub id: String,
    pub lang: String,
    pub instruction: String,
    pub response: String,
    pub source: String,
    pub kind: Kind,
    pub provenance: serde_json::Value,
}

/// What a build produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildStats {
    pub instructions: usize,
    pub available: BTreeMap<String, usize>,
    pub written: BTreeMap<String, usize>,
    /// Kinds with a share but no candidate left after the filters.
    pub missing: Vec<String>,
    pub skipped: SkipLog,
    pub generation: BTreeMap<String, GenerationStats>,
    pub transfer: PathBuf,
}

/// Inputs besides the model.
pub struct BuildInputs<'a> {
    pub instructions: &'a [InstructionRecord],
    pub parallel: &'a ParallelCorpus,
    /// Samples for the language identifier (`(lang, text)`).
    pub langid: &'a LanguageId,
    pub model_name: String,
}

/// Stops a build early after this many generation batches per stage (tests of resumption).
#[derive(Debug, Clone, Copy, Default)]
pub struct Interrupt {
    pub after_batches: Option<usize>,
}

fn chat_prompt(tokenizer: &TextTokenizer, instruction: &str) -> Result<String> {
    let template = tokenizer.chat_template.as_deref().unwrap_or(CHATML);
    Ok(render(template, &[ChatMessage::user(instruction)], true, tokenizer.bos_token.as_deref(), tokenizer.eos_token.as_deref())?)
}

/// Token ids whose text contains a line break: a one-line translation stops at any of them.
fn newline_tokens(tokenizer: &TextTokenizer) -> Result<Vec<u32>> {
    let mut ids = Vec::new();
    for id in 0..tokenizer.vocab_size() as u32 {
        if tokenizer.decode(&[id], false).is_ok_and(|t| t.contains('\n')) {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// `shots` short parallel pairs (source, target), fixed by the seed.
fn shots(parallel: &ParallelCorpus, source: &str, target: &str, shots: usize, seed: u64) -> Result<Vec<(String, String)>> {
    let langs = [source.to_string(), target.to_string()];
    let mut pairs: Vec<(String, String)> = parallel
        .aligned(&langs)?
        .into_iter()
        .map(|(_, t)| (t[0].to_string(), t[1].to_string()))
        .filter(|(s, t)| (20..160).contains(&s.len()) && (10..200).contains(&t.len()) && !s.contains('\n') && !t.contains('\n'))
        .collect();
    if pairs.len() < shots {
        return Err(SdrrlError::Invalid(format!(
            "the parallel data has {} usable {source}–{target} pairs for translation shots; it needs {shots}",
            pairs.len()
        )));
    }
    SplitMix64::new(seed ^ 0x5EED).shuffle(&mut pairs);
    pairs.truncate(shots);
    Ok(pairs)
}

fn translation_prompt(shots: &[(String, String)], source: &str, target: &str, text: &str) -> String {
    let (s, t) = (language_name(source), language_name(target));
    let mut prompt = format!("Translate {s} to {t}.\n\n");
    for (a, b) in shots {
        prompt.push_str(&format!("{s}: {a}\n{t}: {b}\n\n"));
    }
    prompt.push_str(&format!("{s}: {text}\n{t}:"));
    prompt
}

/// The first `fraction` of `text`'s words (at least one, leaving at least one).
fn prefix_of(text: &str, fraction: f64) -> Option<String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.len() < 2 {
        return None;
    }
    let n = ((words.len() as f64 * fraction).round() as usize).clamp(1, words.len() - 1);
    Some(words[..n].join(" "))
}

/// A short content hash for job ids, so a log never answers for a text it did not see (a changed
/// answer or instruction is generated anew on resume).
fn fingerprint(text: &str) -> String {
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    format!("{:08x}", hash >> 32)
}

struct Item {
    id: String,
    x: String,
    y: String,
    answer: &'static str,
}

/// Runs the whole build into `out` (created if needed). Rerunning continues every generation
/// stage where it stopped.
pub fn build(
    model: &CausalLm,
    tokenizer: &TextTokenizer,
    inputs: &BuildInputs<'_>,
    config: &SdrrlConfig,
    out: &Path,
    interrupt: Interrupt,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<BuildStats> {
    config.validate()?;
    std::fs::create_dir_all(out).map_err(|e| SdrrlError::File { path: out.to_path_buf(), reason: e.to_string() })?;
    let source = config.source_lang.as_str();
    let present = inputs.parallel.language_counts();
    for t in &config.targets {
        if !present.contains_key(t) {
            return Err(SdrrlError::Invalid(format!(
                "target `{t}` is absent from the parallel data (it has: {}); choose targets it covers or give another parallel file",
                present.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
    }
    let mut instructions: Vec<&InstructionRecord> = inputs.instructions.iter().filter(|r| r.lang == source).collect();
    if let Some(max) = config.max_instructions {
        instructions.truncate(max);
    }
    if instructions.is_empty() {
        return Err(SdrrlError::Invalid(format!("no `{source}` instructions to build from")));
    }
    let mut skipped = SkipLog::default();
    let mut generation = BTreeMap::new();
    let eos: Vec<u32> = model.config().eos_token_ids.iter().copied().chain(tokenizer.eos_id()).collect();
    let greedy = |max_new_tokens: usize, stop_tokens: Vec<u32>| GenerationConfig {
        max_new_tokens,
        sampling: Sampling::Greedy,
        repetition_penalty: Some(1.1),
        stop_tokens,
        seed: config.seed,
    };

    // 1. Source-language answers.
    let ids: Vec<String> =
        instructions.iter().enumerate().map(|(i, r)| r.id.clone().unwrap_or_else(|| format!("instruction-{i}"))).collect();
    let mut items: Vec<Item> = Vec::new();
    match config.answers {
        Answers::Reference => {
            for (r, id) in instructions.iter().zip(&ids) {
                items.push(Item { id: id.clone(), x: r.instruction.clone(), y: r.response.clone(), answer: "reference" });
            }
        }
        Answers::SelfDistill => {
            let jobs = instructions
                .iter()
                .zip(&ids)
                .map(|(r, id)| {
                    Ok(Job {
                        id: format!("{id}/{}", fingerprint(&r.instruction)),
                        prompt: tokenizer.encode(&chat_prompt(tokenizer, &r.instruction)?, false)?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let mut log = GenerationLog::open(&out.join("answers.jsonl"))?;
            let stats = log.run(
                model,
                tokenizer,
                &jobs,
                &greedy(config.max_new_tokens, eos.clone()),
                config.batch_size,
                interrupt.after_batches,
                |d, t| progress("answers", d, t),
            )?;
            generation.insert("answers".to_string(), stats);
            if log.len() < jobs.len() {
                return Err(SdrrlError::Interrupted { stage: "answers" });
            }
            for (r, id) in instructions.iter().zip(&ids) {
                let g = log.get(&format!("{id}/{}", fingerprint(&r.instruction))).ok_or(SdrrlError::Interrupted { stage: "answers" })?;
                let (text, finished) = config.filters.settle(&g.text, g.finished);
                match config.filters.check(text, source, finished, Some(inputs.langid)) {
                    None => items.push(Item { id: id.clone(), x: r.instruction.clone(), y: text.to_string(), answer: "self" }),
                    Some(skip) => skipped.add("answer", skip),
                }
            }
        }
    }

    // 2. Translations of instructions and answers, line by line.
    let mut translated: HashMap<(String, String), (String, String)> = HashMap::new(); // (target, id) → (x_t, y_t)
    let mut translation_origin = "model (few-shot)";
    let needs_translations =
        [Kind::Translated, Kind::TargetInstruction, Kind::SourceInstruction, Kind::Completion].iter().any(|k| config.shares.get(*k) > 0.0);
    if !needs_translations {
        translation_origin = "none";
    } else if let Some(path) = &config.translations {
        translation_origin = "file";
        let (records, _) = rosetta_data::instruction::read_instructions(path, None, rosetta_data::BadLines::Fail)?;
        for r in records {
            let id = r.id.clone().ok_or_else(|| SdrrlError::File {
                path: path.clone(),
                reason: "every translation needs the `id` of its instruction".into(),
            })?;
            translated.insert((r.lang.clone(), id), (r.instruction, r.response));
        }
    } else {
        let stop = {
            let mut s = newline_tokens(tokenizer)?;
            s.extend(eos.iter().copied());
            s
        };
        let mut jobs = Vec::new();
        for t in &config.targets {
            let examples = shots(inputs.parallel, source, t, config.shots, config.seed)?;
            for item in &items {
                for (field, text) in [("instruction", &item.x), ("answer", &item.y)] {
                    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                        let prompt = translation_prompt(&examples, source, t, line.trim());
                        jobs.push(Job {
                            id: format!("{t}/{}/{field}/{n}/{}", item.id, fingerprint(line.trim())),
                            prompt: tokenizer.encode(&prompt, true)?,
                        });
                    }
                }
            }
        }
        let mut log = GenerationLog::open(&out.join("translations.jsonl"))?;
        let stats = log.run(
            model,
            tokenizer,
            &jobs,
            &greedy(config.translate_max_tokens, stop),
            config.batch_size,
            interrupt.after_batches,
            |d, n| progress("translations", d, n),
        )?;
        generation.insert("translations".to_string(), stats);
        if log.len() < jobs.len() {
            return Err(SdrrlError::Interrupted { stage: "translations" });
        }
        for t in &config.targets {
            'item: for item in &items {
                let mut fields = Vec::new();
                for (field, text) in [("instruction", &item.x), ("answer", &item.y)] {
                    let mut lines = Vec::new();
                    for (n, line) in text.lines().enumerate() {
                        if line.trim().is_empty() {
                            lines.push(String::new());
                            continue;
                        }
                        let g = log
                            .get(&format!("{t}/{}/{field}/{n}/{}", item.id, fingerprint(line.trim())))
                            .ok_or(SdrrlError::Interrupted { stage: "translations" })?;
                        // A translation that runs to the limit never found its line end.
                        if let Some(skip) = config.filters.check(&g.text, t, g.finished, Some(inputs.langid)) {
                            skipped.add(&format!("translation/{field}"), skip);
                            continue 'item;
                        }
                        lines.push(g.text.clone());
                    }
                    fields.push(lines.join("\n"));
                }
                translated.insert((t.clone(), item.id.clone()), (fields[0].clone(), fields[1].clone()));
            }
        }
    }

    // Candidates per kind.
    let mut candidates: BTreeMap<Kind, Vec<TransferRecord>> = BTreeMap::new();
    let record = |kind: Kind, id: String, lang: &str, x: &str, y: &str, provenance: serde_json::Value| TransferRecord {
        id,
        lang: lang.to_string(),
        instruction: x.to_string(),
        response: y.to_string(),
        source: format!("sdrrl/{}", kind.name()),
        kind,
        provenance,
    };
    for item in &items {
        let base = json!({"instruction_id": item.id, "answer": item.answer, "model": inputs.model_name});
        candidates.entry(Kind::Source).or_default().push(record(
            Kind::Source,
            format!("{}/source", item.id),
            source,
            &item.x,
            &item.y,
            base.clone(),
        ));
        for t in &config.targets {
            let Some((xt, yt)) = translated.get(&(t.clone(), item.id.clone())) else { continue };
            let mut p = base.clone();
            p["translation"] = json!(translation_origin);
            p["target"] = json!(t);
            candidates.entry(Kind::Translated).or_default().push(record(
                Kind::Translated,
                format!("{}/{t}/translated", item.id),
                t,
                xt,
                yt,
                p.clone(),
            ));
            candidates.entry(Kind::TargetInstruction).or_default().push(record(
                Kind::TargetInstruction,
                format!("{}/{t}/x_t-y_en", item.id),
                t,
                xt,
                &item.y,
                p.clone(),
            ));
            candidates.entry(Kind::SourceInstruction).or_default().push(record(
                Kind::SourceInstruction,
                format!("{}/{t}/x_en-y_t", item.id),
                t,
                &item.x,
                yt,
                p,
            ));
        }
    }

    // 3. Code-switching.
    if config.shares.code_switch > 0.0 {
        for t in &config.targets {
            let langs = [source.to_string(), t.clone()];
            let aligned = inputs.parallel.aligned(&langs)?;
            let lexicon = Lexicon::from_pairs(aligned.iter().map(|(_, p)| (p[0], p[1])), 3, 0.3);
            let mut rng = SplitMix64::new(config.seed ^ 0xC0DE);
            for item in &items {
                let (x, nx) = lexicon.code_switch(&item.x, config.code_switch_rate, &mut rng);
                let (y, ny) = lexicon.code_switch(&item.y, config.code_switch_rate, &mut rng);
                if nx + ny == 0 {
                    skipped.add("code_switch", Skip::Empty);
                    continue;
                }
                let p = json!({"instruction_id": item.id, "answer": item.answer, "model": inputs.model_name, "target": t,
                    "lexicon_entries": lexicon.len(), "swapped_words": nx + ny, "rate": config.code_switch_rate});
                candidates.entry(Kind::CodeSwitch).or_default().push(record(
                    Kind::CodeSwitch,
                    format!("{}/{t}/code-switch", item.id),
                    t,
                    &x,
                    &y,
                    p,
                ));
            }
        }
    }

    // 4. Completions of translated answers.
    if config.shares.completion > 0.0 {
        let mut jobs = Vec::new();
        let mut prefixes = HashMap::new();
        for t in &config.targets {
            for item in &items {
                let Some((xt, yt)) = translated.get(&(t.clone(), item.id.clone())) else { continue };
                let Some(prefix) = prefix_of(yt, config.completion_prefix) else { continue };
                let prompt = format!("{}{prefix}", chat_prompt(tokenizer, xt)?);
                let id = format!("{t}/{}/{}", item.id, fingerprint(&prompt));
                jobs.push(Job { id: id.clone(), prompt: tokenizer.encode(&prompt, false)? });
                prefixes.insert(id, (t.clone(), item, xt.clone(), prefix));
            }
        }
        let mut log = GenerationLog::open(&out.join("completions.jsonl"))?;
        let stats = log.run(
            model,
            tokenizer,
            &jobs,
            &greedy(config.max_new_tokens, eos.clone()),
            config.batch_size,
            interrupt.after_batches,
            |d, n| progress("completions", d, n),
        )?;
        generation.insert("completions".to_string(), stats);
        if log.len() < jobs.len() {
            return Err(SdrrlError::Interrupted { stage: "completions" });
        }
        for job in &jobs {
            let (t, item, xt, prefix) = &prefixes[&job.id];
            let g = log.get(&job.id).ok_or(SdrrlError::Interrupted { stage: "completions" })?;
            let (text, finished) = config.filters.settle(&g.text, g.finished);
            let response = format!("{prefix} {text}").trim().to_string();
            if let Some(skip) = config
                .filters
                .check(text, t, finished, Some(inputs.langid))
                .or_else(|| config.filters.check(&response, t, true, Some(inputs.langid)))
            {
                skipped.add("completion", skip);
                continue;
            }
            let p = json!({"instruction_id": item.id, "answer": item.answer, "model": inputs.model_name, "target": t, "prefix_words": prefix.split_whitespace().count()});
            candidates.entry(Kind::Completion).or_default().push(record(
                Kind::Completion,
                format!("{}/{t}/completion", item.id),
                t,
                xt,
                &response,
                p,
            ));
        }
    }

    // 5. Parallel pairs as translation instructions.
    if config.shares.parallel > 0.0 {
        for t in &config.targets {
            let langs = [source.to_string(), t.clone()];
            for (r, texts) in inputs.parallel.aligned(&langs)? {
                let instruction = format!("Translate into {}:\n{}", language_name(t), texts[0]);
                let id = r.id.clone().unwrap_or_default();
                let p = json!({"parallel_id": id, "parallel_source": r.source, "target": t});
                candidates.entry(Kind::Parallel).or_default().push(record(
                    Kind::Parallel,
                    format!("parallel/{id}/{t}"),
                    t,
                    &instruction,
                    texts[1],
                    p,
                ));
            }
        }
    }

    // Sample to the shares.
    let available: BTreeMap<String, usize> =
        Kind::ALL.iter().map(|k| (k.name().to_string(), candidates.get(k).map_or(0, Vec::len))).collect();
    // A kind left without candidates (every generation filtered) is reported and left out; the
    // others keep their shares among themselves.
    let missing: Vec<String> =
        Kind::ALL.iter().filter(|k| config.shares.get(**k) > 0.0 && available[k.name()] == 0).map(|k| k.name().to_string()).collect();
    let active: Vec<Kind> = Kind::ALL.into_iter().filter(|k| config.shares.get(*k) > 0.0 && available[k.name()] > 0).collect();
    // The largest multiple of the shares every kind can fill. With whole-number shares the
    // multiple is whole too, so 2:1 comes out as exactly 2:1 (a fractional multiple would floor
    // each kind on its own: 4.5 × (2, 1) gives 9 and 4).
    let mut scale = active.iter().map(|k| available[k.name()] as f64 / config.shares.get(*k)).fold(f64::INFINITY, f64::min);
    if active.iter().all(|k| config.shares.get(*k).fract() == 0.0) {
        scale = scale.floor();
    }
    let mut chosen: Vec<TransferRecord> = Vec::new();
    let mut written = BTreeMap::new();
    for kind in &active {
        let want = (scale * config.shares.get(*kind)).floor() as usize;
        let mut pool = candidates.remove(kind).unwrap_or_default();
        SplitMix64::new(config.seed ^ ((*kind as u64 + 1) * 0x9E37)).shuffle(&mut pool);
        pool.truncate(want);
        written.insert(kind.name().to_string(), pool.len());
        chosen.extend(pool);
    }
    if chosen.is_empty() {
        return Err(SdrrlError::Empty { skips: format!("{skipped}; kinds with no candidates: {}", missing.join(", ")) });
    }
    SplitMix64::new(config.seed ^ 0xF1A1).shuffle(&mut chosen);
    let transfer = out.join("transfer.jsonl");
    let mut text = String::new();
    for r in &chosen {
        text.push_str(&serde_json::to_string(r).map_err(|e| SdrrlError::Invalid(e.to_string()))?);
        text.push('\n');
    }
    write_atomically(&transfer, text.as_bytes())?;
    let stats = BuildStats { instructions: instructions.len(), available, written, missing, skipped, generation, transfer };
    let stats_json =
        serde_json::to_vec_pretty(&json!({"stats": stats, "config": config})).map_err(|e| SdrrlError::Invalid(e.to_string()))?;
    write_atomically(&out.join("stats.json"), &stats_json)?;
    Ok(stats)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    rosetta_model::atomic::write_file(path, bytes).map_err(|e| SdrrlError::File { path: path.to_path_buf(), reason: e.to_string() })
}
