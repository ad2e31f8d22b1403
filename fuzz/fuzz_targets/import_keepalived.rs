//! libFuzzer target: [`lvsdr::fuzz::import_keepalived`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lvsdr::fuzz::import_keepalived(data));
