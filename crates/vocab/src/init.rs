//! Initial vectors for the new embedding (and untied head) rows, and the model resize.
//!
//! - `mean` (default): the mean of the rows of the token's pieces under the old tokenizer —
//!   the new token starts where the model already "reads" that string.
//! - `random`: per-dimension normal with the mean and standard deviation of the existing rows.
//! - `focus` (FOCUS-like; Dobler & de Melo 2023): a sparsemax-weighted combination of *overlapping*
//!   tokens (base tokens still used on the target corpus by the extended tokenizer). FOCUS
//!   measures similarity with auxiliary fastText vectors trained on target text; none can be
//!   trained or downloaded here, so the similarity is the cosine between the token's mean-of-
//!   pieces vector and each overlapping token's row in the model's own embedding space.

use rosetta_model::burn::prelude::*;
use rosetta_model::{CausalLm, VocabRow};
use rosetta_rng::SplitMix64;

use crate::bpe::BpeTables;
use crate::error::{Result, VocabError};
use crate::extend::{Extension, old_pieces};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InitMethod {
    #[default]
    Mean,
    Random,
    Focus,
}

impl std::str::FromStr for InitMethod {
    type Err = VocabError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "mean" => Ok(InitMethod::Mean),
            "random" => Ok(InitMethod::Random),
            "focus" => Ok(InitMethod::Focus),
            other => Err(VocabError::Invalid(format!("unknown init `{other}` (use mean, random or focus)"))),
        }
    }
}

/// A `[rows, d]` matrix on the host.
struct Rows {
    data: Vec<f32>,
    d: usize,
}

impl Rows {
    fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.d..(i + 1) * self.d]
    }

    fn mean_of(&self, ids: &[usize]) -> Vec<f32> {
        let mut out = vec![0.0; self.d];
        for &i in ids {
            for (o, v) in out.iter_mut().zip(self.row(i)) {
                *o += v;
            }
        }
        out.iter_mut().for_each(|o| *o /= ids.len().max(1) as f32);
        out
    }

    fn weighted(&self, weights: &[(usize, f32)]) -> Vec<f32> {
        let mut out = vec![0.0; self.d];
        for &(i, w) in weights {
            for (o, v) in out.iter_mut().zip(self.row(i)) {
                *o += w * v;
            }
        }
        out
    }

    /// Per-dimension mean and standard deviation.
    fn moments(&self) -> (Vec<f32>, Vec<f32>) {
        let n = (self.data.len() / self.d) as f64;
        let mut sum = vec![0.0f64; self.d];
        let mut sq = vec![0.0f64; self.d];
        for row in self.data.chunks(self.d) {
            for j in 0..self.d {
                sum[j] += row[j] as f64;
                sq[j] += (row[j] as f64).powi(2);
            }
        }
        let mean: Vec<f32> = sum.iter().map(|s| (s / n) as f32).collect();
        let std = sq.iter().zip(&sum).map(|(q, s)| ((q / n - (s / n).powi(2)).max(0.0)).sqrt() as f32).collect();
        (mean, std)
    }
}

fn host_rows(t: Tensor<2>) -> Result<Rows> {
    let d = t.dims()[1];
    let data = rosetta_model::readback::block_on(rosetta_model::readback::to_vec_f32(t))
        .map_err(|e| VocabError::Invalid(format!("cannot read the embedding: {e}")))?;
    Ok(Rows { data, d })
}

/// Sparsemax (Martins & Astudillo 2016): the Euclidean projection onto the simplex; unlike
/// softmax it gives exact zeros, so only the closest tokens contribute.
pub fn sparsemax(z: &[f32]) -> Vec<f32> {
    let mut sorted = z.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let (mut cumulative, mut tau) = (0.0f32, 0.0f32);
    for (k, &v) in sorted.iter().enumerate() {
        cumulative += v;
        let k = (k + 1) as f32;
        if 1.0 + k * v > cumulative {
            tau = (cumulative - 1.0) / k;
        } else {
            break;
        }
    }
    z.iter().map(|v| (v - tau).max(0.0)).collect()
}

/// The rows of the resized vocabulary: existing rows kept, new (or replaced) ids initialised.
pub fn vocabulary_rows(model: &CausalLm, extension: &Extension, method: InitMethod, seed: u64) -> Result<Vec<VocabRow>> {
    let vocab = model.config().vocab_size;
    let embedding = host_rows(model.embed_tokens.weight.val())?;
    // burn's head is [d, vocab]; rows per token are its transpose.
    let head = model.lm_head.as_ref().map(|h| host_rows(h.weight.val().transpose())).transpose()?;
    let base = &extension.remaining_base;
    let ranks = base.ranks();
    let pieces: Vec<Vec<usize>> = extension
        .new_tokens
        .iter()
        .map(|t| {
            old_pieces(&ranks, base, &t.token)
                .into_iter()
                .map(|(p, id)| {
                    id.map(|i| i as usize).filter(|&i| i < vocab).ok_or_else(|| {
                        VocabError::Mismatch(format!("piece {p:?} of new token {:?} is not in the model's vocabulary", t.token))
                    })
                })
                .collect::<Result<Vec<_>>>()
        })
        .collect::<Result<_>>()?;

    let vectors: Vec<(Vec<f32>, Option<Vec<f32>>)> = match method {
        InitMethod::Mean => pieces.iter().map(|p| (embedding.mean_of(p), head.as_ref().map(|h| h.mean_of(p)))).collect(),
        InitMethod::Random => {
            let mut rng = SplitMix64::new(seed);
            let (em, es) = embedding.moments();
            let hm = head.as_ref().map(Rows::moments);
            let mut sample = |mean: &[f32], std: &[f32]| mean.iter().zip(std).map(|(m, s)| m + s * rng.normal()).collect::<Vec<f32>>();
            pieces
                .iter()
                .map(|_| {
                    let input = sample(&em, &es);
                    let output = hm.as_ref().map(|(m, s)| sample(m, s));
                    (input, output)
                })
                .collect()
        }
        InitMethod::Focus => focus(&embedding, head.as_ref(), &pieces, extension, base, vocab),
    };
    let replaced: std::collections::HashMap<usize, usize> =
        extension.new_tokens.iter().enumerate().map(|(i, t)| (t.id as usize, i)).collect();
    let size = extension.new_tokens.iter().map(|t| t.id as usize + 1).max().unwrap_or(0).max(vocab);
    (0..size)
        .map(|id| match replaced.get(&id) {
            Some(&i) => Ok(VocabRow::New { input: vectors[i].0.clone(), output: vectors[i].1.clone() }),
            None if id < vocab => Ok(VocabRow::Existing(id)),
            None => Err(VocabError::Mismatch(format!("id {id} has neither an old row nor a new token"))),
        })
        .collect()
}

fn focus(
    embedding: &Rows,
    head: Option<&Rows>,
    pieces: &[Vec<usize>],
    extension: &Extension,
    base: &BpeTables,
    vocab: usize,
) -> Vec<(Vec<f32>, Option<Vec<f32>>)> {
    let mut overlap: Vec<usize> = base
        .vocab
        .values()
        .map(|&i| i as usize)
        .filter(|i| *i < vocab && extension.usage.get(&(*i as u32)).copied().unwrap_or(0) > 0)
        .collect();
    overlap.sort_unstable();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    let overlap_norms: Vec<f32> = overlap.iter().map(|&i| norm(embedding.row(i))).collect();
    pieces
        .iter()
        .map(|p| {
            let centre = embedding.mean_of(p);
            let c_norm = norm(&centre);
            let sims: Vec<f32> = overlap
                .iter()
                .zip(&overlap_norms)
                .map(|(&i, n)| embedding.row(i).iter().zip(&centre).map(|(a, b)| a * b).sum::<f32>() / (n * c_norm))
                .collect();
            let weights: Vec<(usize, f32)> =
                sparsemax(&sims).into_iter().zip(&overlap).filter(|(w, _)| *w > 0.0).map(|(w, &i)| (i, w)).collect();
            if weights.is_empty() {
                return (centre, head.map(|h| h.mean_of(p)));
            }
            (embedding.weighted(&weights), head.map(|h| h.weighted(&weights)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparsemax_is_a_sparse_distribution() {
        let w = sparsemax(&[0.9, 0.85, 0.1, -0.3]);
        assert!((w.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(w[0] > w[1] && w[1] > 0.0);
        assert_eq!(&w[2..], &[0.0, 0.0]);
        assert_eq!(sparsemax(&[5.0, 1.0]), vec![1.0, 0.0]);
    }
}
