//! libFuzzer entry for [`rosetta_fuzz::train_toml`] (`scripts/fuzz.sh train_toml`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rosetta_fuzz::train_toml(data));
