//! The committed CRD must be exactly what the Rust types generate: users install the file, the
//! controller trusts the types, and the two must never drift apart.

#[test]
fn committed_crds_match_the_rust_types() {
    let root = env!("CARGO_MANIFEST_DIR");
    for path in [
        tenantry::crd::CRD_PATH,
        "config/crd/tenantry.io_tenantpolicies.yaml",
        "charts/tenantry/crds/tenantry.io_tenantpolicies.yaml",
    ] {
        let path = format!("{root}/{path}");
        let committed =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
        assert!(
            committed == tenantry::crd::crd_yaml(),
            "{path} is stale: run `make crds` and commit the result"
        );
    }
}
