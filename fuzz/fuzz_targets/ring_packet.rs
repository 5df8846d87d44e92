#![no_main]
//! cargo-fuzz target `ring_packet`; the body is `hv_fuzz_logic::ring_packet`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| hv_fuzz_logic::ring_packet(data));
