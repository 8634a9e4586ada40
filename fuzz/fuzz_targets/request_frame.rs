//! A client's request frame (what follows the size prefix) through the decode half of
//! `network::process`: size, API key and version checks, header, schema walk, decode.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| strom_broker::fuzzing::request_frame(data));
