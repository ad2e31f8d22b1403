//! libFuzzer target: [`lvsdr::fuzz::tcp_segment`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lvsdr::fuzz::tcp_segment(data));
