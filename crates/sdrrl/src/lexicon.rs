//! A bilingual lexicon from word co-occurrence in parallel pairs (Dice coefficient), and
//! code-switching with it: SDRRL's step 3 swaps some source-language words for their
//! target-language counterparts. No dictionary is needed, and the lexicon covers the words the
//! parallel data actually pairs.

use std::collections::{BTreeMap, HashMap, HashSet};

use rosetta_rng::SplitMix64;

/// Lower-cased alphabetic words.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphabetic()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

pub struct Lexicon {
    /// source word → (target word, Dice score)
    pub entries: BTreeMap<String, (String, f64)>,
}

impl Lexicon {
    /// Aligns words of `(source, target)` pairs: for every source word seen at least `min_count`
    /// times, the target word with the highest Dice coefficient 2·c(s,t)/(c(s)+c(t)), kept when
    /// that is at least `min_dice`. Source words occurring in more than a fifth of the pairs
    /// (function words) are left out: swapping them makes noise, not code-switching.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>, min_count: usize, min_dice: f64) -> Self {
        let mut source_count: HashMap<String, usize> = HashMap::new();
        let mut target_count: HashMap<String, usize> = HashMap::new();
        let mut joint: HashMap<(String, String), usize> = HashMap::new();
        let mut n = 0usize;
        for (s, t) in pairs {
            n += 1;
            let sw: HashSet<String> = words(s).into_iter().collect();
            let tw: HashSet<String> = words(t).into_iter().collect();
            sw.iter().for_each(|w| *source_count.entry(w.clone()).or_default() += 1);
            tw.iter().for_each(|w| *target_count.entry(w.clone()).or_default() += 1);
            for a in &sw {
                for b in &tw {
                    *joint.entry((a.clone(), b.clone())).or_default() += 1;
                }
            }
        }
        let mut best: BTreeMap<String, (String, f64)> = BTreeMap::new();
        for ((s, t), c) in joint {
            let (cs, ct) = (source_count[&s], target_count[&t]);
            if cs < min_count || cs * 5 > n || ct * 5 > n {
                continue;
            }
            let dice = 2.0 * c as f64 / (cs + ct) as f64;
            if dice < min_dice {
                continue;
            }
            let better = best.get(&s).is_none_or(|(bt, bd)| dice > *bd || (dice == *bd && t < *bt));
            if better {
                best.insert(s, (t, dice));
            }
        }
        Lexicon { entries: best }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `text` with each word that has an entry swapped with probability `rate`, keeping the
    /// original spacing and punctuation (and a capital first letter). Returns the new text and
    /// how many words were swapped.
    pub fn code_switch(&self, text: &str, rate: f64, rng: &mut SplitMix64) -> (String, usize) {
        let mut out = String::with_capacity(text.len());
        let mut swapped = 0;
        let mut word = String::new();
        let mut flush = |word: &mut String, out: &mut String, rng: &mut SplitMix64| {
            if word.is_empty() {
                return;
            }
            let lower = word.to_lowercase();
            match self.entries.get(&lower) {
                Some((target, _)) if rng.next_f64() < rate => {
                    let capital = word.chars().next().is_some_and(char::is_uppercase);
                    if capital {
                        let mut c = target.chars();
                        out.extend(c.next().into_iter().flat_map(char::to_uppercase));
                        out.extend(c);
                    } else {
                        out.push_str(target);
                    }
                    swapped += 1;
                }
                _ => out.push_str(word),
            }
            word.clear();
        };
        for c in text.chars() {
            if c.is_alphabetic() {
                word.push(c);
            } else {
                flush(&mut word, &mut out, rng);
                out.push(c);
            }
        }
        flush(&mut word, &mut out, rng);
        (out, swapped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_co_occurring_words_and_switches_some() {
        let pairs = [
            ("the red house", "a piros ház"),
            ("a big house", "egy nagy ház"),
            ("the house is red", "a ház piros"),
            ("red apples", "piros almák"),
            ("big apples", "nagy almák"),
            ("one dog", "egy kutya"),
            ("two dogs", "két kutya"),
            ("three cats", "három macska"),
            ("four birds", "négy madár"),
            ("five fish", "öt hal"),
            ("six cows", "hat tehén"),
            ("seven trees", "hét fa"),
            ("eight stars", "nyolc csillag"),
            ("nine books", "kilenc könyv"),
            ("ten cars", "tíz autó"),
            ("green grass", "zöld fű"),
            ("blue sky", "kék ég"),
        ];
        let lexicon = Lexicon::from_pairs(pairs.iter().copied(), 2, 0.5);
        assert_eq!(lexicon.entries.get("house").map(|e| e.0.as_str()), Some("ház"));
        assert_eq!(lexicon.entries.get("red").map(|e| e.0.as_str()), Some("piros"));
        let mut rng = SplitMix64::new(1);
        let (all, n) = lexicon.code_switch("Red house, big house!", 1.0, &mut rng);
        assert_eq!(n, 4);
        assert_eq!(all, "Piros ház, nagy ház!");
        let (none, n) = lexicon.code_switch("The red house", 0.0, &mut rng);
        assert_eq!((none.as_str(), n), ("The red house", 0));
    }
}
