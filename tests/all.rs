//! The cross-crate tests, one module per concern, linked into one test binary (see
//! `Cargo.toml`): `cargo nextest run -p rosetta-tests -E 'test(/^model_parity::/)'` runs one
//! module. Each module opens with what it checks.

#[path = "fuzz/replay.rs"]
mod fuzz_replay;
#[path = "kernels/parity.rs"]
mod kernels_parity;
#[path = "kernels/training.rs"]
mod kernels_training;
#[path = "model/bad_input.rs"]
mod model_bad_input;
#[path = "model/batching.rs"]
mod model_batching;
#[path = "model/gguf.rs"]
mod model_gguf;
#[path = "model/gguf_export.rs"]
mod model_gguf_export;
#[path = "model/parity.rs"]
mod model_parity;
#[path = "model/quantized.rs"]
mod model_quantized;
#[path = "train/peft.rs"]
mod peft_adapters;
#[path = "prune/parity.rs"]
mod prune_parity;
#[path = "sdrrl/sdrrl.rs"]
mod sdrrl;
#[path = "shifcon/shifcon.rs"]
mod shifcon;
#[path = "shifcon/band.rs"]
mod shifcon_band;
#[path = "train/training.rs"]
mod train_end_to_end;
#[path = "vocab/extension.rs"]
mod vocab_extension;
