//! A client's request frame through `network::process` on a real single-node broker, started
//! once per fuzzing process in `$TMPDIR/strom-fuzz-dispatch-<pid>` (scripts/fuzz.sh points
//! TMPDIR at a directory it removes afterwards). The broker keeps its state from one input to
//! the next, as it would across the requests of many clients.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use strom_broker::fuzzing::Dispatcher;

fn dispatcher() -> &'static Dispatcher {
    static DISPATCHER: OnceLock<Dispatcher> = OnceLock::new();
    DISPATCHER.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("strom-fuzz-dispatch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Dispatcher::start(&dir)
    })
}

fuzz_target!(|data: &[u8]| dispatcher().dispatch(data));
