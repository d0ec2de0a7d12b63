//! libFuzzer entry for [`rosetta_fuzz::config_json`] (`scripts/fuzz.sh config_json`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rosetta_fuzz::config_json(data));
