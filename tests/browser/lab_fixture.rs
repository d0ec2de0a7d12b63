//! `cargo run -p rosetta-tests --example lab_fixture -- DIR`: writes the tiny random llama (6
//! layers, byte-level tokenizer) as an HF directory for the web lab's browser tests — small enough
//! that every room runs in seconds on SwiftShader and on the CPU fallback.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests and fixtures: a panic is how they report")]

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: lab_fixture DIR");
        std::process::exit(2);
    };
    rosetta_tests::fixtures::write_tiny_deep_hf(std::path::Path::new(&dir), 5, 6);
    println!("{dir}");
}
