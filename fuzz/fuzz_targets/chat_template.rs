//! libFuzzer entry for [`rosetta_fuzz::chat_template`] (`scripts/fuzz.sh chat_template`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rosetta_fuzz::chat_template(data));
