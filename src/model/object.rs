//! Objects as Tenantry handles them: desired (as a policy builds them) and live (a uniform view
//! of what the API server holds, for every managed kind), both with their spec as JSON so one
//! diff serves every kind.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{LimitRange, ResourceQuota};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use serde_json::{Value, json};

use crate::api::{FIELD_MANAGER, MANAGED_BY_LABEL, MANAGED_BY_VALUE, POLICY_LABEL};
use crate::model::key::{ObjectKey, Owner, controlled_by};
use crate::model::kind::Kind;
use crate::model::normalize;

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
    crate::model::fingerprint::fingerprint(normalized.to_string())
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
            && controlled_by(&self.owner_references, owner)
    }
}

/// A typed object the caches hold, seen uniformly.
pub trait ManagedResource:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + fmt::Debug
    + serde::Serialize
    + serde::de::DeserializeOwned
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
        normalize::class_fields(class),
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
