#![no_main]
//! cargo-fuzz target `netvsp_offload`; the body is `hv_fuzz_logic::netvsp_offload`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| hv_fuzz_logic::netvsp_offload(data));
