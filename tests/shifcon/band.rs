//! The band is a property of the model, not of the sample: on the default model
//! (SmolLM2-135M-Instruct) and the embedded test split, 60, 120 and 200 sentences per language
//! give the same window — or the resampling says the choice is uncertain, and the JSON says so.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests and fixtures: a panic is how they report")]

use std::collections::BTreeMap;

use rosetta_data::corpus::CorpusDir;
use rosetta_data::{BadLines, ParallelCorpus};
use rosetta_model::burn::prelude::*;
use rosetta_model::{Checkpoint, Interventions};
use rosetta_shifcon::geometry::{GeometryOptions, analyse};
use rosetta_shifcon::states::{StateOptions, sentence_states_blocking};
use rosetta_shifcon::{Geometry, Matrix};
use rosetta_tests::{default_model, skip};

const SIZES: [usize; 3] = [60, 120, 200];

#[test]
fn the_band_does_not_move_with_the_number_of_sentences() {
    let Some(path) = default_model() else {
        return skip("the default model is missing (run scripts/fetch-model.sh)");
    };
    let checkpoint = Checkpoint::open(&path, None).unwrap();
    let model = checkpoint.load(&Device::flex()).unwrap();
    let (corpus, _) = ParallelCorpus::read(&CorpusDir::embedded().parallel_test(), BadLines::Fail).unwrap();
    let langs = vec!["en".to_string(), "hu".to_string()];
    let aligned = corpus.aligned(&langs).unwrap();
    let largest = SIZES[SIZES.len() - 1];
    assert!(aligned.len() >= largest, "the embedded test split has {} en/hu records", aligned.len());
    let sites: Vec<usize> = (0..=model.num_layers()).collect();
    // States of the largest sample once; the smaller samples are its first sentences.
    let mut states: BTreeMap<String, Vec<Matrix>> = BTreeMap::new();
    for (k, lang) in langs.iter().enumerate() {
        let texts: Vec<&str> = aligned.iter().take(largest).map(|(_, t)| t[k]).collect();
        let per_site = sentence_states_blocking(
            &model,
            &checkpoint.tokenizer,
            &texts,
            &sites,
            &StateOptions::default(),
            &Interventions::none(),
            |_| {},
        )
        .unwrap();
        states.insert(lang.clone(), per_site);
    }
    let geometries: Vec<Geometry> = SIZES
        .iter()
        .map(|&n| {
            let first: Vec<usize> = (0..n).collect();
            let sample = states.iter().map(|(l, m)| (l.clone(), m.iter().map(|s| s.select_rows(&first)).collect())).collect();
            analyse(&sample, &GeometryOptions::default()).unwrap()
        })
        .collect();
    let reference = [geometries[2].band.to, geometries[2].band.back];
    // The largest sample must answer: a test that accepted an uncertain reference could pass on
    // any band.
    assert!(!geometries[2].band.stability.as_ref().unwrap().uncertain, "200 sentences: {:?}", geometries[2].band);
    for (n, geometry) in SIZES.iter().zip(&geometries) {
        let band = &geometry.band;
        let stability = band.stability.as_ref().expect("resampled");
        eprintln!(
            "{n} sentences: band {}..{} ({}), point estimate {:?}, without the earliest start {:?}",
            band.to,
            band.back,
            band.confidence(),
            band.point_estimate,
            band.unrestricted
        );
        // The JSON carries the choice's uncertainty.
        let json = serde_json::to_value(geometry).unwrap();
        assert_eq!(json["band"]["stability"]["uncertain"].as_bool(), Some(stability.uncertain));
        assert_eq!(json["band"]["stability"]["frequency"].as_f64(), Some(stability.frequency));
        assert!(
            [band.to, band.back] == reference || stability.uncertain,
            "{n} sentences pick {}..{} with confidence, 200 pick {reference:?}",
            band.to,
            band.back
        );
        // The held-out mean term of the shifted states is the noise its expectation predicts:
        // within a factor of 2 of it at every site from the first layer on.
        for site in &geometry.sites[1..] {
            let hu = &site.langs["hu"].shifted;
            assert!(hu.mean < 2.0 * hu.mean_noise && hu.mean > 0.25 * hu.mean_noise, "{n} sentences, site {}: {hu:?}", site.site);
        }
    }
}
