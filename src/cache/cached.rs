//! [`Cached`]: a managed object (LimitRange, ResourceQuota, PodDisruptionBudget) as the cache
//! holds it, and how it stands in for the object in a store ([`Compact`], [`Lookup`]).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;
use kube::runtime::reflector::Lookup;
use serde_json::Value;

use super::Compact;
use super::encoding::{Uid, Version};
use super::interner::{LABELS, OWNERS, SPECS, name};
use crate::api::{POLICY_LABEL, SHARED_QUOTA_LABEL, TENANTRY_LABELS, is_managed};
use crate::model::fingerprint::fingerprint;
use crate::model::key::{ObjectKey, Owner, controlled_by, foreign_controller};
use crate::model::object::{Live, ManagedResource, spec_fingerprint};

fn hash_of_owners(references: &[OwnerReference]) -> u64 {
    fingerprint(
        references
            .iter()
            .map(|r| {
                (
                    &r.api_version,
                    &r.kind,
                    &r.name,
                    &r.uid,
                    r.controller,
                    r.block_owner_deletion,
                )
            })
            .collect::<Vec<_>>(),
    )
}

/// One managed object of kind `K` as the cache holds it: what the diff and the watch triggers
/// read, nothing more. Converted to the diff's [`Live`] only for an object that is not converged.
#[derive(Clone, Debug)]
pub struct Cached<K> {
    /// Shared (see [`NAMES`](super::interner::NAMES)).
    pub name: Arc<str>,
    /// Shared with the namespace's other objects and its [`CachedNamespace`].
    ///
    /// [`CachedNamespace`]: super::namespace::CachedNamespace
    pub namespace: Arc<str>,
    pub uid: Uid,
    pub resource_version: Version,
    /// Of the object's labels, only Tenantry's ([`crate::api::TENANTRY_LABELS`]): the diff reads
    /// no others.
    /// Shared.
    pub labels: Arc<BTreeMap<String, String>>,
    /// All of them, verbatim: patches that replace or release the controller reference keep the
    /// others. Shared.
    pub owner_references: Arc<Vec<OwnerReference>>,
    /// The manager other than Tenantry that last wrote the spec, when managedFields tell.
    pub foreign_manager: Option<String>,
    pub deleting: bool,
    /// The spec, normalised as [`crate::model::kind::Kind::normalize`] does. Shared by every
    /// object with the same one.
    pub spec: Arc<Value>,
    /// [`spec_fingerprint`] of `spec`.
    pub spec_print: u64,
    /// The status, kept only for the ResourceQuotas holding a shared budget's part
    /// ([`SHARED_QUOTA_LABEL`]): the allocator reads their `hard` and `used`.
    pub status: Option<Arc<Value>>,
    /// For a part (`status` kept): when the cache first showed its `status.used` higher than
    /// before in some resource, that is, about when quota admission last charged it. A use that
    /// falls (pods deleted, a recount) keeps the instant: nothing is charged then.
    pub last_charged: Option<Instant>,
    /// See [`Compact::changed`].
    changed: bool,
    kind: PhantomData<fn() -> K>,
}

/// What of a managed object (of any kind) decides what a policy does with it, as a fingerprint:
/// its normalised spec, Tenantry's labels (every one it sets: the diff restores each, so an
/// edit of any is drift to repair now, not at the next unrelated reconcile), its owners and
/// whether it is being deleted. A change to anything else (status, other labels, a resync) is
/// not worth a reconcile.
pub fn worth_a_reconcile(
    spec_print: u64,
    labels: &BTreeMap<String, String>,
    owners: &[OwnerReference],
    deleting: bool,
) -> u64 {
    let owners: Vec<&str> = owners.iter().map(|r| r.uid.as_str()).collect();
    let ours = TENANTRY_LABELS.map(|label| labels.get(label));
    fingerprint((spec_print, ours, owners, deleting))
}

impl<K: ManagedResource> Cached<K> {
    /// The summary of a watched object.
    pub fn new(object: K) -> Self {
        Self::of(object)
    }

    pub fn key(&self) -> ObjectKey {
        ObjectKey {
            kind: K::KIND,
            namespace: self.namespace.to_string(),
            name: self.name.to_string(),
        }
    }

    /// The policy named in the object's label.
    pub fn policy(&self) -> Option<&str> {
        self.labels.get(POLICY_LABEL).map(String::as_str)
    }

    /// The diff's view. Its spec is the normalised one, which the diff normalises again
    /// (normalising is idempotent) and patches from.
    pub fn to_live(&self) -> Live {
        Live {
            key: self.key(),
            uid: self.uid.to_string(),
            resource_version: self.resource_version.to_string(),
            labels: self.labels.as_ref().clone(),
            owner_references: self.owner_references.as_ref().clone(),
            spec: self.spec.as_ref().clone(),
            foreign_manager: self.foreign_manager.clone(),
            deleting: self.deleting,
        }
    }

    /// True when the object is `owner`'s (labels and sole controller reference), not being
    /// deleted, and its normalised spec has this fingerprint: converged, no need to look closer.
    pub fn converged(&self, owner: &Owner, fingerprint: u64) -> bool {
        self.spec_print == fingerprint
            && !self.deleting
            && is_managed(&self.labels)
            && self.policy() == Some(owner.name.as_str())
            && controlled_by(&self.owner_references, owner)
            && foreign_controller(&self.owner_references, owner).is_none()
    }
}

impl<K: ManagedResource> Compact<K> for Cached<K> {
    fn of(mut object: K) -> Self {
        let part =
            (object.meta().labels.as_ref()).is_some_and(|l| l.contains_key(SHARED_QUOTA_LABEL));
        let status = part.then(|| Arc::new(object.status_value()));
        object.strip(); // leaves of managedFields the foreign manager alone
        let spec = K::KIND.normalize(&object.spec_value());
        let spec_print = spec_fingerprint(&spec);
        let meta = object.meta_mut();
        let labels: BTreeMap<String, String> = meta
            .labels
            .take()
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| TENANTRY_LABELS.contains(&k.as_str()))
            .collect();
        let owners = meta.owner_references.take().unwrap_or_default();
        Self {
            name: name(meta.name.take()),
            namespace: name(meta.namespace.take()),
            uid: Uid::new(meta.uid.take().unwrap_or_default()),
            resource_version: Version::new(meta.resource_version.take().unwrap_or_default()),
            labels: LABELS.intern(fingerprint(&labels), labels),
            owner_references: OWNERS.intern(hash_of_owners(&owners), owners),
            foreign_manager: meta
                .managed_fields
                .take()
                .and_then(|m| m.into_iter().next())
                .and_then(|e| e.manager),
            deleting: meta.deletion_timestamp.is_some(),
            spec: SPECS.intern(spec_print, spec),
            spec_print,
            last_charged: status.is_some().then(Instant::now),
            status,
            changed: true,
            kind: PhantomData,
        }
    }

    /// A shared budget's part also changes for policies when its status does: the allocator
    /// moves headroom by what the parts use.
    fn same_for_policies(&self, other: &Self) -> bool {
        let print =
            |o: &Self| worth_a_reconcile(o.spec_print, &o.labels, &o.owner_references, o.deleting);
        self.uid == other.uid && print(self) == print(other) && self.status == other.status
    }

    fn changed(&self) -> bool {
        self.changed
    }

    fn set_changed(&mut self, changed: bool) {
        self.changed = changed;
    }

    fn follow(&mut self, previous: &Self) {
        let used = |o: &Self, resource: &str| {
            let used = o.status.as_deref().and_then(|s| s.get("used"));
            (used.and_then(|u| u.get(resource)?.as_str()))
                .and_then(crate::model::quantity::milli)
                .unwrap_or(0)
        };
        let resources = (self.status.as_deref())
            .and_then(|s| s.get("used")?.as_object())
            .map(|u| u.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default();
        let charged = resources.iter().any(|r| used(self, r) > used(previous, r));
        if self.uid == previous.uid && !charged {
            self.last_charged = previous.last_charged.or(self.last_charged);
        }
    }

    fn written_as(&self) -> Option<(crate::model::kind::Kind, String)> {
        Some((K::KIND, self.resource_version.to_string()))
    }
}

impl<K: ManagedResource> Lookup for Cached<K> {
    type DynamicType = ();

    fn kind(dyntype: &()) -> Cow<'_, str> {
        <K as Resource>::kind(dyntype)
    }

    fn group(dyntype: &()) -> Cow<'_, str> {
        <K as Resource>::group(dyntype)
    }

    fn version(dyntype: &()) -> Cow<'_, str> {
        <K as Resource>::version(dyntype)
    }

    fn plural(dyntype: &()) -> Cow<'_, str> {
        <K as Resource>::plural(dyntype)
    }

    fn name(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(&self.name))
    }

    fn namespace(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(&self.namespace))
    }

    /// Not told to the store, whose key of each object would otherwise hold a second copy that
    /// nothing reads (store keys compare by kind, namespace and name only).
    fn resource_version(&self) -> Option<Cow<'_, str>> {
        None
    }

    /// Not told to the store, as the resourceVersion.
    fn uid(&self) -> Option<Cow<'_, str>> {
        None
    }
}
