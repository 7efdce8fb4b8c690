#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pmn::fuzzing::feed(data));
