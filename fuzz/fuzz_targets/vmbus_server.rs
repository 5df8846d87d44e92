#![no_main]
//! cargo-fuzz target `vmbus_server`; the body is `hv_fuzz_logic::vmbus_server`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| hv_fuzz_logic::vmbus_server(data));
