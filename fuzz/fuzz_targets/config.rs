//! libFuzzer target: [`lvsdr::fuzz::config`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lvsdr::fuzz::config(data));
