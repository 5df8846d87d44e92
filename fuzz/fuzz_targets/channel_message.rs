#![no_main]
//! cargo-fuzz target `channel_message`; the body is `hv_fuzz_logic::channel_message`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| hv_fuzz_logic::channel_message(data));
