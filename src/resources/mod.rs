//! The managed kinds: building desired objects from a policy (pure), and a uniform view of live
//! objects from the caches, both as JSON so one diff serves every kind.

pub mod limit_range;
pub mod pdb;
pub mod resource_quota;
pub mod shared_quota;
pub mod storage_class;
pub mod storage_quota;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{LimitRange, ResourceQuota};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use serde_json::{Value, json};

use crate::api::{
    FIELD_MANAGER, MANAGED_BY_LABEL, MANAGED_BY_VALUE, POLICY_LABEL, TenantPolicySpec,
};

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
            Kind::LimitRange => limit_range::normalize(spec),
            Kind::ResourceQuota => resource_quota::normalize(spec),
            Kind::PodDisruptionBudget => spec.clone(),
            Kind::StorageClass => storage_class::normalize(spec),
        }
    }
}

/// The field of a TenantPolicy's spec an object comes from, for messages that name it.
pub fn policy_field(key: &ObjectKey) -> &'static str {
    match key.kind {
        Kind::LimitRange => "limitRanges",
        Kind::ResourceQuota if key.name == storage_quota::NAME => "storage",
        Kind::ResourceQuota => "resourceQuotas",
        Kind::PodDisruptionBudget => "podDisruptionBudgets",
        Kind::StorageClass => "storage.classes",
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

    /// The names of the objects the section holds in each namespace it is won in.
    pub fn names(self, spec: &TenantPolicySpec, cluster_classes: &BTreeSet<String>) -> Vec<String> {
        match self {
            Section::SharedQuotas => spec.shared_quotas.iter().map(|q| q.name.clone()).collect(),
            _ => self
                .build(spec, cluster_classes)
                .into_iter()
                .map(|(name, _)| name)
                .collect(),
        }
    }

    /// The specs this policy wants in each namespace it wins the section in, by object name.
    /// `cluster_classes` are the names of the cluster's StorageClasses (for the allow-list).
    pub fn build(
        self,
        spec: &TenantPolicySpec,
        cluster_classes: &BTreeSet<String>,
    ) -> Vec<(String, Value)> {
        match self {
            Section::LimitRanges => spec
                .limit_ranges
                .iter()
                .map(|t| (t.name.clone(), limit_range::build(t)))
                .collect(),
            Section::ResourceQuotas => spec
                .resource_quotas
                .iter()
                .map(|t| (t.name.clone(), resource_quota::build(t)))
                .collect(),
            Section::PodDisruptionBudgets => spec
                .pod_disruption_budgets
                .iter()
                .map(|t| (t.name.clone(), pdb::build(t)))
                .collect(),
            // The parts differ per namespace (each holds its own share of the budget), so they
            // are sized by the allocator, not built here: nothing until it is wired in.
            Section::SharedQuotas => Vec::new(),
            Section::Storage => spec
                .storage
                .as_ref()
                .and_then(|s| storage_quota::build(s, cluster_classes))
                .map(|quota| (storage_quota::NAME.to_owned(), quota))
                .into_iter()
                .collect(),
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

/// Identifies one managed object.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    /// A compact stand-in for the key (for sets of many keys).
    pub fn fingerprint(&self) -> u64 {
        crate::fingerprint::fingerprint(self)
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{}/{}", self.kind, self.name)
        } else {
            write!(f, "{}/{}/{}", self.namespace, self.kind, self.name)
        }
    }
}

/// The policy that owns what it builds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub name: String,
    pub uid: String,
}

impl Owner {
    pub fn owner_reference(&self) -> OwnerReference {
        OwnerReference {
            api_version: "tenantry.io/v1alpha1".into(),
            kind: "TenantPolicy".into(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }
}

/// An object as the winning policy wants it. The spec (as sent, and normalised for comparison)
/// is built once per policy item and shared by every namespace: memory stays proportional to
/// the policy, not to the number of namespaces.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    pub key: ObjectKey,
    pub spec: Arc<Value>,
    pub normalized: Arc<Value>,
    /// [`spec_fingerprint`] of the spec: equal fingerprints mean equal normalised specs.
    pub fingerprint: u64,
    /// Labels beyond Tenantry's two (the shared-quota label of a budget's part). The caches'
    /// fast path does not look at labels, so the diff compares such objects in full.
    pub labels: Option<Arc<BTreeMap<String, String>>>,
}

/// A hash of the normalised spec, computed once per desired item and once per watch event of a
/// live object, so converged objects are recognised without rebuilding their JSON.
pub fn spec_fingerprint(normalized: &Value) -> u64 {
    crate::fingerprint::fingerprint(normalized.to_string())
}

impl Desired {
    /// A desired object with its own spec (tests, one-offs); `select` shares specs instead.
    pub fn of(key: ObjectKey, spec: Value) -> Self {
        let normalized = Arc::new(key.kind.normalize(&spec));
        let fingerprint = spec_fingerprint(&normalized);
        Self {
            key,
            spec: Arc::new(spec),
            normalized,
            fingerprint,
            labels: None,
        }
    }

    /// With these labels beside Tenantry's two.
    pub fn with_labels(mut self, labels: BTreeMap<String, String>) -> Self {
        self.labels = Some(Arc::new(labels));
        self
    }

    /// Every label the object carries as declared: Tenantry's two and any extra.
    pub fn all_labels(&self, owner: &Owner) -> BTreeMap<String, String> {
        let mut labels = managed_labels(&owner.name);
        labels.extend(self.labels.iter().flat_map(|l| l.as_ref().clone()));
        labels
    }

    /// The whole object to send: Tenantry's labels and controller ownerReference, and the spec.
    pub fn to_object(&self, owner: &Owner) -> Value {
        let mut object = json!({
            "apiVersion": self.key.kind.api_version(),
            "kind": self.key.kind.as_str(),
            "metadata": {
                "name": self.key.name,
                "labels": self.all_labels(owner),
                "ownerReferences": [owner.owner_reference()],
            },
        });
        if self.key.kind.is_namespaced() {
            object["metadata"]["namespace"] = json!(self.key.namespace);
        }
        place_spec(&mut object, self.key.kind, self.spec.as_ref().clone());
        object
    }
}

/// Puts `spec` where `kind` keeps it: under `spec`, or (StorageClass) at the top level.
pub fn place_spec(object: &mut Value, kind: Kind, spec: Value) {
    match (kind.fields_at_top_level(), spec) {
        (true, Value::Object(fields)) => {
            for (k, v) in fields {
                object[k.as_str()] = v;
            }
        }
        (_, spec) => object["spec"] = spec,
    }
}

pub fn managed_labels(policy: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned()),
        (POLICY_LABEL.to_owned(), policy.to_owned()),
    ])
}

/// A managed object as the diff sees it: what the diff needs, nothing more.
#[derive(Clone, Debug, PartialEq)]
pub struct Live {
    pub key: ObjectKey,
    pub uid: String,
    pub resource_version: String,
    pub labels: BTreeMap<String, String>,
    pub owner_references: Vec<OwnerReference>,
    /// As stored, or already normalised (the controller's cache keeps only that form); the diff
    /// normalises it either way, normalising being idempotent.
    pub spec: Value,
    /// The manager other than Tenantry that last wrote the spec, when managedFields tell.
    pub foreign_manager: Option<String>,
    pub deleting: bool,
}

impl Live {
    pub fn policy(&self) -> Option<&str> {
        self.labels.get(POLICY_LABEL).map(String::as_str)
    }

    /// Carries Tenantry's managed-by label (whichever policy).
    pub fn is_tenantry_managed(&self) -> bool {
        crate::api::is_managed(&self.labels)
    }

    /// Labelled for this policy and controlled by this very policy object (same uid).
    pub fn is_owned_by(&self, owner: &Owner) -> bool {
        self.is_tenantry_managed()
            && self.policy() == Some(owner.name.as_str())
            && self
                .owner_references
                .iter()
                .any(|r| r.controller == Some(true) && r.uid == owner.uid)
    }
}

/// A typed object the caches hold, seen uniformly.
pub trait ManagedResource:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + fmt::Debug
    + serde::Serialize
    + serde::de::DeserializeOwned
    + crate::cache::protobuf::FromProtobuf<Message: Send>
    + Send
    + Sync
    + 'static
{
    const KIND: Kind;
    fn spec_value(&self) -> Value;
    /// The status as JSON (`Null` for kinds without one).
    fn status_value(&self) -> Value;
    /// Drops what the controller never reads (status, most of managedFields) to keep caches small.
    fn strip(&mut self);
}

/// JSON of an optional part of an object (`Null` when absent).
fn json_of<T: serde::Serialize>(part: &Option<T>) -> Value {
    part.as_ref()
        .map(|p| serde_json::to_value(p).expect("serializes"))
        .unwrap_or(Value::Null)
}

macro_rules! managed_resource {
    ($ty:ty, $kind:expr, $($status:ident)?) => {
        impl ManagedResource for $ty {
            const KIND: Kind = $kind;
            fn spec_value(&self) -> Value {
                json_of(&self.spec)
            }
            fn status_value(&self) -> Value {
                [$(json_of(&self.$status))?].into_iter().next().unwrap_or(Value::Null)
            }
            fn strip(&mut self) {
                $(self.$status = None;)?
                strip_metadata(&mut self.metadata);
            }
        }
    };
}
managed_resource!(LimitRange, Kind::LimitRange,);
managed_resource!(ResourceQuota, Kind::ResourceQuota, status);
managed_resource!(PodDisruptionBudget, Kind::PodDisruptionBudget, status);

/// Keeps, of managedFields, only the newest spec writer that is not Tenantry (as a bare entry
/// naming the manager), so drift Events can name who changed an object.
pub fn strip_metadata(meta: &mut ObjectMeta) {
    let foreign = meta
        .managed_fields
        .take()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| {
            e.subresource.as_deref().unwrap_or("").is_empty()
                && e.manager.as_deref() != Some(FIELD_MANAGER)
        })
        .max_by(|a, b| {
            a.time
                .as_ref()
                .map(|t| t.0)
                .cmp(&b.time.as_ref().map(|t| t.0))
        });
    meta.managed_fields = foreign.map(|e| {
        vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry {
                manager: e.manager,
                ..Default::default()
            },
        ]
    });
    meta.annotations = None;
}

/// The uniform view of a cached object.
pub fn live_of<K: ManagedResource>(object: &K) -> Live {
    live_from_meta(K::KIND, object.meta(), object.spec_value())
}

/// The uniform view of a cached StorageClass (cluster-scoped, so not a [`ManagedResource`]).
pub fn live_of_class(class: &StorageClass) -> Live {
    live_from_meta(
        Kind::StorageClass,
        &class.metadata,
        storage_class::spec_of(class),
    )
}

/// The uniform view of an object read untyped (the writer's look at an existing object of a
/// declared name); `None` when it does not read as `kind`.
pub fn live_of_dynamic(kind: Kind, object: &kube::api::DynamicObject) -> Option<Live> {
    fn typed<K: ManagedResource>(object: &kube::api::DynamicObject) -> Option<Live> {
        let typed: K = serde_json::from_value(serde_json::to_value(object).ok()?).ok()?;
        Some(live_of(&typed))
    }
    match kind {
        Kind::LimitRange => typed::<LimitRange>(object),
        Kind::ResourceQuota => typed::<ResourceQuota>(object),
        Kind::PodDisruptionBudget => typed::<PodDisruptionBudget>(object),
        Kind::StorageClass => {
            let class: StorageClass =
                serde_json::from_value(serde_json::to_value(object).ok()?).ok()?;
            Some(live_of_class(&class))
        }
    }
}

/// One object of each item the policy declares, in `namespace` (namespaced kinds), whatever it
/// selects or wins: what the dry run checks, so that a policy selecting no namespace is judged too.
pub fn templates(
    spec: &TenantPolicySpec,
    cluster_classes: &BTreeSet<String>,
    namespace: &str,
) -> Vec<Desired> {
    let mut out: Vec<Desired> = Section::ALL
        .into_iter()
        .filter(|s| s.is_set_by(spec))
        .flat_map(|s| {
            s.build(spec, cluster_classes)
                .into_iter()
                .map(move |(name, built)| {
                    let key = ObjectKey {
                        kind: s.kind(),
                        namespace: namespace.to_owned(),
                        name,
                    };
                    Desired::of(key, built)
                })
        })
        .collect();
    out.extend(spec.storage.iter().flat_map(|s| &s.classes).map(|t| {
        let key = ObjectKey {
            kind: Kind::StorageClass,
            namespace: String::new(),
            name: t.name.clone(),
        };
        Desired::of(key, storage_class::build(t))
    }));
    out
}

fn live_from_meta(kind: Kind, meta: &ObjectMeta, spec: Value) -> Live {
    Live {
        key: ObjectKey {
            kind,
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
        },
        uid: meta.uid.clone().unwrap_or_default(),
        resource_version: meta.resource_version.clone().unwrap_or_default(),
        labels: meta.labels.clone().unwrap_or_default(),
        owner_references: meta.owner_references.clone().unwrap_or_default(),
        spec,
        foreign_manager: meta
            .managed_fields
            .as_ref()
            .and_then(|m| m.first())
            .and_then(|e| e.manager.clone()),
        deleting: meta.deletion_timestamp.is_some(),
    }
}

/// Replaces every quantity string in a map of resource name -> quantity with its canonical form.
pub(crate) fn normalize_quantity_map(map: &Value) -> Value {
    match map {
        Value::Object(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    let canonical = match v {
                        Value::String(s) => Value::String(crate::quantity::canonical(s)),
                        Value::Number(n) => {
                            Value::String(crate::quantity::canonical(&n.to_string()))
                        }
                        other => other.clone(),
                    };
                    (k.clone(), canonical)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_one_object_per_declared_item_whatever_is_selected() {
        let spec: TenantPolicySpec = serde_json::from_value(json!({
            "limitRanges": [{"name": "defaults", "limits": [{"type": "Pod", "max": {"cpu": "1"}}]}],
            "resourceQuotas": [{"name": "a", "hard": {"pods": "1"}}, {"name": "b", "hard": {"pods": "2"}}],
            "podDisruptionBudgets": [{"name": "web", "selector": {}, "minAvailable": 1}],
            "storage": {"classes": [{"name": "fast", "provisioner": "x.io/ssd"}], "allowedClasses": ["fast"]},
        }))
        .unwrap();
        let built: Vec<String> = templates(&spec, &BTreeSet::from(["old".to_owned()]), "default")
            .iter()
            .map(|d| d.key.to_string())
            .collect();
        assert_eq!(
            built,
            [
                "default/LimitRange/defaults",
                "default/ResourceQuota/a",
                "default/ResourceQuota/b",
                "default/PodDisruptionBudget/web",
                "default/ResourceQuota/tenantry-storage",
                "StorageClass/fast",
            ]
        );
    }
}
