//! The fuzz targets on stable, in CI: every seed, a few hundred random mutations of each
//! (`ROSETTA_FUZZ_MUTATIONS` to change the count), and every input a fuzzer ever found a crash
//! with (`fuzz/regressions/<target>/`) must return — no panic — within a second. libFuzzer's
//! coverage-guided runs are `scripts/fuzz.sh`; their figures are in `reports/fuzz/`.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests and fixtures: a panic is how they report")]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use rosetta_rng::SplitMix64;

/// Values that break size arithmetic: zero, one, the 32- and 64-bit edges.
const INTERESTING: [u64; 8] = [0, 1, 0x7f, 0xff, 0x7fff_ffff, 0xffff_ffff, 1 << 40, u64::MAX];

/// One to four random edits of `seed`, the kinds a fuzzer's mutator makes.
fn mutate(seed: &[u8], rng: &mut SplitMix64) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = if data.is_empty() { 0 } else { rng.below(data.len()) };
        match rng.below(6) {
            0 if !data.is_empty() => data[at] ^= 1 << rng.below(8),
            1 if !data.is_empty() => data[at] = INTERESTING[rng.below(INTERESTING.len())] as u8,
            2 if data.len() >= at + 8 => {
                let value = INTERESTING[rng.below(INTERESTING.len())];
                data[at..at + 8].copy_from_slice(&value.to_le_bytes());
            }
            3 => data.truncate(at),
            4 if !data.is_empty() => {
                let len = rng.below(data.len() - at + 1).min(4096);
                let chunk = data[at..at + len].to_vec();
                let to = rng.below(data.len() + 1);
                data.splice(to..to, chunk);
            }
            _ => {
                let junk: Vec<u8> = (0..1 + rng.below(16)).map(|_| rng.next_u64() as u8).collect();
                data.splice(at..at, junk);
            }
        }
    }
    data
}

#[test]
fn every_target_survives_its_seeds_mutations_and_past_crashes() {
    let mutations: usize = std::env::var("ROSETTA_FUZZ_MUTATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let seeds = rosetta_tests::fixtures::fuzz_seeds();
    let regressions = rosetta_tests::repo_root().join("fuzz/regressions");
    let mut failures = Vec::new();
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    for (name, target) in rosetta_fuzz::TARGETS {
        let seeds = &seeds.iter().find(|(t, _)| *t == name).unwrap_or_else(|| panic!("no seeds for {name}")).1;
        assert!(!seeds.is_empty(), "{name} has no seeds: the replay would test nothing");
        let mut inputs: Vec<Vec<u8>> = seeds.clone();
        if let Ok(entries) = std::fs::read_dir(regressions.join(name)) {
            inputs.extend(entries.filter_map(|e| std::fs::read(e.ok()?.path()).ok()));
        }
        let mut rng = SplitMix64::new(0x5eed ^ name.len() as u64);
        for i in 0..mutations {
            inputs.push(mutate(&seeds[i % seeds.len()], &mut rng));
        }
        let (mut slowest, start) = (0.0f64, Instant::now());
        for input in &inputs {
            let t = Instant::now();
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| target(input))) {
                let message = payload.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| payload.downcast_ref::<String>().cloned());
                let path = std::env::temp_dir().join(format!("rosetta-fuzz-{name}-{}", failures.len()));
                std::fs::write(&path, input).unwrap();
                failures.push(format!(
                    "{name} panicked on {} bytes (saved to {}): {}",
                    input.len(),
                    path.display(),
                    message.unwrap_or_default()
                ));
            }
            slowest = slowest.max(t.elapsed().as_secs_f64());
        }
        if slowest > 1.0 {
            failures.push(format!("{name}: an input took {slowest:.2} s"));
        }
        eprintln!("{name}: {} inputs in {:.2} s, slowest {:.3} s", inputs.len(), start.elapsed().as_secs_f64(), slowest);
    }
    std::panic::set_hook(previous_hook);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn mutations_change_the_input() {
    let mut rng = SplitMix64::new(1);
    let seed = vec![7u8; 64];
    let changed = (0..100).filter(|_| mutate(&seed, &mut rng) != seed).count();
    assert!(changed > 90, "only {changed} of 100 mutations changed anything");
}
