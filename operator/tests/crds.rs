//! The checked-in CRDs (`crds/` and the Helm chart's copy) must match the Rust types.

#[test]
fn checked_in_crds_match_the_types() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let files = strom_operator::crd::crd_files().expect("CRDs serialize");
    assert_eq!(files.len(), 4);
    for dir in ["crds", "charts/strom/crds"] {
        for (file, generated) in &files {
            let path = root.join(dir).join(file);
            let checked_in = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!(
                    "{}: {e}; run `cargo run -p strom-operator --bin crdgen`",
                    path.display()
                )
            });
            assert!(
                &checked_in == generated,
                "{dir}/{file} drifted from the Rust types; run `cargo run -p strom-operator --bin crdgen`"
            );
        }
    }
}
