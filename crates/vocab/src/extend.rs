//! Choosing the new tokens and writing them into the base tokenizer as real BPE tokens.
//!
//! Candidates are the target BPE's merges in priority order whose result the base vocabulary
//! lacks and whose two parts exist (in the base, or among the tokens already chosen). They are
//! appended after the base merges, so English and every other language tokenize exactly as
//! before wherever no new merge applies. Because the base merges run first, a target merge can
//! be shadowed (its parts never meet); a verification loop therefore encodes the target corpus
//! with the extended tokenizer, drops tokens that the merge process cannot reach from their own
//! characters or that the corpus never uses (and the tokens built on them), and refills from the
//! next candidates until all K are live.
//!
//! `replace` mode first frees K ids: the lowest-priority base merges whose results no other
//! merge uses (walking the merge list from its end), never special tokens or single symbols.

use std::collections::{HashMap, HashSet};

use tokenizers::Tokenizer;

use crate::bpe::{BpeTables, Merge, MergeRanks};
use crate::error::{Result, VocabError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// New ids after the base vocabulary: the model grows by K rows.
    Add,
    /// New tokens take the ids of K removed low-priority base tokens: the size stays fixed.
    Replace,
}

impl std::str::FromStr for Mode {
    type Err = VocabError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "add" => Ok(Mode::Add),
            "replace" => Ok(Mode::Replace),
            other => Err(VocabError::Invalid(format!("unknown mode `{other}` (use add or replace)"))),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ExtendOptions {
    pub lang: String,
    pub new_tokens: usize,
    pub mode: Mode,
    /// The first id of an added token: the model's vocabulary size (≥ the tokenizer's id end).
    pub first_new_id: u32,
    /// Verification rounds before giving up on refilling.
    pub max_rounds: usize,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct NewToken {
    pub id: u32,
    pub token: String,
    pub merge: Merge,
    /// Uses in the target corpus under the extended tokenizer (0 for a token that only exists
    /// as a step towards longer ones).
    pub count: usize,
}

#[derive(Debug, Clone)]
pub struct Extension {
    /// The extended tokenizer's tables.
    pub tables: BpeTables,
    /// The base tables less the replaced tokens (the base itself in add mode): what the old
    /// segmentation of a new token is measured against.
    pub remaining_base: BpeTables,
    pub new_tokens: Vec<NewToken>,
    /// `(id, token)` of base tokens removed in replace mode.
    pub replaced: Vec<(u32, String)>,
    /// Uses of every id in the target corpus under the extended tokenizer.
    pub usage: HashMap<u32, usize>,
    /// Candidates dropped as unreachable or unused.
    pub rejected: usize,
    pub rounds: usize,
}

impl Extension {
    pub fn tokenizer(&self) -> Result<Tokenizer> {
        tokenizer_from_tables(&self.tables)
    }
}

pub fn tokenizer_from_tables(tables: &BpeTables) -> Result<Tokenizer> {
    tables
        .to_json()
        .to_string()
        .parse()
        .map_err(|e| VocabError::Invalid(format!("the extended tokenizer does not load in tokenizers: {e}")))
}

/// Removes `k` low-priority base tokens (see the module docs); returns the rest and the removed.
fn free_ids(base: &BpeTables, k: usize) -> Result<(BpeTables, Vec<(u32, String)>)> {
    let mut part_uses: HashMap<&str, usize> = HashMap::new();
    let mut producers: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, (a, b)) in base.merges.iter().enumerate() {
        *part_uses.entry(a).or_default() += 1;
        *part_uses.entry(b).or_default() += 1;
        producers.entry(format!("{a}{b}")).or_default().push(i);
    }
    let mut dropped_merges = vec![false; base.merges.len()];
    let mut removed: Vec<(u32, String)> = Vec::new();
    let mut seen = HashSet::new();
    for i in (0..base.merges.len()).rev() {
        if removed.len() == k {
            break;
        }
        let (a, b) = &base.merges[i];
        let token = format!("{a}{b}");
        if !seen.insert(token.clone()) || part_uses.get(token.as_str()).copied().unwrap_or(0) > 0 || base.added.contains(&token) {
            continue;
        }
        let Some(&id) = base.vocab.get(&token) else { continue };
        for &j in &producers[&token] {
            dropped_merges[j] = true;
            let (pa, pb) = &base.merges[j];
            for part in [pa.as_str(), pb.as_str()] {
                if let Some(n) = part_uses.get_mut(part) {
                    *n -= 1;
                }
            }
        }
        removed.push((id, token));
    }
    if removed.len() < k {
        return Err(VocabError::Invalid(format!(
            "replace mode: only {} base tokens can be removed without breaking other merges; ask for fewer new tokens or use the `add` mode",
            removed.len()
        )));
    }
    let mut rest = base.clone();
    for (_, token) in &removed {
        rest.vocab.remove(token);
    }
    rest.merges = base.merges.iter().zip(&dropped_merges).filter(|(_, d)| !**d).map(|(m, _)| m.clone()).collect();
    removed.sort();
    Ok((rest, removed))
}

/// Extends `base` with up to `options.new_tokens` merges of `target` (a BPE trained on the
/// target language with the same pre-tokenizer), verified on `corpus` (target-language text).
pub fn extend(base: &BpeTables, target: &BpeTables, corpus: &[String], options: &ExtendOptions) -> Result<Extension> {
    let k = options.new_tokens;
    if k == 0 {
        return Err(VocabError::Invalid("the number of new tokens must be at least 1".into()));
    }
    if corpus.is_empty() {
        return Err(VocabError::Invalid(format!("no {} text to verify the new tokens on", options.lang)));
    }
    let (rest, replaced) = match options.mode {
        Mode::Add => (base.clone(), Vec::new()),
        Mode::Replace => free_ids(base, k)?,
    };
    let ids: Vec<u32> = match options.mode {
        Mode::Add => (options.first_new_id..options.first_new_id + k as u32).collect(),
        Mode::Replace => replaced.iter().map(|(id, _)| *id).collect(),
    };

    let candidates: Vec<String> = target.merges.iter().map(|(a, b)| format!("{a}{b}")).filter(|t| !rest.vocab.contains_key(t)).collect();
    let mut rejected: HashSet<String> = HashSet::new();
    let mut chosen: Vec<Merge> = Vec::new();
    let mut rounds = 0;
    loop {
        rounds += 1;
        refill(&mut chosen, &candidates, &rest, &rejected, k);
        let tables = with_tokens(&rest, &chosen, &ids);
        let tokenizer = tokenizer_from_tables(&tables)?;
        let usage = count_ids(&tokenizer, corpus)?;
        let ranks = tables.ranks();
        // Live: reachable from its own characters, and emitted on the corpus or a part of a live
        // token (intermediate merges are never emitted themselves but are needed).
        let reachable: Vec<bool> = chosen.iter().map(|(a, b)| ranks.segment(&format!("{a}{b}")).len() == 1).collect();
        let mut live: HashSet<String> = chosen
            .iter()
            .zip(&ids)
            .zip(&reachable)
            .filter(|((_, id), ok)| **ok && usage.get(id).copied().unwrap_or(0) > 0)
            .map(|(((a, b), _), _)| format!("{a}{b}"))
            .collect();
        for (((a, b), _), ok) in chosen.iter().zip(&ids).zip(&reachable).rev() {
            if *ok && live.contains(&format!("{a}{b}")) {
                live.insert(a.clone());
                live.insert(b.clone());
            }
        }
        let dead: Vec<String> = chosen
            .iter()
            .zip(&reachable)
            .map(|((a, b), ok)| (format!("{a}{b}"), *ok))
            .filter(|(t, ok)| !ok || !live.contains(t))
            .map(|(t, _)| t)
            .collect();
        if dead.is_empty() || rounds >= options.max_rounds {
            if !dead.is_empty() || chosen.len() < k {
                rejected.extend(dead);
                let live = chosen.iter().filter(|(a, b)| !rejected.contains(&format!("{a}{b}"))).count();
                return Err(VocabError::NotEnoughTokens { lang: options.lang.clone(), requested: k, available: live });
            }
            let new_tokens = chosen
                .iter()
                .zip(&ids)
                .map(|(m, &id)| NewToken {
                    id,
                    token: format!("{}{}", m.0, m.1),
                    merge: m.clone(),
                    count: usage.get(&id).copied().unwrap_or(0),
                })
                .collect();
            return Ok(Extension { tables, remaining_base: rest, new_tokens, replaced, usage, rejected: rejected.len(), rounds });
        }
        rejected.extend(dead);
        // Drop the dead and, transitively, every chosen token built on one of them.
        loop {
            let before = chosen.len();
            let available: HashSet<String> = chosen.iter().map(|(a, b)| format!("{a}{b}")).filter(|t| !rejected.contains(t)).collect();
            chosen.retain(|(a, b)| {
                let exists = |p: &String| rest.vocab.contains_key(p) || available.contains(p);
                !rejected.contains(&format!("{a}{b}")) && exists(a) && exists(b)
            });
            if chosen.len() == before {
                break;
            }
        }
    }
}

/// Appends candidates in the target's priority order until there are `k`. A candidate enters
/// with the merge that completes it under the merges so far — the pair its characters reduce to
/// — rather than the target's own pair, which the base merges may never let meet (SmolLM2 forms
/// `Ġs` before a Hungarian BPE's `sz`, so `Ġsz` must come from `Ġs` + `z`). A candidate that
/// still needs more than one merge waits for a later round.
fn refill(chosen: &mut Vec<Merge>, candidates: &[String], rest: &BpeTables, rejected: &HashSet<String>, k: usize) {
    let mut present: HashSet<String> = chosen.iter().map(|(a, b)| format!("{a}{b}")).collect();
    let mut ranks = MergeRanks::new(&rest.merges);
    for m in chosen.iter() {
        ranks.push(m.clone());
    }
    for token in candidates {
        if chosen.len() == k {
            break;
        }
        if present.contains(token) || rejected.contains(token) {
            continue;
        }
        let pieces = ranks.segment(token);
        let [a, b] = pieces.as_slice() else { continue };
        let merge = (a.clone(), b.clone());
        ranks.push(merge.clone());
        present.insert(token.clone());
        chosen.push(merge);
    }
}

/// `rest` plus the chosen tokens at `ids` (in order) with their merges after the base merges.
fn with_tokens(rest: &BpeTables, chosen: &[Merge], ids: &[u32]) -> BpeTables {
    let mut tables = rest.clone();
    for ((a, b), &id) in chosen.iter().zip(ids) {
        tables.vocab.insert(format!("{a}{b}"), id);
        tables.merges.push((a.clone(), b.clone()));
    }
    tables
}

/// How often each id occurs when `tokenizer` encodes `texts` (no special tokens).
pub fn count_ids(tokenizer: &Tokenizer, texts: &[String]) -> Result<HashMap<u32, usize>> {
    let encodings =
        tokenizer.encode_batch(texts.to_vec(), false).map_err(|e| VocabError::Invalid(format!("encoding the corpus failed: {e}")))?;
    let mut counts = HashMap::new();
    for e in &encodings {
        for &id in e.get_ids() {
            *counts.entry(id).or_default() += 1;
        }
    }
    Ok(counts)
}

/// The base tokens a token's characters merge into under `ranks` (its old segmentation).
pub fn old_pieces(ranks: &MergeRanks, base: &BpeTables, token: &str) -> Vec<(String, Option<u32>)> {
    ranks.segment(token).into_iter().map(|p| (p.clone(), base.vocab.get(&p).copied())).collect()
}
