//! libFuzzer target: [`lvsdr_fuzz_harness::import_piranha`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lvsdr_fuzz_harness::import_piranha(data));
