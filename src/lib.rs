//! Tenantry: keeps every selected namespace's LimitRanges, ResourceQuotas and
//! PodDisruptionBudgets (and the cluster's StorageClasses) exactly as TenantPolicies declare.
//!
//! Data flows one way:
//!
//! ```text
//! cache       watches fill the caches and say what changed; pipeline::triggers says which
//!             policies a change concerns (the managed kinds are watched in protobuf)
//!   -> pipeline::validate   what the CRD's rules cannot check; the writer's dry run of what the
//!                           policy builds, judged by validate::dry_run_verdict
//!   -> pipeline::plan       select (which namespaces, which policy wins each kind) -> build (the
//!                           desired objects) -> shared_quotas (the parts of shared budgets, sized
//!                           by the allocator) -> hand-over -> diff (the writes; none when converged)
//!   -> controller::writer   executes the writes and says what it found; the one module that
//!                           writes (objects, status, finalizer, Events, dry runs), fenced by
//!                           leadership (controller::leader, whose Lease is the only other write)
//!   -> pipeline::outcome    what the writer found means: adopt (pipeline::adoption), not owned,
//!                           retry, failure
//!   -> pipeline::report     outcomes -> the status summary, Events as data, when to look again
//!   -> pipeline::status     the summary -> kstatus conditions and counts
//! ```
//!
//! `model` is the vocabulary every step speaks and imports no step. `pipeline` is pure and
//! unit-tested without a client; `controller::reconcile` only sequences the steps. `cli` holds
//! `tenantry plan` (the same `pipeline::plan` against a read of the cluster) and `tenantry
//! audit`. `hack/module-cycles.py` (part of `make lint`) keeps the graph of modules acyclic and
//! the pure modules away from the writer, the controller and the API client.

pub mod api;
pub mod cache;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod model;
pub mod pipeline;
