//! `cfg(has_threads)`: the target can run rayon's pool — every native target, and wasm32 built
//! with the `atomics` target feature (the lab's threaded worker module, `scripts/build-lab.sh`).
//! Without it (plain wasm32) the parallel loops run in order on the calling thread.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(has_threads)");
    let wasm = std::env::var("CARGO_CFG_TARGET_FAMILY").is_ok_and(|f| f.split(',').any(|f| f == "wasm"));
    let atomics = std::env::var("CARGO_CFG_TARGET_FEATURE").is_ok_and(|f| f.split(',').any(|f| f == "atomics"));
    if !wasm || atomics {
        println!("cargo::rustc-cfg=has_threads");
    }
}
