//! Batching is invisible to the numbers: a packed row of documents, a padded row and an
//! incrementally decoded row give the logits each sequence gets on its own.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests and fixtures: a panic is how they report")]

use rosetta_model::{Interventions, KvCache, Padding, TokenBatch};
use rosetta_tests::fixtures::tiny_model;
use rosetta_tests::max_abs_diff;

fn logits(model: &rosetta_model::CausalLm, batch: &TokenBatch) -> Vec<f32> {
    model.forward(batch).into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

const VOCAB: usize = 261;

#[test]
fn packed_documents_do_not_see_each_other() {
    let model = tiny_model(5);
    let (a, b): (Vec<u32>, Vec<u32>) = ((10..17).collect(), (100..105).collect());
    let alone_a = logits(&model, &TokenBatch::single(&a).unwrap());
    let alone_b = logits(&model, &TokenBatch::single(&b).unwrap());
    let ids: Vec<u32> = a.iter().chain(&b).copied().collect();
    let segments: Vec<u32> = std::iter::repeat_n(0, a.len()).chain(std::iter::repeat_n(1, b.len())).collect();
    let packed = logits(&model, &TokenBatch::packed(ids, segments, 1, a.len() + b.len()).unwrap());
    let split = a.len() * VOCAB;
    assert!(max_abs_diff(&packed[..split], &alone_a) < 1e-5);
    assert!(max_abs_diff(&packed[split..], &alone_b) < 1e-5, "the second document saw the first");
}

#[test]
fn padding_on_either_side_changes_nothing() {
    let model = tiny_model(6);
    let (long, short): (Vec<u32>, Vec<u32>) = ((20..32).collect(), (40..45).collect());
    let alone = logits(&model, &TokenBatch::single(&short).unwrap());
    let right = logits(&model, &TokenBatch::pad(&[long.clone(), short.clone()], Padding::Right, 0).unwrap());
    let row = long.len() * VOCAB;
    assert!(max_abs_diff(&right[row..row + short.len() * VOCAB], &alone) < 1e-5);
    let left = logits(&model, &TokenBatch::pad(&[long.clone(), short.clone()], Padding::Left, 0).unwrap());
    let start = row + (long.len() - short.len()) * VOCAB;
    assert!(max_abs_diff(&left[start..], &alone) < 1e-5);
}

#[test]
fn kv_cache_decoding_matches_the_full_forward() {
    let model = tiny_model(7);
    let ids: Vec<u32> = (50..62).collect();
    let full = logits(&model, &TokenBatch::single(&ids).unwrap());
    // Growing from the first call's size (5 → 10 → 20 positions: the buffers double twice) and
    // reserved for the whole sequence at once (never grows) give the same logits.
    for (mut cache, capacities) in
        [(KvCache::new(model.num_layers(), 1), [5, 10, 20, 20]), (KvCache::with_capacity(model.num_layers(), 1, ids.len()), [12; 4])]
    {
        let mut incremental = Vec::new();
        for (chunk, capacity) in [&ids[..5], &ids[5..6], &ids[6..11], &ids[11..]].into_iter().zip(capacities) {
            let (out, _) = model.forward_cached(&TokenBatch::single(chunk).unwrap(), &mut cache, &Interventions::none()).unwrap();
            incremental.extend(out.into_data().convert::<f32>().try_to_vec::<f32>().unwrap());
            assert_eq!(cache.capacity(), capacity, "after {} positions", cache.len());
        }
        assert_eq!(cache.len(), ids.len());
        assert!(max_abs_diff(&full, &incremental) < 1e-5);
    }
}

#[test]
fn choice_scores_are_each_continuations_mean_logprob_despite_padding() {
    use rosetta_model::choice::choice_logprobs_blocking;
    use rosetta_model::scoring::scoring_ids;
    let model = rosetta_tests::fixtures::tiny_model(4);
    let tokenizer = rosetta_tests::fixtures::tiny_tokenizer();
    let choices = [" sat", " ran far away", " t"];
    let scores = choice_logprobs_blocking(&model, &tokenizer, "the cat", &choices).unwrap();
    for (choice, score) in choices.iter().zip(&scores) {
        let mut ids = scoring_ids(&tokenizer, "the cat").unwrap();
        let context = ids.len();
        ids.extend(tokenizer.encode(choice, false).unwrap());
        let logits = model.forward(&rosetta_model::TokenBatch::single(&ids).unwrap());
        let [_, s, v] = logits.dims();
        let values: Vec<f32> = logits.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        let mut total = 0.0f64;
        for p in context - 1..s - 1 {
            let row = &values[p * v..(p + 1) * v];
            let max = row.iter().fold(f32::MIN, |m, x| m.max(*x)) as f64;
            let lse = row.iter().map(|x| (*x as f64 - max).exp()).sum::<f64>().ln() + max;
            total += row[ids[p + 1] as usize] as f64 - lse;
        }
        let expected = total / (s - context) as f64;
        assert!((score - expected).abs() < 1e-4, "{choice:?}: {score} vs {expected}");
    }
    assert!(choice_logprobs_blocking(&model, &tokenizer, "x", &[]).is_err());
}
