//! libFuzzer target: [`lvsdr::fuzz::dns`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lvsdr::fuzz::dns(data));
