//! Tenantry: keeps every selected namespace's LimitRanges, ResourceQuotas and
//! PodDisruptionBudgets (and the cluster's StorageClasses) exactly as TenantPolicies declare.

pub mod api;
pub mod crd;
