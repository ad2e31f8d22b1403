//! libFuzzer target: [`lvsdr::fuzz::proc_listing`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lvsdr::fuzz::proc_listing(data));
