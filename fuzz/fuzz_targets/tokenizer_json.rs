//! libFuzzer entry for [`rosetta_fuzz::tokenizer_json`] (`scripts/fuzz.sh tokenizer_json`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rosetta_fuzz::tokenizer_json(data));
