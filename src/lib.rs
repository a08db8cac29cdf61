//! Tenantry: keeps every selected namespace's LimitRanges, ResourceQuotas and
//! PodDisruptionBudgets (and the cluster's StorageClasses) exactly as TenantPolicies declare.
//!
//! Data flows one way, each step its own module:
//!
//! ```text
//! cache::watch   watches fill the caches (cache, cache::stores) and say what changed, and
//!                triggers which policies a change concerns; the managed kinds are watched in
//!                protobuf (cache::protobuf_watch, decoded by cache::protobuf)
//!   -> select    which namespaces a policy governs and which policy wins each kind there
//!   -> resources build the desired objects, one builder per kind; shared_quotas sizes the parts
//!                of shared budgets with the allocator
//!   -> diff      desired against cached live state: the writes, none when converged
//!   -> apply     the writer, the one module that writes (objects, status, finalizer, Events,
//!                dry runs), fenced by leadership (leader.rs, whose Lease is the only other write);
//!                an existing object of a declared name is adopted as `adoption` decides
//!   -> report    outcomes -> the status summary, Events as data, when to look again
//!   -> status    the summary -> kstatus conditions and counts
//! ```
//!
//! All of them (and `triggers`, `cache::protobuf`) but `cache::watch`, `cache::protobuf_watch`,
//! `apply` and `controller` (which sequences the steps:
//! `controller::reconcile`) are pure, and unit-tested without a client. `cli` holds the
//! `plan` and `audit` commands.

pub mod adoption;
pub mod allocator;
pub mod api;
pub mod apply;
pub mod cache;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod diff;
pub mod fingerprint;
pub mod leader;
pub mod message;
pub mod metrics;
pub mod pod_resources;
pub mod quantity;
pub mod report;
pub mod resources;
pub mod select;
pub mod shared_quotas;
pub mod status;
pub mod triggers;
pub mod validate;
