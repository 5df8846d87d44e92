#![no_main]
//! cargo-fuzz target `netvsp_guest`; the body is `hv_fuzz_logic::netvsp_guest`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| hv_fuzz_logic::netvsp_guest(data));
