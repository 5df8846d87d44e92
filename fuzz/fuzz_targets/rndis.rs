#![no_main]
//! cargo-fuzz target `rndis`; the body is `hv_fuzz_logic::rndis`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| hv_fuzz_logic::rndis(data));
