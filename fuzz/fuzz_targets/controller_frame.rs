//! A controller-listener frame body decoded as a request and as a response.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| strom_broker::fuzzing::controller_frame(data));
