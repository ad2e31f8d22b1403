//! libFuzzer target: [`lvsdr::fuzz::agent_json`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lvsdr::fuzz::agent_json(data));
