//! libFuzzer target: [`lvsdr::fuzz::import_piranha`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lvsdr::fuzz::import_piranha(data));
