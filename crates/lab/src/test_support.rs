//! Fixtures for the rooms' unit tests: the workspace's tiny random llama and the embedded corpus.

use rosetta_model::burn::prelude::Device;
use rosetta_model::tiny::{tiny_config, tiny_tokenizer, tiny_tokenizer_json};
use rosetta_model::weights::random::RandomWeights;
use rosetta_model::{CausalLm, ModelConfig, TextTokenizer};

use crate::manifest::{Manifest, ManifestOptions, build};

pub fn tiny_model_and_tokenizer(layers: usize) -> (CausalLm, TextTokenizer) {
    let config = ModelConfig { num_hidden_layers: layers, ..tiny_config() };
    let model = CausalLm::from_source(&config, &RandomWeights::new(&config, 3, 0.2), &Device::flex()).expect("tiny model");
    (model, tiny_tokenizer())
}

/// en/hu/de parallel rows of the embedded corpus, short enough for the byte-level tiny model.
pub fn tiny_manifest() -> Manifest {
    let options = ManifestOptions { langs: ["en", "hu", "de"].map(String::from).to_vec(), rows: 20, max_chars: 80, prompts: 4 };
    build(&rosetta_data::corpus::CorpusDir::embedded(), &options).expect("manifest from the embedded corpus")
}

/// The tiny tokenizer with two more merges, "Ġt"+"h" and "i"+"n" (ids 261 and 262).
pub fn tiny_extended_tokenizer() -> TextTokenizer {
    let mut json: serde_json::Value = serde_json::from_str(&tiny_tokenizer_json()).expect("tiny tokenizer json");
    let model = &mut json["model"];
    model["vocab"]["Ġth"] = 261.into();
    model["vocab"]["in"] = 262.into();
    let merges = model["merges"].as_array_mut().expect("merges");
    merges.push(serde_json::json!(["Ġt", "h"]));
    merges.push(serde_json::json!(["i", "n"]));
    TextTokenizer::from_hf_json(&json.to_string(), None, None, "tiny extended tokenizer.json").expect("extended tiny tokenizer")
}
