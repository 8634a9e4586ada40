//! Replays the seed corpora of the fuzz targets (`fuzz/corpus/<target>/`) through the same
//! bodies the targets run (`strom_broker::fuzzing`), without cargo-fuzz, so every input that
//! ever found a bug stays a regression test. Long fuzzing runs: `scripts/fuzz.sh`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use strom_broker::fuzzing::{self, Dispatcher, DISPATCH_THREADS};

/// Every file of one target's corpus, sorted by name.
fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a corpus entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no inputs", dir.display());
    files
}

/// Runs every input of `target` through `run`; fails naming each input that panicked.
fn replay(target: &str, run: impl Fn(&[u8])) {
    let files = corpus(target);
    let failed: Vec<String> = files
        .iter()
        .filter(|path| {
            let data = std::fs::read(path).expect("a corpus file");
            catch_unwind(AssertUnwindSafe(|| run(&data))).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} {target} inputs failed (replay one with `cargo fuzz run {target} <file>` in \
         fuzz/):\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
}

#[test]
fn request_frame_corpus() {
    replay("request_frame", fuzzing::request_frame);
}

#[test]
fn record_batch_corpus() {
    replay("record_batch", fuzzing::record_batch);
}

#[test]
fn metadata_records_corpus() {
    replay("metadata_records", fuzzing::metadata_records);
}

#[test]
fn controller_frame_corpus() {
    replay("controller_frame", fuzzing::controller_frame);
}

/// Panics on the dispatching broker's own threads, where tokio would otherwise catch them
/// without failing anything (a background task of the broker, a request left running).
static BROKER_PANICS: AtomicUsize = AtomicUsize::new(0);

#[test]
fn request_dispatch_corpus() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current()
            .name()
            .is_some_and(|name| name.starts_with(DISPATCH_THREADS))
        {
            BROKER_PANICS.fetch_add(1, Ordering::SeqCst);
        }
        default_hook(info);
    }));
    let dir = tempfile::tempdir().expect("a temporary directory");
    let dispatcher = Dispatcher::start(dir.path());
    replay("request_dispatch", |data| dispatcher.dispatch(data));
    dispatcher.stop(Duration::from_secs(2));
    assert_eq!(
        BROKER_PANICS.load(Ordering::SeqCst),
        0,
        "the broker panicked while serving the request_dispatch corpus"
    );
}
