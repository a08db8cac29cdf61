//! The kinds of object Tenantry governs, and the sections of a policy that compete for them.

use std::fmt;

use serde_json::Value;

use crate::api::TenantPolicySpec;
use crate::model::normalize;

/// A kind of object a policy governs: three namespaced, and the cluster-scoped StorageClass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    LimitRange,
    ResourceQuota,
    PodDisruptionBudget,
    StorageClass,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::LimitRange => "LimitRange",
            Kind::ResourceQuota => "ResourceQuota",
            Kind::PodDisruptionBudget => "PodDisruptionBudget",
            Kind::StorageClass => "StorageClass",
        }
    }

    pub fn api_version(self) -> &'static str {
        match self {
            Kind::LimitRange | Kind::ResourceQuota => "v1",
            Kind::PodDisruptionBudget => "policy/v1",
            Kind::StorageClass => "storage.k8s.io/v1",
        }
    }

    pub fn is_namespaced(self) -> bool {
        self != Kind::StorageClass
    }

    /// Whether the object's declared fields sit at the top level (StorageClass) rather than
    /// under `spec`.
    pub fn fields_at_top_level(self) -> bool {
        self == Kind::StorageClass
    }

    /// The spec in a spelling-independent form, for comparing desired with live.
    pub fn normalize(self, spec: &Value) -> Value {
        match self {
            Kind::LimitRange => normalize::limit_range(spec),
            Kind::ResourceQuota => normalize::resource_quota(spec),
            Kind::PodDisruptionBudget => spec.clone(),
            Kind::StorageClass => normalize::storage_class(spec),
        }
    }
}

/// A part of a policy that competes, per namespace, with the same part of other policies: the
/// highest-precedence selecting policy that sets it wins it there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Section {
    LimitRanges,
    ResourceQuotas,
    PodDisruptionBudgets,
    /// The parts of the shared budgets: a kind of its own, so a policy can hold a namespace's
    /// shared budget while another sets its per-namespace resourceQuotas.
    SharedQuotas,
    /// The allow-list and per-class quotas (the owned StorageClasses compete by class name).
    Storage,
}

impl Section {
    pub const ALL: [Section; 5] = [
        Section::LimitRanges,
        Section::ResourceQuotas,
        Section::PodDisruptionBudgets,
        Section::SharedQuotas,
        Section::Storage,
    ];

    /// The kind of the objects it builds.
    pub fn kind(self) -> Kind {
        match self {
            Section::LimitRanges => Kind::LimitRange,
            Section::ResourceQuotas | Section::SharedQuotas | Section::Storage => {
                Kind::ResourceQuota
            }
            Section::PodDisruptionBudgets => Kind::PodDisruptionBudget,
        }
    }

    /// The spec field it comes from.
    pub fn field(self) -> &'static str {
        match self {
            Section::LimitRanges => "limitRanges",
            Section::ResourceQuotas => "resourceQuotas",
            Section::PodDisruptionBudgets => "podDisruptionBudgets",
            Section::SharedQuotas => "sharedQuotas",
            Section::Storage => "storage",
        }
    }

    /// Whether a policy sets this section at all (and so competes for it where it selects).
    pub fn is_set_by(self, spec: &TenantPolicySpec) -> bool {
        match self {
            Section::LimitRanges => !spec.limit_ranges.is_empty(),
            Section::ResourceQuotas => !spec.resource_quotas.is_empty(),
            Section::PodDisruptionBudgets => !spec.pod_disruption_budgets.is_empty(),
            Section::SharedQuotas => !spec.shared_quotas.is_empty(),
            Section::Storage => spec
                .storage
                .as_ref()
                .is_some_and(|s| s.allowed_classes.is_some() || !s.quotas.is_empty()),
        }
    }
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.field())
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
