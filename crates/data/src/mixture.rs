//! Data mixtures: which share of training documents comes from which language (and source),
//! e.g. `hu:0.75,en:0.25` — Csaki et al.'s recipe against forgetting English — and a
//! deterministic sampler whose state can be checkpointed and resumed exactly.

use std::collections::BTreeMap;
use std::str::FromStr;

use crate::error::{DataError, Result};
use crate::monolingual::Document;
use crate::parallel::looks_like_language_code;
use rosetta_rng::SplitMix64;

/// One part of a mixture: a language, optionally narrowed to one source, and its weight.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MixtureComponent {
    pub lang: String,
    pub source: Option<String>,
    pub weight: f64,
}

/// Anything a mixture can draw: it has a language and maybe a source.
pub trait Mixable {
    fn lang(&self) -> &str;
    fn source(&self) -> Option<&str>;
}

impl Mixable for Document {
    fn lang(&self) -> &str {
        &self.lang
    }
    fn source(&self) -> Option<&str> {
        self.source.as_deref()
    }
}

impl Mixable for crate::instruction::InstructionRecord {
    fn lang(&self) -> &str {
        &self.lang
    }
    fn source(&self) -> Option<&str> {
        self.source.as_deref()
    }
}

impl MixtureComponent {
    pub fn matches(&self, item: &impl Mixable) -> bool {
        item.lang() == self.lang && self.source.as_ref().is_none_or(|s| item.source() == Some(s.as_str()))
    }

    pub fn key(&self) -> String {
        match &self.source {
            Some(s) => format!("{}/{s}", self.lang),
            None => self.lang.clone(),
        }
    }
}

/// `lang[/source]:weight,...` with weights summing to 1.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MixtureSpec {
    pub components: Vec<MixtureComponent>,
}

impl MixtureSpec {
    /// Every language of `items`, weighted by its share of the items (the data "as it comes").
    pub fn proportional<T: Mixable>(items: &[T]) -> Result<Self> {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for item in items {
            *counts.entry(item.lang().to_string()).or_insert(0) += 1;
        }
        if counts.is_empty() {
            return Err(DataError::Invalid("no data to mix".into()));
        }
        let total = items.len() as f64;
        let components = counts.into_iter().map(|(lang, n)| MixtureComponent { lang, source: None, weight: n as f64 / total }).collect();
        Ok(MixtureSpec { components })
    }
}

impl FromStr for MixtureSpec {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self> {
        let bad = |m: String| DataError::Invalid(format!("mixture `{s}`: {m}"));
        let mut components = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, weight) = part.rsplit_once(':').ok_or_else(|| bad(format!("`{part}` is not `lang:weight`")))?;
            let weight: f64 = weight.trim().parse().map_err(|_| bad(format!("`{weight}` is not a number")))?;
            if !(weight > 0.0) || !weight.is_finite() {
                return Err(bad(format!("weight of `{key}` must be positive")));
            }
            let (lang, source) = match key.split_once('/') {
                Some((l, src)) => (l.trim(), Some(src.trim().to_string())),
                None => (key.trim(), None),
            };
            if !looks_like_language_code(lang) {
                return Err(bad(format!("`{lang}` is not a language code")));
            }
            components.push(MixtureComponent { lang: lang.to_string(), source, weight });
        }
        if components.is_empty() {
            return Err(bad("no components".into()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for c in &components {
            if !seen.insert(c.key()) {
                return Err(bad(format!("`{}` appears twice", c.key())));
            }
        }
        let total: f64 = components.iter().map(|c| c.weight).sum();
        if (total - 1.0).abs() > 1e-6 {
            return Err(bad(format!("the ratios sum to {total}, not 1")));
        }
        Ok(MixtureSpec { components })
    }
}

impl std::fmt::Display for MixtureSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.components.iter().map(|c| format!("{}:{}", c.key(), c.weight)).collect();
        f.write_str(&parts.join(","))
    }
}

/// Where a sampler is, so a resumed run draws exactly the documents the interrupted one would.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SamplerState {
    pub rng: SplitMix64,
    pub seed: u64,
    /// Per component: how many documents of the current epoch were drawn, and which epoch.
    pub cursors: Vec<usize>,
    pub epochs: Vec<usize>,
}

/// Draws documents: a component by its weight, then the next document of that component in an
/// order reshuffled every epoch.
#[derive(Debug, Clone)]
pub struct MixtureSampler {
    spec: MixtureSpec,
    groups: Vec<Vec<usize>>,
    orders: Vec<Vec<usize>>,
    state: SamplerState,
}

impl MixtureSampler {
    /// Errors when a component matches no document, naming what the data has.
    pub fn new<T: Mixable>(spec: MixtureSpec, documents: &[T], seed: u64) -> Result<Self> {
        let mut groups = Vec::new();
        for c in &spec.components {
            let members: Vec<usize> = documents.iter().enumerate().filter(|(_, d)| c.matches(*d)).map(|(i, _)| i).collect();
            if members.is_empty() {
                let mut available: BTreeMap<String, usize> = BTreeMap::new();
                for d in documents {
                    *available.entry(d.lang().to_string()).or_insert(0) += 1;
                }
                let have = available.iter().map(|(l, n)| format!("{l} ({n})")).collect::<Vec<_>>().join(", ");
                return Err(DataError::Invalid(format!("`{}` in the mix matches no document; the data has: {have}", c.key())));
            }
            groups.push(members);
        }
        let n = groups.len();
        let state = SamplerState { rng: SplitMix64::new(seed), seed, cursors: vec![0; n], epochs: vec![0; n] };
        let mut sampler = MixtureSampler { spec, groups, orders: Vec::new(), state };
        sampler.orders = (0..n).map(|g| sampler.order(g, 0)).collect();
        Ok(sampler)
    }

    /// The document order of component `g` in `epoch`, derived from the seed alone.
    fn order(&self, g: usize, epoch: usize) -> Vec<usize> {
        let mut order = self.groups[g].clone();
        let mut rng = SplitMix64::new(self.state.seed ^ ((g as u64 + 1) << 32) ^ (epoch as u64).wrapping_mul(0x9E37_79B9));
        rng.shuffle(&mut order);
        order
    }

    pub fn spec(&self) -> &MixtureSpec {
        &self.spec
    }

    pub fn state(&self) -> &SamplerState {
        &self.state
    }

    pub fn restore(&mut self, state: SamplerState) -> Result<()> {
        if state.cursors.len() != self.groups.len() || state.epochs.len() != self.groups.len() {
            return Err(DataError::Invalid("the sampler state belongs to a different mixture".into()));
        }
        // A checkpoint's position past the end of a source: the data changed since (a file
        // shrank or was replaced). Resuming would read documents that are not there.
        for (g, (&cursor, group)) in state.cursors.iter().zip(&self.groups).enumerate() {
            if cursor > group.len() {
                return Err(DataError::Invalid(format!(
                    "the checkpoint stopped at document {cursor} of `{}`, which now has {} documents: the training data changed since; \
                     restore the data the run started with, or start a new run",
                    self.spec.components[g].key(),
                    group.len()
                )));
            }
        }
        self.state = state;
        self.orders = (0..self.groups.len()).map(|g| self.order(g, self.state.epochs[g])).collect();
        Ok(())
    }

    /// The next document: `(component index, document index)`.
    pub fn next_document(&mut self) -> (usize, usize) {
        let draw = self.state.rng.next_f64();
        let mut acc = 0.0;
        let mut g = self.groups.len() - 1;
        for (i, c) in self.spec.components.iter().enumerate() {
            acc += c.weight;
            if draw < acc {
                g = i;
                break;
            }
        }
        if self.state.cursors[g] == self.orders[g].len() {
            self.state.epochs[g] += 1;
            self.state.cursors[g] = 0;
            self.orders[g] = self.order(g, self.state.epochs[g]);
        }
        let doc = self.orders[g][self.state.cursors[g]];
        self.state.cursors[g] += 1;
        (g, doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs() -> Vec<Document> {
        let mut v = Vec::new();
        for i in 0..30 {
            v.push(Document {
                lang: "hu".into(),
                text: format!("hu {i}"),
                source: Some(if i % 2 == 0 { "a" } else { "b" }.into()),
                id: None,
            });
        }
        for i in 0..10 {
            v.push(Document { lang: "en".into(), text: format!("en {i}"), source: None, id: None });
        }
        v
    }

    #[test]
    fn parses_and_rejects_bad_specs() {
        let spec: MixtureSpec = "hu:0.75, en:0.25".parse().unwrap();
        assert_eq!(spec.components.len(), 2);
        assert_eq!(spec.to_string(), "hu:0.75,en:0.25");
        let per_source: MixtureSpec = "hu/a:0.5,hu/b:0.25,en:0.25".parse().unwrap();
        assert_eq!(per_source.components[0].source.as_deref(), Some("a"));
        for (bad, says) in [
            ("hu:0.7,en:0.2", "sum to"),
            ("hu:0.75,hu:0.25", "twice"),
            ("hu=1", "lang:weight"),
            ("hungarian:1", "language code"),
            ("hu:-1,en:2", "positive"),
            ("", "no components"),
        ] {
            let err = bad.parse::<MixtureSpec>().unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn unknown_language_is_named_with_what_exists() {
        let err = MixtureSampler::new("hu:0.5,th:0.5".parse().unwrap(), &docs(), 0).unwrap_err().to_string();
        assert!(err.contains("`th`") && err.contains("hu (30)") && err.contains("en (10)"), "{err}");
    }

    #[test]
    fn follows_the_ratios_and_resumes_exactly() {
        let documents = docs();
        let mut sampler = MixtureSampler::new("hu:0.75,en:0.25".parse().unwrap(), &documents, 7).unwrap();
        let draws: Vec<(usize, usize)> = (0..4000).map(|_| sampler.next_document()).collect();
        let hu = draws.iter().filter(|(g, _)| *g == 0).count() as f64 / draws.len() as f64;
        assert!((hu - 0.75).abs() < 0.03, "{hu}");
        // Every English document appears once per epoch before any repeats.
        let first_en: Vec<usize> = draws.iter().filter(|(g, _)| *g == 1).take(10).map(|(_, d)| *d).collect();
        let mut sorted = first_en.clone();
        sorted.sort();
        assert_eq!(sorted, (30..40).collect::<Vec<_>>());

        let mut a = MixtureSampler::new("hu/a:0.5,hu/b:0.25,en:0.25".parse().unwrap(), &documents, 3).unwrap();
        for _ in 0..123 {
            a.next_document();
        }
        let saved = serde_json::to_string(a.state()).unwrap();
        let expected: Vec<_> = (0..200).map(|_| a.next_document()).collect();
        let mut b = MixtureSampler::new("hu/a:0.5,hu/b:0.25,en:0.25".parse().unwrap(), &documents, 3).unwrap();
        b.restore(serde_json::from_str(&saved).unwrap()).unwrap();
        let resumed: Vec<_> = (0..200).map(|_| b.next_document()).collect();
        assert_eq!(expected, resumed);
        assert!(resumed.iter().all(|&(g, d)| g != 0 || documents[d].source.as_deref() == Some("a")));

        // The data shrank since the checkpoint: a clear error, not an index out of bounds.
        let mut state: SamplerState = serde_json::from_str(&saved).unwrap();
        state.cursors[0] = 10_000;
        let mut c = MixtureSampler::new("hu/a:0.5,hu/b:0.25,en:0.25".parse().unwrap(), &documents, 3).unwrap();
        let err = c.restore(state).unwrap_err().to_string();
        assert!(err.contains("document 10000") && err.contains("hu/a") && err.contains("changed"), "{err}");
    }
}
