//! Tenantry: keeps every selected namespace's LimitRanges, ResourceQuotas and
//! PodDisruptionBudgets (and the cluster's StorageClasses) exactly as TenantPolicies declare.
//!
//! Data flows one way: watch -> [`select`] -> [`resources`] (build) -> [`diff`] -> [`apply`] ->
//! [`status`]. All but `apply` (the one module that writes) and [`controller`] (wiring) are pure.

pub mod api;
pub mod apply;
pub mod audit;
pub mod cache;
pub mod controller;
pub mod crd;
pub mod diff;
pub mod leader;
pub mod metrics;
pub mod plan;
pub mod pod_resources;
pub mod quantity;
pub mod resources;
pub mod select;
pub mod status;
pub mod validate;
