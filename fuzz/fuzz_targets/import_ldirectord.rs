//! libFuzzer target: [`lvsdr::fuzz::import_ldirectord`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lvsdr::fuzz::import_ldirectord(data));
