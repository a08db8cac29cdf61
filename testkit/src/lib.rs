//! What Tenantry's end-to-end tests (tests/e2e, tests/faults) and its benchmark (bench/) share,
//! each helper once:
//!
//! - [`cluster`]: the local control plane's client and `kubectl` of the server's own version;
//! - [`poll`]: polling with a deadline;
//! - [`stats`]: percentiles and the figures of a sample;
//! - [`namespaces`]: namespaces in bulk, uniquely named test namespaces removed after each test;
//! - [`operator`]: a `tenantry run` process, started, read (metrics) and stopped;
//! - [`snapshot`]: what the API server shows of Tenantry's writes (uid, resourceVersion,
//!   managedFields), to prove that nothing was written;
//! - [`fixtures`]: policies, storage classes and the canary the tests create and remove;
//! - [`own_plane`]: a control plane of a test's own, with simulated nodes if asked.
//!
//! Everything is also re-exported at the crate root, as the tests import it.

pub mod cluster;
pub mod fixtures;
pub mod namespaces;
pub mod operator;
pub mod own_plane;
pub mod poll;
pub mod snapshot;
pub mod stats;

pub use cluster::{
    Output, client, kubeconfig_path, kubectl, kubectl_ok, kubectl_with_input, repo_root,
};
pub use fixtures::{
    Canary, Namespaced, TestClass, TestPolicy, event_notes, policy, ready_condition,
    wait_event_notes, wait_gone, wait_present,
};
pub use namespaces::{Existing, TestNamespace, create_namespaces, labels, namespace, unique_name};
pub use operator::{Launch, Operator, SHARD_LABEL, free_port, http_get, tenantry_binary};
pub use own_plane::OwnControlPlane;
pub use poll::{DEADLINE, eventually, eventually_within, poll, wait_for};
pub use snapshot::{
    ApiState, api_state, changed, managed_kinds, managed_state, pdb_observed, quota_current,
};
pub use stats::{Stats, nearest_rank, percentile};
