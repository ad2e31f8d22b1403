//! libFuzzer target: [`lvsdr_fuzz_harness::agent_json`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lvsdr_fuzz_harness::agent_json(data));
