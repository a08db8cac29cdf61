//! The end-to-end tests' helpers (the running control plane's client, `kubectl` of the server's
//! own version, uniquely named namespaces removed after each test, polling with a deadline, the
//! operator process, API-state snapshots, fixtures) live in the `tenantry-testkit` crate
//! (testkit/), shared with the fault suite and the benchmark; the tests name them
//! `crate::harness::...`.

pub use tenantry_testkit::*;
