//! Writes the fuzz targets' seed inputs to `DIR/<target>/seed-<n>` (scripts/fuzz.sh runs it
//! before libFuzzer, which starts from them).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a tool: a panic is how it reports")]

fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).expect("usage: fuzz_seeds DIR"));
    for (target, seeds) in rosetta_tests::fixtures::fuzz_seeds() {
        let target_dir = dir.join(target);
        std::fs::create_dir_all(&target_dir).unwrap();
        for (i, seed) in seeds.iter().enumerate() {
            std::fs::write(target_dir.join(format!("seed-{i}")), seed).unwrap();
        }
        println!("{target}: {} seeds", seeds.len());
    }
}
