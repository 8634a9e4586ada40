//! Metadata records, one JSON document per line, validated and applied in order to an image.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| strom_broker::fuzzing::metadata_records(data));
