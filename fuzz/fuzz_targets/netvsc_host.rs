#![no_main]
//! cargo-fuzz target `netvsc_host`; the body is `hv_fuzz_logic::netvsc_host`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| hv_fuzz_logic::netvsc_host(data));
