//! The pure steps of a reconcile, in the order data flows through them: validate -> select
//! (triggers say which policies a change concerns) -> build (one builder per managed kind;
//! shared_quotas sizes the parts of shared budgets with the allocator) -> diff -> adoption (what
//! an existing object of a declared name means) -> report -> status (message words it). `plan`
//! strings select, the shared parts, the hand-over and the diff together, for the reconcile and
//! for `tenantry plan` alike. None of them talks to the API server.

pub mod adoption;
pub mod allocator;
pub mod build;
pub mod diff;
pub mod message;
pub mod outcome;
pub mod plan;
pub mod pod_resources;
pub mod report;
pub mod select;
pub mod shared_quotas;
pub mod status;
pub mod triggers;
pub mod validate;
