//! libFuzzer entry for [`rosetta_fuzz::gguf_tokenizer`] (`scripts/fuzz.sh gguf_tokenizer`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rosetta_fuzz::gguf_tokenizer(data));
