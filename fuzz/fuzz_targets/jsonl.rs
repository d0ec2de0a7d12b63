//! libFuzzer entry for [`rosetta_fuzz::jsonl`] (`scripts/fuzz.sh jsonl`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rosetta_fuzz::jsonl(data));
