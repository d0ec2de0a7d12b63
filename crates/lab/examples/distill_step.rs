//! Times the distillation room's student step natively (flex, the CPU path the browser's worker
//! also runs) with SmolLM2's 49 152-token vocabulary and twelve synthetic lessons of the room's
//! shape (16 prompt tokens, 8 answer tokens, top-16 soft targets): the profile behind the
//! room's steps per second (`reports/lab/README.md`).
//!
//!   cargo run --release -p rosetta-lab --example distill_step -- [STEPS]
use rosetta_lab::distill::{DistillConfig, Distiller, Lesson};
use rosetta_model::burn::prelude::Device;
use rosetta_model::readback::block_on;
use rosetta_model::tiny::tiny_config;
fn main() -> rosetta_lab::Result<()> {
    let teacher = rosetta_model::ModelConfig { vocab_size: 49152, ..tiny_config() };
    let config = DistillConfig::default();
    let lessons: Vec<Lesson> = (0..12u32)
        .map(|i| Lesson {
            english: String::new(),
            target: String::new(),
            target_ids: (0..16).map(|t| (i * 977 + t * 31) % 49152).collect(),
            answer: (0..8).map(|t| (i * 13 + t * 7) % 49152).collect(),
            soft_targets: (0..8)
                .map(|t| ((0..16).map(|j| (i * 101 + t * 17 + j * 3001) % 49152).collect(), vec![1.0 / 16.0; 16]))
                .collect(),
        })
        .collect();
    let mut d = Distiller::new(&teacher, lessons, config, &Device::flex())?;
    block_on(d.train_step())?;
    let n = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(20);
    let t = std::time::Instant::now();
    for _ in 0..n {
        block_on(d.train_step())?;
    }
    let s = t.elapsed().as_secs_f64();
    println!("{n} steps in {s:.2} s: {:.1} steps/s", n as f64 / s);
    Ok(())
}
