//! The `TenantPolicy` custom resource (tenantry.io/v1alpha1), exactly as ../shared/docs/api.md
//! fixes it. Field docs become `kubectl explain` descriptions, so they are written for users.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{LimitRangeItem, ScopeSelector};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of every Tenantry resource.
pub const GROUP: &str = "tenantry.io";
/// Field manager for every server-side apply Tenantry makes.
pub const FIELD_MANAGER: &str = "tenantry";
/// Label on every object Tenantry manages: `app.kubernetes.io/managed-by: tenantry`.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "tenantry";
/// Label naming the TenantPolicy that owns a managed object.
pub const POLICY_LABEL: &str = "tenantry.io/policy";
/// Namespaces a selector never reaches: they are governed only when named in `spec.namespaces`.
pub const PROTECTED_NAMESPACES: [&str; 4] = [
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "tenantry-system",
];

/// Desired governance for a set of namespaces: their LimitRanges, ResourceQuotas and
/// PodDisruptionBudgets, and the cluster's StorageClasses that this policy owns.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "tenantry.io",
    version = "v1alpha1",
    kind = "TenantPolicy",
    plural = "tenantpolicies",
    shortname = "tp",
    category = "tenantry",
    doc = "TenantPolicy keeps the LimitRanges, ResourceQuotas and PodDisruptionBudgets of the namespaces it selects, and the StorageClasses it owns, exactly as declared.",
    status = "TenantPolicyStatus",
    printcolumn = r#"{"name":"Priority","type":"integer","jsonPath":".spec.priority"}"#,
    printcolumn = r#"{"name":"Selected","type":"integer","jsonPath":".status.selectedNamespaces"}"#,
    printcolumn = r#"{"name":"Ready","type":"integer","jsonPath":".status.readyNamespaces"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Message","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct TenantPolicySpec {
    /// Where several policies select one namespace, the highest priority that sets a kind
    /// (limitRanges, resourceQuotas, podDisruptionBudgets, storage) wins that kind there; ties go to
    /// the alphabetically first policy name.
    #[serde(default)]
    pub priority: i32,

    /// Namespaces whose labels match are selected. kube-system, kube-public, kube-node-lease and
    /// tenantry-system are never selected by labels, only when named in `namespaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,

    /// Namespaces selected by name, in addition to those matching `namespaceSelector`. With neither
    /// field set the policy selects no namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,

    /// What happens to managed objects when a namespace stops being selected or the policy is
    /// deleted: Delete removes them, Retain keeps them without Tenantry's labels and owner.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// Each item becomes one LimitRange of that name in every selected namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limit_ranges: Vec<LimitRangeTemplate>,

    /// Each item becomes one ResourceQuota of that name in every selected namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_quotas: Vec<ResourceQuotaTemplate>,

    /// Each item becomes one policy/v1 PodDisruptionBudget of that name in every selected namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pod_disruption_budgets: Vec<PodDisruptionBudgetTemplate>,

    /// StorageClasses owned by this policy, and which classes selected namespaces may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSpec>,
}

/// What happens to managed objects that are no longer wanted.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Managed objects are deleted.
    #[default]
    Delete,
    /// Managed objects are kept, with Tenantry's labels and ownerReference removed.
    Retain,
}

/// One LimitRange to keep in every selected namespace.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LimitRangeTemplate {
    /// Name of the LimitRange in each namespace (DNS-1123 subdomain).
    pub name: String,
    /// Limits, with the same schema as core/v1 LimitRangeItem.
    pub limits: Vec<LimitRangeItem>,
}

/// One ResourceQuota to keep in every selected namespace.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceQuotaTemplate {
    /// Name of the ResourceQuota in each namespace (DNS-1123 subdomain).
    pub name: String,
    /// Hard caps per resource name, as core/v1 ResourceQuotaSpec.hard.
    #[serde(default)]
    pub hard: BTreeMap<String, Quantity>,
    /// Quota scopes, as core/v1 ResourceQuotaSpec.scopes (BestEffort, NotBestEffort, Terminating,
    /// NotTerminating, PriorityClass, CrossNamespacePodAffinity, VolumeAttributesClass).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Scope selector, as core/v1 ResourceQuotaSpec.scopeSelector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_selector: Option<ScopeSelector>,
}

/// One policy/v1 PodDisruptionBudget to keep in every selected namespace.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodDisruptionBudgetTemplate {
    /// Name of the PodDisruptionBudget in each namespace (DNS-1123 subdomain).
    pub name: String,
    /// Pods the budget protects.
    pub selector: LabelSelector,
    /// Pods that must stay available (a number or "N%"). Set exactly one of minAvailable and
    /// maxUnavailable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_available: Option<IntOrString>,
    /// Pods that may be unavailable (a number or "N%"). Set exactly one of minAvailable and
    /// maxUnavailable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
    /// IfHealthyBudget or AlwaysAllow, as policy/v1 PodDisruptionBudgetSpec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy_pod_eviction_policy: Option<String>,
}

/// The storage section: owned StorageClasses, an allow-list and per-class caps.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Cluster-scoped StorageClasses this policy creates and keeps as declared.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<StorageClassTemplate>,
    /// When set, every other StorageClass in the cluster is capped at zero in selected namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_classes: Option<Vec<String>>,
    /// Per-class caps in selected namespaces, keyed by class name (requests.storage,
    /// persistentvolumeclaims).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub quotas: BTreeMap<String, BTreeMap<String, Quantity>>,
}

/// A StorageClass owned by the policy. provisioner, parameters, reclaimPolicy and
/// volumeBindingMode are immutable in Kubernetes: changing them recreates the class.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageClassTemplate {
    /// Name of the StorageClass.
    pub name: String,
    /// Provisioner of volumes for this class (required).
    pub provisioner: String,
    /// Provisioner-specific parameters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, String>,
    /// Delete or Retain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reclaim_policy: Option<String>,
    /// Immediate or WaitForFirstConsumer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_binding_mode: Option<String>,
    /// Whether PVCs of this class may be expanded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_volume_expansion: Option<bool>,
    /// Mount options for volumes of this class.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mount_options: Vec<String>,
}

/// Observed state of a TenantPolicy. Holds no timestamp that changes on every reconcile.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantPolicyStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Reconciling and Stalled, in the form kstatus, Argo CD and `kubectl wait` read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Namespaces this policy selects.
    #[serde(default)]
    pub selected_namespaces: i32,
    /// Selected namespaces holding exactly what this policy wins there.
    #[serde(default)]
    pub ready_namespaces: i32,
    /// Selected namespaces where something could not be applied.
    #[serde(default)]
    pub failed_namespaces: i32,
    /// Selected namespaces where a higher-precedence policy wins at least one kind this policy sets.
    #[serde(default)]
    pub shadowed_namespaces: i32,
    /// The first problems found (at most 20).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<Failure>,
    /// The StorageClasses this policy owns and their state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub storage_classes: Vec<StorageClassState>,
}

/// One problem with one object.
#[derive(
    Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    /// Namespace of the object; empty for cluster-scoped objects.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Kind of the object.
    pub kind: String,
    /// Name of the object.
    pub name: String,
    /// CamelCase reason, such as NotOwned or ApplyFailed.
    pub reason: String,
    /// What went wrong.
    pub message: String,
}

/// State of one StorageClass the policy owns.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageClassState {
    /// Name of the StorageClass.
    pub name: String,
    /// Ready, NotOwned, Shadowed or Failed.
    pub state: String,
}
