//! The `TenantPolicy` custom resource (tenantry.io/v1alpha1), exactly as ../shared/docs/api.md
//! fixes it. Field docs become `kubectl explain` descriptions, so they are written for users.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ScopeSelector;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::core::Rule;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod failure;
pub use failure::{Failure, FailureReason};

/// A DNS-1123 subdomain: the names of LimitRanges, ResourceQuotas, PDBs and StorageClasses.
pub const DNS_SUBDOMAIN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// A DNS-1123 label: namespace names.
pub const DNS_LABEL: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// The oldest Kubernetes whose API server evaluates every rule in this CRD (the CEL quantity
/// library of validation rules arrived in 1.29; 1.30 made ValidatingAdmissionPolicy GA).
pub const MIN_KUBERNETES_MINOR: u32 = 30;

/// CEL: for every resource named in both `a` and `b` of a LimitRange item, a <= b.
fn at_most(a: &str, b: &str) -> String {
    format!(
        "!has(self.{a}) || !has(self.{b}) || self.{a}.all(r, !(r in self.{b}) || \
         quantity(string(self.{a}[r])).compareTo(quantity(string(self.{b}[r]))) <= 0)"
    )
}

fn at_most_rule(a: &str, b: &str) -> Rule {
    Rule::new(at_most(a, b)).message(format!("{a} must not exceed {b} for any resource").as_str())
}

/// Field manager for every server-side apply Tenantry makes.
pub const FIELD_MANAGER: &str = "tenantry";
/// Label on every object Tenantry manages: `app.kubernetes.io/managed-by: tenantry`.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "tenantry";
/// Label naming the TenantPolicy that owns a managed object.
pub const POLICY_LABEL: &str = "tenantry.io/policy";
/// Label on the ResourceQuotas that hold a namespace's part of a shared budget, naming the
/// `spec.sharedQuotas` item (the caches keep those quotas' status, which the allocator reads).
pub const SHARED_QUOTA_LABEL: &str = "tenantry.io/shared-quota";
/// Label on a part: `"false"` from its creation until Tenantry has seen kube-controller-manager
/// write its `status.hard` (for every resource of its spec), `"true"` from then on. The window
/// admission policy (config/admission) refuses creations in a namespace whose part says
/// `"false"`: by the time Tenantry has seen the status and relabelled the part, the API server's
/// quota admission (whose cache may be behind the admission policy's) has seen it too.
pub const ENFORCED_LABEL: &str = "tenantry.io/enforced";
/// Every label Tenantry sets on what it writes; a new one belongs here. The caches keep only
/// these of an object's labels (`cache::cached::Cached`), and the diff compares what it sets against
/// them: one missing here reads as missing on every reconcile, and every reconcile re-applies
/// the object (a no-op the API server does not version, visible only as requests).
pub const TENANTRY_LABELS: [&str; 4] = [
    MANAGED_BY_LABEL,
    POLICY_LABEL,
    SHARED_QUOTA_LABEL,
    ENFORCED_LABEL,
];
/// Label selector of the objects Tenantry manages (its watches, `plan`, `audit`).
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=tenantry";

/// The one check of whether labels mark an object as Tenantry's (whichever policy).
pub fn is_managed(labels: &BTreeMap<String, String>) -> bool {
    labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY_VALUE)
}
/// Namespaces a selector never reaches: they are governed only when named in `spec.namespaces`.
pub const PROTECTED_NAMESPACES: [&str; 4] = [
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "tenantry-system",
];

/// Desired governance for a set of namespaces: their LimitRanges, ResourceQuotas and
/// PodDisruptionBudgets, and the cluster's StorageClasses that this policy owns.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
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
#[x_kube(validation = Rule::new("!has(self.sharedQuotas) || !has(self.resourceQuotas) || \
    self.sharedQuotas.all(s, self.resourceQuotas.all(q, q.name != s.name))")
    .message("a sharedQuotas name must differ from every resourceQuotas name (both name a ResourceQuota in each namespace)")
    .field_path(".sharedQuotas"))]
pub struct TenantPolicySpec {
    /// Where several policies select one namespace, the highest priority that sets a kind
    /// (limitRanges, resourceQuotas, podDisruptionBudgets, sharedQuotas, storage) wins that kind
    /// there; ties go to the alphabetically first policy name.
    #[serde(default)]
    pub priority: i32,

    /// Namespaces whose labels match are selected. kube-system, kube-public, kube-node-lease and
    /// tenantry-system are never selected by labels, only when named in `namespaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,

    /// Namespaces selected by name, in addition to those matching `namespaceSelector`. With neither
    /// field set the policy selects no namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000), inner(length(min = 1, max = 63), regex(pattern = DNS_LABEL)))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub namespaces: Vec<String>,

    /// What happens to managed objects when a namespace stops being selected or the policy is
    /// deleted: Delete removes them, Retain keeps them without Tenantry's labels and owner.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// What happens to an existing object of a declared name that lacks Tenantry's labels (made
    /// by hand before the namespace was governed): Never leaves it untouched and reports it
    /// (NotOwned); IfIdentical takes it over when its spec already equals the declared one;
    /// Always takes it over and makes it as declared. Objects of other TenantPolicies are decided
    /// by priority, never adopted; objects controlled by another controller are never adopted.
    #[serde(default)]
    pub adoption_policy: AdoptionPolicy,

    /// Each item becomes one LimitRange of that name in every selected namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub limit_ranges: Vec<LimitRangeTemplate>,

    /// Each item becomes one ResourceQuota of that name in every selected namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub resource_quotas: Vec<ResourceQuotaTemplate>,

    /// Each item becomes one policy/v1 PodDisruptionBudget of that name in every selected namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub pod_disruption_budgets: Vec<PodDisruptionBudgetTemplate>,

    /// Each item is ONE budget for all selected namespaces together (a team's total): in every
    /// namespace where this policy wins sharedQuotas, Tenantry keeps a ResourceQuota named after
    /// the item holding that namespace's part of the budget, and moves headroom between the parts
    /// so that together they never exceed `hard`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub shared_quotas: Vec<SharedQuotaTemplate>,

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

/// What happens to an existing object of a declared name that lacks Tenantry's labels.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum AdoptionPolicy {
    /// It is left untouched and reported (NotOwned).
    #[default]
    Never,
    /// It is adopted (Tenantry's labels and ownerReference added) when its spec equals the
    /// declared one, otherwise left untouched and reported.
    IfIdentical,
    /// It is adopted and made as declared, with an Adopted Event naming the fields changed.
    Always,
}

/// One LimitRange to keep in every selected namespace.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LimitRangeTemplate {
    /// Name of the LimitRange in each namespace (DNS-1123 subdomain).
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN))]
    pub name: String,
    /// Limits, with the same schema as core/v1 LimitRangeItem.
    #[schemars(length(min = 1, max = 10))]
    pub limits: Vec<LimitRangeItem>,
}

/// Kind of object a LimitRange item constrains.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum LimitType {
    #[default]
    Container,
    Pod,
    PersistentVolumeClaim,
}

/// A LimitRange item: the schema of core/v1 LimitRangeItem, with the rules that keep the API
/// server from storing a LimitRange that breaks pod creation.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.type == 'Container' || (!has(self.default) && !has(self.defaultRequest))")
        .message("default and defaultRequest are only allowed on Container items"),
    validation = at_most_rule("min", "defaultRequest"),
    validation = at_most_rule("min", "default"),
    validation = at_most_rule("min", "max"),
    validation = at_most_rule("defaultRequest", "default"),
    validation = at_most_rule("defaultRequest", "max"),
    validation = at_most_rule("default", "max"),
    validation = Rule::new(
        "!has(self.maxLimitRequestRatio) || self.maxLimitRequestRatio.all(r, \
         quantity(string(self.maxLimitRequestRatio[r])).compareTo(quantity('1')) >= 0)"
    )
    .message("maxLimitRequestRatio must be at least 1 for every resource"),
)]
pub struct LimitRangeItem {
    /// Type of resource that this limit applies to: Container, Pod or PersistentVolumeClaim.
    #[serde(rename = "type")]
    pub type_: LimitType,
    /// Max usage constraints on this kind by resource name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 16))]
    pub max: Option<BTreeMap<String, Quantity>>,
    /// Min usage constraints on this kind by resource name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 16))]
    pub min: Option<BTreeMap<String, Quantity>>,
    /// Default resource limit by resource name, when a container sets none (Container items only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 16))]
    pub default: Option<BTreeMap<String, Quantity>>,
    /// Default resource request by resource name, when a container sets none (Container items only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 16))]
    pub default_request: Option<BTreeMap<String, Quantity>>,
    /// Largest allowed limit/request ratio by resource name (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 16))]
    pub max_limit_request_ratio: Option<BTreeMap<String, Quantity>>,
}

/// One ResourceQuota to keep in every selected namespace.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.scopes) || !('BestEffort' in self.scopes) || self.hard.all(k, k == 'pods' || k == 'count/pods')")
    .message("a quota with the BestEffort scope can only track pods"))]
#[x_kube(validation = Rule::new("self.name != 'tenantry-storage'")
    .message("the name tenantry-storage is reserved for the quota of the storage section")
    .field_path(".name"))]
pub struct ResourceQuotaTemplate {
    /// Name of the ResourceQuota in each namespace (DNS-1123 subdomain).
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN))]
    pub name: String,
    /// Hard caps per resource name, as core/v1 ResourceQuotaSpec.hard.
    #[serde(default)]
    #[schemars(extend("maxProperties" = 64))]
    pub hard: BTreeMap<String, Quantity>,
    /// Quota scopes, as core/v1 ResourceQuotaSpec.scopes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 7))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub scopes: Vec<QuotaScope>,
    /// Scope selector, as core/v1 ResourceQuotaSpec.scopeSelector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_selector: Option<ScopeSelector>,
}

/// One budget shared by all selected namespaces. Its parts are ResourceQuotas named after the
/// item, one per namespace, which together never exceed `hard`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.scopes) || !('BestEffort' in self.scopes) || self.hard.all(k, k == 'pods' || k == 'count/pods')")
    .message("a quota with the BestEffort scope can only track pods"))]
#[x_kube(validation = Rule::new("self.name != 'tenantry-storage'")
    .message("the name tenantry-storage is reserved for the quota of the storage section")
    .field_path(".name"))]
pub struct SharedQuotaTemplate {
    /// Name of the budget, and of the ResourceQuota holding each namespace's part of it
    /// (DNS-1123 subdomain). Must differ from every resourceQuotas name and from tenantry-storage.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN))]
    pub name: String,
    /// The budget: the most all selected namespaces together may use, per resource name (the
    /// keys of core/v1 ResourceQuotaSpec.hard, such as pods, requests.cpu, requests.memory).
    #[schemars(extend("minProperties" = 1, "maxProperties" = 64))]
    pub hard: BTreeMap<String, Quantity>,
    /// Quota scopes of every part, as core/v1 ResourceQuotaSpec.scopes: only what they match
    /// counts against the budget.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 7))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub scopes: Vec<QuotaScope>,
    /// Scope selector of every part, as core/v1 ResourceQuotaSpec.scopeSelector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_selector: Option<ScopeSelector>,
}

/// A ResourceQuota scope.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum QuotaScope {
    BestEffort,
    NotBestEffort,
    Terminating,
    NotTerminating,
    PriorityClass,
    CrossNamespacePodAffinity,
    VolumeAttributesClass,
}

/// A PDB budget: a non-negative integer or a percentage string (the pattern applies to strings,
/// the minimum to integers).
fn budget_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "A number of pods (at least 0) or a percentage such as \"50%\".",
        "x-kubernetes-int-or-string": true,
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "minimum": 0,
        "pattern": "^[0-9]+%$",
        "maxLength": 8,
        // policy/v1 refuses a percentage over 100% only when it builds the PDB; say so at apply.
        "x-kubernetes-validations": [{
            "rule": "type(self) == int || !self.matches('^[0-9]+%$') || int(self.substring(0, size(self) - 1)) <= 100",
            "message": "a percentage must be at most 100%",
        }],
    })
}

/// One policy/v1 PodDisruptionBudget to keep in every selected namespace.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.minAvailable) != has(self.maxUnavailable)")
        .message("set exactly one of minAvailable and maxUnavailable"),
)]
pub struct PodDisruptionBudgetTemplate {
    /// Name of the PodDisruptionBudget in each namespace (DNS-1123 subdomain).
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN))]
    pub name: String,
    /// Pods the budget protects.
    pub selector: LabelSelector,
    /// Pods that must stay available (a number or "N%"). Set exactly one of minAvailable and
    /// maxUnavailable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "budget_schema")]
    pub min_available: Option<IntOrString>,
    /// Pods that may be unavailable (a number or "N%"). Set exactly one of minAvailable and
    /// maxUnavailable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "budget_schema")]
    pub max_unavailable: Option<IntOrString>,
    /// IfHealthyBudget or AlwaysAllow, as policy/v1 PodDisruptionBudgetSpec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy_pod_eviction_policy: Option<UnhealthyPodEvictionPolicy>,
}

/// When unhealthy pods may be evicted despite the budget.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum UnhealthyPodEvictionPolicy {
    IfHealthyBudget,
    AlwaysAllow,
}

/// The storage section: owned StorageClasses, an allow-list and per-class caps.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.allowedClasses) || !has(self.quotas) || self.quotas.all(c, c in self.allowedClasses)")
    .message("every class with a quota must be in allowedClasses (the others are capped at zero)")
    .field_path(".quotas"))]
#[x_kube(validation = Rule::new(format!("!has(self.quotas) || self.quotas.all(c, size(c) <= 253 && c.matches(r'{DNS_SUBDOMAIN}'))"))
    .message("quotas are keyed by StorageClass name (a DNS-1123 subdomain)")
    .field_path(".quotas"))]
pub struct StorageSpec {
    /// Cluster-scoped StorageClasses this policy creates and keeps as declared.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub classes: Vec<StorageClassTemplate>,
    /// When set, every other StorageClass in the cluster (also those created later) is capped at
    /// zero in selected namespaces, by a ResourceQuota named tenantry-storage. A claim without a
    /// class is judged by the default class; a claim with `storageClassName: ""` by none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN)))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub allowed_classes: Option<Vec<String>>,
    /// Per-class caps in selected namespaces, keyed by class name (held in the same
    /// tenantry-storage ResourceQuota). With allowedClasses set, only allowed classes may have one.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    pub quotas: BTreeMap<String, StorageClassQuota>,
}

/// Caps on one StorageClass in each selected namespace: `requests.storage` (total storage
/// requested by claims of the class) and `persistentvolumeclaims` (number of claims of the class).
// The fields carry no doc comment of their own, so the CRD generator recognises them as
// quantities and gives them Kubernetes' quantity pattern (see crd.rs).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[schemars(extend("minProperties" = 1))]
pub struct StorageClassQuota {
    #[serde(
        rename = "requests.storage",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub requests_storage: Option<Quantity>,
    #[serde(
        rename = "persistentvolumeclaims",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub persistent_volume_claims: Option<Quantity>,
}

/// A StorageClass owned by the policy. provisioner, parameters, reclaimPolicy and
/// volumeBindingMode are immutable in Kubernetes: changing them recreates the class.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageClassTemplate {
    /// Name of the StorageClass (DNS-1123 subdomain).
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN))]
    pub name: String,
    /// Provisioner of volumes for this class (required).
    #[schemars(length(min = 1, max = 253))]
    pub provisioner: String,
    /// Provisioner-specific parameters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    pub parameters: BTreeMap<String, String>,
    /// Delete or Retain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reclaim_policy: Option<ReclaimPolicy>,
    /// Immediate or WaitForFirstConsumer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_binding_mode: Option<VolumeBindingMode>,
    /// Whether PVCs of this class may be expanded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_volume_expansion: Option<bool>,
    /// Mount options for volumes of this class.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub mount_options: Vec<String>,
}

/// What happens to a dynamically provisioned volume when its claim is deleted.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ReclaimPolicy {
    Delete,
    Retain,
}

/// When volumes are bound and provisioned.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum VolumeBindingMode {
    Immediate,
    WaitForFirstConsumer,
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
    /// One entry per spec.sharedQuotas item: the budget, its use, and what is exhausted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared_quotas: Vec<SharedQuotaStatus>,
}

/// State of one shared budget.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SharedQuotaStatus {
    /// Name of the spec.sharedQuotas item.
    pub name: String,
    /// The budget, per resource name, as declared.
    #[serde(default)]
    pub hard: BTreeMap<String, Quantity>,
    /// What the namespaces use together, per resource name: the sum of the parts' status.used.
    #[serde(default)]
    pub used: BTreeMap<String, Quantity>,
    /// Namespaces holding a part of the budget.
    #[serde(default)]
    pub namespaces: i32,
    /// Resources whose whole budget is in use: new requests for them are refused until usage
    /// falls.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exhausted: Vec<String>,
    /// Resources whose use exceeds the budget, by how much: usage that was there when a
    /// namespace joined or when hard was lowered. Nothing is evicted; nothing new is admitted
    /// until usage falls below hard.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub over_budget: BTreeMap<String, Quantity>,
    /// Requests refused that can never fit the budget (each alone exceeds all of it, as cpu: 100
    /// where 100m was meant): they are given nothing, so they hold no headroom the other
    /// namespaces need.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub too_large: Vec<TooLargeRequest>,
}

/// A request refused that can never fit a shared budget.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TooLargeRequest {
    pub namespace: String,
    pub resource: String,
    /// The request refused (of one pod, as quota admission reported it).
    pub request: Quantity,
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
