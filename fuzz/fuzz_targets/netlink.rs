//! libFuzzer target: [`lvsdr::fuzz::netlink`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lvsdr::fuzz::netlink(data));
