//! The measurements behind Rosetta's ShifCon conventions (`reports/shifcon/README.md` §2), per
//! residual site, en/hu, the first 200 pairs of the embedded test split:
//! - the distance between the languages' raw mean states pooled after the start token and with
//!   it (the start token is an attention sink);
//! - the released shift (a difference of means of unit sentence states) as a share of the raw one;
//! - how far the raw language offset turns and grows from one site to the next (what adding a
//!   vector one layer early changes).
//!
//! `cargo run --release -p rosetta-shifcon --example conventions_measurements -- MODEL`
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a measurement script: a panic is how it reports")]

use rosetta_data::corpus::CorpusDir;
use rosetta_data::{BadLines, ParallelCorpus};
use rosetta_model::burn::prelude::*;
use rosetta_model::scoring::scoring_ids;
use rosetta_model::{Checkpoint, Interventions, Pooling, TokenBatch};
use rosetta_shifcon::states::{StateOptions, pooled_states, sentence_states_blocking};
use rosetta_shifcon::{Conventions, Matrix};

const SENTENCES: usize = 200;

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

fn offset(en: &Matrix, hu: &Matrix) -> Vec<f64> {
    en.column_means().iter().zip(hu.column_means()).map(|(a, b)| a - b).collect()
}

fn mean_row_norm(m: &Matrix) -> f64 {
    (0..m.rows).map(|i| norm(m.row(i))).sum::<f64>() / m.rows as f64
}

fn main() {
    let path = std::env::args().nth(1).expect("usage: conventions_measurements MODEL");
    let checkpoint = Checkpoint::open(std::path::Path::new(&path), None).unwrap();
    let model = checkpoint.load(&Device::flex()).unwrap();
    let tokenizer = &checkpoint.tokenizer;
    let (corpus, _) = ParallelCorpus::read(&CorpusDir::embedded().parallel_test(), BadLines::Fail).unwrap();
    let aligned = corpus.aligned(&["en".to_string(), "hu".to_string()]).unwrap();
    let texts = |k: usize| -> Vec<&str> { aligned.iter().take(SENTENCES).map(|(_, t)| t[k]).collect() };
    let sites: Vec<usize> = (0..=model.num_layers()).collect();
    let d = model.config().hidden_size;
    let states = |k: usize, conventions: Conventions| -> Vec<Matrix> {
        let options = StateOptions { conventions, ..Default::default() };
        sentence_states_blocking(&model, tokenizer, &texts(k), &sites, &options, &Interventions::none(), |_| {}).unwrap()
    };
    // Raw means with the start token. Position 0 holds the start token and attends only to
    // itself, so its state h0 is the same in every sentence: mean_with = (h0 + (T−1)·mean_after)/T.
    let start = TokenBatch::single(&[tokenizer.document_start_id().expect("a start token")]).unwrap();
    let with_start = |k: usize, after: &[Matrix]| -> Vec<Matrix> {
        let max_tokens = StateOptions::default().max_tokens;
        let lengths: Vec<usize> = texts(k).iter().map(|t| scoring_ids(tokenizer, t).unwrap().len().min(max_tokens)).collect();
        sites
            .iter()
            .map(|&site| {
                let pooled = pooled_states(&model, &start, &[site], &Interventions::none(), Pooling::Mean).unwrap();
                let h0 = pooled[0].clone().into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
                let mut m = after[site].clone();
                for (i, &t) in lengths.iter().enumerate() {
                    for j in 0..d {
                        m.data[i * d + j] = (h0[j] as f64 + (t as f64 - 1.0) * m.data[i * d + j]) / t as f64;
                    }
                }
                m
            })
            .collect()
    };
    let (en_raw, hu_raw) = (states(0, Conventions::Rosetta), states(1, Conventions::Rosetta));
    let (en_unit, hu_unit) = (states(0, Conventions::Released), states(1, Conventions::Released));
    let (en_start, hu_start) = (with_start(0, &en_raw), with_start(1, &hu_raw));
    println!(
        "site | ‖Δμ‖ after start | ‖Δμ‖ with start | ratio | state norm after start | with start | released shift ‖Δ‖ | % of raw | cos(Δ_s, Δ_s−1) | ‖Δ_s−1‖/‖Δ_s‖"
    );
    for &s in &sites {
        let raw = offset(&en_raw[s], &hu_raw[s]);
        let with = norm(&offset(&en_start[s], &hu_start[s]));
        let unit = norm(&offset(&en_unit[s], &hu_unit[s]));
        let (turn, growth) = if s > 0 {
            let before = offset(&en_raw[s - 1], &hu_raw[s - 1]);
            let dot: f64 = raw.iter().zip(&before).map(|(a, b)| a * b).sum();
            (format!("{:.3}", dot / (norm(&raw) * norm(&before))), format!("{:.3}", norm(&before) / norm(&raw)))
        } else {
            ("—".into(), "—".into())
        };
        println!(
            "{s} | {:.2} | {with:.2} | {:.2} | {:.1} | {:.1} | {unit:.4} | {:.2} | {turn} | {growth}",
            norm(&raw),
            with / norm(&raw),
            mean_row_norm(&en_raw[s]),
            mean_row_norm(&en_start[s]),
            100.0 * unit / norm(&raw)
        );
    }
}
