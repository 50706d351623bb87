#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stackgate::fuzz::deployment(data));
