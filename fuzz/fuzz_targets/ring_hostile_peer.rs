#![no_main]
//! cargo-fuzz target `ring_hostile_peer`; the body is `hv_fuzz_logic::ring_hostile_peer`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| hv_fuzz_logic::ring_hostile_peer(data));
