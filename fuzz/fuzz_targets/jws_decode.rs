#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| connector_identity_fuzz::jws_decode::run(data));
