#![no_main]
//! cargo-fuzz target `mshv_exits`; the body is `hv_fuzz_logic::mshv_exits`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| hv_fuzz_logic::mshv_exits(data));
