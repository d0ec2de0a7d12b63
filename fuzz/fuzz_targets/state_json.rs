//! libFuzzer entry for [`rosetta_fuzz::state_json`] (`scripts/fuzz.sh state_json`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rosetta_fuzz::state_json(data));
