//! libFuzzer target: [`lvsdr::fuzz::import_ipvsadm`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lvsdr::fuzz::import_ipvsadm(data));
