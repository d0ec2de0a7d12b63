//! libFuzzer entry for [`rosetta_fuzz::safetensors`] (`scripts/fuzz.sh safetensors`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rosetta_fuzz::safetensors(data));
