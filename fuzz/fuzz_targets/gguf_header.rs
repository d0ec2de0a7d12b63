//! libFuzzer entry for [`rosetta_fuzz::gguf_header`] (`scripts/fuzz.sh gguf_header`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rosetta_fuzz::gguf_header(data));
