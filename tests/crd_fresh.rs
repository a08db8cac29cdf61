//! The committed CRD must be exactly what the Rust types generate: users install the file, the
//! controller trusts the types, and the two must never drift apart.

#[test]
fn committed_crd_matches_the_rust_types() {
    let root = env!("CARGO_MANIFEST_DIR");
    let path = format!("{root}/{}", tenantry::crd::CRD_PATH);
    let committed =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    assert!(
        committed == tenantry::crd::crd_yaml(),
        "{path} is stale: run `make crds` and commit the result"
    );
}
