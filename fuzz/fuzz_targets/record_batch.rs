//! A produce partition's `records` through the broker's batch checks, then the readers of
//! stored batches.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| strom_broker::fuzzing::record_batch(data));
