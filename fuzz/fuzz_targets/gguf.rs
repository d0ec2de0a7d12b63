//! libFuzzer entry for [`rosetta_fuzz::gguf`] (`scripts/fuzz.sh gguf`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rosetta_fuzz::gguf(data));
