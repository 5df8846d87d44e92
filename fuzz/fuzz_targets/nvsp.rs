#![no_main]
//! cargo-fuzz target `nvsp`; the body is `hv_fuzz_logic::nvsp`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| hv_fuzz_logic::nvsp(data));
