#![no_main]
//! cargo-fuzz target `hypercall_decode`; the body is `hv_fuzz_logic::hypercall_decode`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| hv_fuzz_logic::hypercall_decode(data));
