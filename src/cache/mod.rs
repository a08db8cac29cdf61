//! The managed objects as the controller caches them.
//!
//! A typed LimitRange, ResourceQuota or PodDisruptionBudget costs about 4.6 KiB in a cache even
//! stripped, and there are several per namespace. What the diff reads of one fits in a few hundred
//! bytes ([`Cached`]), and the parts that are the same across thousands of objects (the spec a
//! policy builds, Tenantry's labels, the policy's ownerReference) are shared through an
//! [`Interner`] rather than copied, so memory grows with the number of distinct specs, not with
//! the number of namespaces.
//!
//! Namespaces are cached as what selection reads of them ([`CachedNamespace`]) in the same way.
//!
//! [`watch`] has the watches that fill these caches and tell the controller what changed;
//! [`stores`] the caches as the reconcile reads them.

pub mod own_writes;
pub mod protobuf;
pub mod protobuf_watch;
pub mod refusals;
pub mod stores;
pub mod watch;

pub use stores::Stores;

/// A policy as watched: one that does not deserialize (stored under an older schema, say) is
/// reported on its own instead of breaking the watch of all of them.
pub type Guarded = kube::core::DeserializeGuard<crate::api::TenantPolicy>;

use std::borrow::{Borrow, Cow};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::marker::PhantomData;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Instant;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;
use kube::api::PartialObjectMeta;
use kube::runtime::reflector::{Lookup, ObjectRef, Store};
use kube::runtime::watcher;
use serde_json::Value;

use crate::api::{POLICY_LABEL, SHARED_QUOTA_LABEL, TENANTRY_LABELS, is_managed};
use crate::fingerprint::fingerprint;
use crate::resources::{Live, ManagedResource, ObjectKey, Owner, spec_fingerprint};

/// Below this many entries an interner is not pruned.
const MIN_PRUNE: usize = 64;

/// Hands out one shared copy of equal values, for as long as someone holds it: entries are weak,
/// and dead ones are pruned whenever the table has doubled since the last pruning (amortised
/// constant time per value).
pub struct Interner<T: ?Sized> {
    entries: Mutex<Entries<T>>,
}

struct Entries<T: ?Sized> {
    by_hash: HashMap<u64, Weak<T>>,
    prune_at: usize,
}

impl<T: ?Sized + PartialEq> Default for Interner<T> {
    fn default() -> Self {
        Self {
            entries: Mutex::new(Entries {
                by_hash: HashMap::new(),
                prune_at: MIN_PRUNE,
            }),
        }
    }
}

impl<T: ?Sized + PartialEq> Interner<T> {
    /// The shared copy of `value`, whose hash is `hash`. Equal values must have equal hashes; a
    /// collision only costs the sharing (the newer value takes the slot).
    pub fn intern<V: Borrow<T> + Into<Arc<T>>>(&self, hash: u64, value: V) -> Arc<T> {
        let mut entries = self.entries.lock().expect("not poisoned");
        if let Some(shared) = entries.by_hash.get(&hash).and_then(Weak::upgrade)
            && *shared == *value.borrow()
        {
            return shared;
        }
        let value: Arc<T> = value.into();
        entries.by_hash.insert(hash, Arc::downgrade(&value));
        if entries.by_hash.len() >= entries.prune_at {
            entries
                .by_hash
                .retain(|_, shared| shared.strong_count() > 0);
            entries.prune_at = (2 * entries.by_hash.len()).max(MIN_PRUNE);
        }
        value
    }

    /// Entries in the table, dead ones not yet pruned included.
    pub fn len(&self) -> usize {
        self.entries.lock().expect("not poisoned").by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Normalised specs, keyed by [`spec_fingerprint`].
static SPECS: LazyLock<Interner<Value>> = LazyLock::new(Interner::default);
/// Tenantry's labels on an object: one map per policy in practice.
static LABELS: LazyLock<Interner<BTreeMap<String, String>>> = LazyLock::new(Interner::default);
/// The ownerReferences of an object: one list per policy in practice.
static OWNERS: LazyLock<Interner<Vec<OwnerReference>>> = LazyLock::new(Interner::default);
/// Object names (a handful: the policies' item names) and namespace names (each shared by the
/// namespace and the objects in it).
static NAMES: LazyLock<Interner<str>> = LazyLock::new(Interner::default);

fn name(name: Option<String>) -> Arc<str> {
    let name = name.unwrap_or_default();
    NAMES.intern(fingerprint(name.as_str()), name)
}

/// A uid kept in 16 bytes when it is a UUID in the canonical form the API server generates (so
/// that it reads back exactly as it was), as given otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Uid {
    Uuid(u128),
    Other(Box<str>),
}

impl Uid {
    pub fn new(uid: String) -> Self {
        let canonical = uid.len() == 36
            && uid.char_indices().all(|(i, c)| match i {
                8 | 13 | 18 | 23 => c == '-',
                _ => c.is_ascii_digit() || ('a'..='f').contains(&c),
            });
        match canonical.then(|| u128::from_str_radix(&uid.replace('-', ""), 16)) {
            Some(Ok(n)) => Uid::Uuid(n),
            _ => Uid::Other(uid.into()),
        }
    }
}

impl std::fmt::Display for Uid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Uid::Uuid(n) => {
                let hex = format!("{n:032x}");
                write!(
                    f,
                    "{}-{}-{}-{}-{}",
                    &hex[..8],
                    &hex[8..12],
                    &hex[12..16],
                    &hex[16..20],
                    &hex[20..]
                )
            }
            Uid::Other(uid) => f.write_str(uid),
        }
    }
}

/// A resourceVersion kept as a number when it reads back exactly as one (etcd's revisions), as
/// given otherwise (it is opaque to clients).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Version {
    Number(u64),
    Other(Box<str>),
}

impl Version {
    pub fn new(version: String) -> Self {
        match version.parse::<u64>() {
            Ok(n) if n.to_string() == version => Version::Number(n),
            _ => Version::Other(version.into()),
        }
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Version::Number(n) => write!(f, "{n}"),
            Version::Other(version) => f.write_str(version),
        }
    }
}

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
    /// Shared (see [`NAMES`]).
    pub name: Arc<str>,
    /// Shared with the namespace's other objects and its [`CachedNamespace`].
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
    /// The spec, normalised as [`crate::resources::Kind::normalize`] does. Shared by every
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

/// A compact stand-in, in a cache, for a watched object of kind `K`.
pub trait Compact<K>: Lookup<DynamicType = ()> + Clone + Send + Sync + 'static {
    fn of(object: K) -> Self;
    /// Equal in everything that decides what a policy does.
    fn same_for_policies(&self, other: &Self) -> bool;
    /// Whether this version differs from the one cached before it in anything that can change
    /// what a policy does (set by [`watch`] before the event is stored).
    fn changed(&self) -> bool;
    fn set_changed(&mut self, changed: bool);
    /// Carries over what this version shares with `previous`, the version cached before it.
    fn follow(&mut self, _previous: &Self) {}
    /// The kind and resourceVersion, for [`own_writes`]: `None` for what Tenantry does not write.
    fn written_as(&self) -> Option<(crate::resources::Kind, String)> {
        None
    }
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
        let mut controllers = self
            .owner_references
            .iter()
            .filter(|r| r.controller == Some(true))
            .map(|r| r.uid.as_str());
        self.spec_print == fingerprint
            && !self.deleting
            && is_managed(&self.labels)
            && self.policy() == Some(owner.name.as_str())
            && controllers.next() == Some(owner.uid.as_str())
            && controllers.next().is_none()
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
                .and_then(crate::quantity::milli)
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

    fn written_as(&self) -> Option<(crate::resources::Kind, String)> {
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

/// A namespace as selection reads it.
#[derive(Clone, Debug)]
pub struct CachedNamespace {
    /// Shared with the objects in the namespace.
    pub name: Arc<str>,
    /// Shared with what [`watch::Targets`] remembers of the namespace.
    pub labels: Arc<BTreeMap<String, String>>,
    pub terminating: bool,
    /// See [`Compact::changed`].
    changed: bool,
}

impl CachedNamespace {
    /// What selection reads, borrowed.
    pub fn info(&self) -> crate::select::NamespaceInfo<'_> {
        crate::select::NamespaceInfo {
            name: Cow::Borrowed(&self.name),
            labels: Cow::Borrowed(self.labels.as_ref()),
            terminating: self.terminating,
        }
    }
}

impl Compact<PartialObjectMeta<Namespace>> for CachedNamespace {
    fn of(namespace: PartialObjectMeta<Namespace>) -> Self {
        let meta = namespace.metadata;
        Self {
            name: name(meta.name),
            labels: Arc::new(meta.labels.unwrap_or_default()),
            terminating: meta.deletion_timestamp.is_some(),
            changed: true,
        }
    }

    fn same_for_policies(&self, other: &Self) -> bool {
        self.labels == other.labels && self.terminating == other.terminating
    }

    fn changed(&self) -> bool {
        self.changed
    }

    fn set_changed(&mut self, changed: bool) {
        self.changed = changed;
    }
}

impl Lookup for CachedNamespace {
    type DynamicType = ();

    fn kind(dyntype: &()) -> Cow<'_, str> {
        <Namespace as Resource>::kind(dyntype)
    }

    fn group(dyntype: &()) -> Cow<'_, str> {
        <Namespace as Resource>::group(dyntype)
    }

    fn version(dyntype: &()) -> Cow<'_, str> {
        <Namespace as Resource>::version(dyntype)
    }

    fn plural(dyntype: &()) -> Cow<'_, str> {
        <Namespace as Resource>::plural(dyntype)
    }

    fn name(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(&self.name))
    }

    fn namespace(&self) -> Option<Cow<'_, str>> {
        None
    }

    /// Not kept (see [`Cached`]'s).
    fn resource_version(&self) -> Option<Cow<'_, str>> {
        None
    }

    /// Not kept.
    fn uid(&self) -> Option<Cow<'_, str>> {
        None
    }
}

/// The summary of a watch event; `cached` (the store being fed, which still holds the previous
/// version) decides whether it is a change worth a reconcile.
pub(crate) fn summarise<K, S: Compact<K>>(
    event: watcher::Event<K>,
    cached: &Store<S>,
) -> watcher::Event<S> {
    let compared = |object: K| {
        let mut object = S::of(object);
        let mut key = ObjectRef::new(&object.name().unwrap_or_default());
        key.namespace = object.namespace().map(Cow::into_owned);
        let previous = cached.get(&key);
        object.set_changed(
            previous
                .as_ref()
                .is_none_or(|previous| !previous.same_for_policies(&object)),
        );
        if let Some(previous) = previous {
            object.follow(&previous);
        }
        object
    };
    match event {
        watcher::Event::Apply(o) => watcher::Event::Apply(compared(o)),
        watcher::Event::InitApply(o) => watcher::Event::InitApply(compared(o)),
        watcher::Event::Delete(o) => watcher::Event::Delete(S::of(o)),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use k8s_openapi::api::core::v1::ResourceQuota;
    use serde_json::json;

    use super::*;
    use crate::api::DeletionPolicy;
    use crate::diff::{self, Action};
    use crate::resources::{Desired, Kind, managed_labels};
    use kube::runtime::reflector;

    fn owner() -> Owner {
        Owner {
            name: "team".into(),
            uid: "uid-team".into(),
        }
    }

    fn quota(namespace: &str, hard: Value) -> ResourceQuota {
        let mut labels = managed_labels(&owner().name);
        labels.insert("tenant-added".into(), "x".into());
        serde_json::from_value(json!({
            "metadata": {
                "name": "compute",
                "namespace": namespace,
                "uid": format!("uid-{namespace}"),
                "resourceVersion": "7",
                "labels": labels,
                "annotations": {"a": "b"},
                "ownerReferences": [owner().owner_reference()],
                "managedFields": [
                    {"manager": "tenantry", "operation": "Apply", "time": "2025-01-01T00:00:00Z"},
                    {"manager": "kubectl-edit", "operation": "Update", "time": "2025-01-02T00:00:00Z"},
                ],
            },
            "spec": {"hard": hard},
            "status": {"used": {"pods": "3"}},
        }))
        .unwrap()
    }

    #[test]
    fn a_part_remembers_when_its_use_last_grew_across_versions() {
        let part = |used: &str, version: &str| {
            let mut q = quota("a", json!({"pods": "5"}));
            (q.metadata.labels.as_mut().unwrap()).insert(SHARED_QUOTA_LABEL.into(), "b".into());
            q.metadata.resource_version = Some(version.into());
            q.status.as_mut().unwrap().used = serde_json::from_value(json!({"pods": used})).ok();
            Cached::<ResourceQuota>::of(q)
        };
        let mut first = part("3", "7");
        let long_ago = Instant::now() - std::time::Duration::from_secs(60);
        first.last_charged = Some(long_ago);
        let mut same = part("3", "8");
        same.follow(&first);
        assert_eq!(
            same.last_charged,
            Some(long_ago),
            "a spec or status.hard change"
        );
        let mut recounted = part("2", "9");
        recounted.follow(&same);
        assert_eq!(
            recounted.last_charged,
            Some(long_ago),
            "use fell: nothing charged"
        );
        let mut charged = part("4", "10");
        charged.follow(&recounted);
        assert!(
            charged.last_charged.unwrap() > long_ago,
            "quota admission charged it"
        );
        let plain = Cached::<ResourceQuota>::of(quota("a", json!({"pods": "5"})));
        assert_eq!(plain.last_charged, None, "only parts keep their status");
    }

    fn desired(namespace: &str, hard: Value) -> Desired {
        Desired::of(
            crate::resources::ObjectKey {
                kind: Kind::ResourceQuota,
                namespace: namespace.into(),
                name: "compute".into(),
            },
            json!({"hard": hard}),
        )
    }

    #[test]
    fn keeps_what_the_diff_reads_and_shares_what_objects_have_in_common() {
        let a = Cached::new(quota("a", json!({"cpu": "1", "memory": "1Gi"})));
        let b = Cached::new(quota("b", json!({"cpu": "1000m", "memory": "1024Mi"})));
        assert_eq!((&*a.name, &*a.namespace), ("compute", "a"));
        assert_eq!(a.uid, Uid::Other("uid-a".into()));
        assert_eq!(a.resource_version, Version::Number(7));
        assert_eq!(
            *a.labels,
            managed_labels("team"),
            "other labels are dropped"
        );
        assert_eq!(a.foreign_manager.as_deref(), Some("kubectl-edit"));
        assert_eq!(a.policy(), Some("team"));
        assert!(!a.deleting);
        // Same values in other spellings: one normalised spec, one labels map, one owner list.
        assert!(Arc::ptr_eq(&a.spec, &b.spec));
        assert!(Arc::ptr_eq(&a.labels, &b.labels));
        assert!(Arc::ptr_eq(&a.owner_references, &b.owner_references));
        assert!(Arc::ptr_eq(&a.name, &b.name));
        let c = Cached::new(quota("c", json!({"cpu": "2"})));
        assert!(!Arc::ptr_eq(&a.spec, &c.spec));
        assert_eq!(
            *c.spec,
            Kind::ResourceQuota.normalize(&json!({"hard": {"cpu": "2"}}))
        );
    }

    #[test]
    fn the_fast_path_recognises_only_converged_objects_of_the_owner() {
        let d = desired("a", json!({"cpu": "1", "memory": "1Gi"}));
        let live = Cached::new(quota("a", json!({"cpu": "1000m", "memory": "1024Mi"})));
        assert!(live.converged(&owner(), d.fingerprint));
        let other = Owner {
            name: "team".into(),
            uid: "uid-other".into(),
        };
        assert!(!live.converged(&other, d.fingerprint));
        assert!(!live.converged(&owner(), desired("a", json!({"cpu": "2"})).fingerprint));
        let mut deleting = quota("a", json!({"cpu": "1", "memory": "1Gi"}));
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        assert!(!Cached::new(deleting).converged(&owner(), d.fingerprint));
    }

    #[test]
    fn the_diff_patches_from_the_normalised_live_spec() {
        let live = [Cached::new(quota("a", json!({"cpu": "1000m", "pods": "5"}))).to_live()];
        let plan = diff::compute(
            &owner(),
            &[desired("a", json!({"cpu": "1"}))],
            &live[..],
            &|_| false,
            DeletionPolicy::Delete,
            &HashSet::new(),
        );
        let [Action::Replace { patch, drift, .. }] = &plan.actions[..] else {
            panic!("{plan:?}")
        };
        // The extra field goes; values merely spelt otherwise (canonical form) are restated as
        // the policy spells them, which changes nothing stored.
        assert_eq!(patch["spec"], json!({"hard": {"pods": null, "cpu": "1"}}));
        assert_eq!(patch["metadata"]["resourceVersion"], json!("7"));
        assert_eq!(
            drift.as_ref().and_then(|d| d.changed_by.as_deref()),
            Some("kubectl-edit")
        );
    }

    #[test]
    fn a_shared_part_as_written_is_converged_labels_and_all() {
        let hard = json!({"pods": "2"});
        let labels = BTreeMap::from([
            (SHARED_QUOTA_LABEL.to_owned(), "compute".to_owned()),
            (crate::api::ENFORCED_LABEL.to_owned(), "true".to_owned()),
        ]);
        let d = desired("a", hard.clone()).with_labels(labels.clone());
        let mut written = quota("a", hard);
        (written.metadata.labels.as_mut().unwrap()).extend(labels);
        let live = [Cached::new(written).to_live()];
        let plan = diff::compute(
            &owner(),
            &[d],
            &live[..],
            &|_| false,
            DeletionPolicy::Delete,
            &HashSet::new(),
        );
        assert!(plan.actions.is_empty(), "{:?}", plan.actions);
        assert_eq!(plan.converged.len(), 1);
    }

    #[test]
    fn changes_are_told_apart_from_resyncs() {
        let a = Cached::new(quota("a", json!({"cpu": "1"})));
        let mut resent = quota("a", json!({"cpu": "1000m"}));
        resent.metadata.resource_version = Some("8".into());
        resent
            .metadata
            .labels
            .get_or_insert_default()
            .insert("unrelated".into(), "y".into());
        assert!(a.same_for_policies(&Cached::new(resent)));
        let mut released = quota("a", json!({"cpu": "1"}));
        released.metadata.owner_references = None;
        assert!(!a.same_for_policies(&Cached::new(released)));
        assert!(!a.same_for_policies(&Cached::new(quota("a", json!({"cpu": "2"})))));
    }

    #[test]
    fn an_edit_of_any_label_tenantry_sets_is_a_change() {
        let a = Cached::new(quota("a", json!({"cpu": "1"})));
        for label in TENANTRY_LABELS {
            let mut edited = quota("a", json!({"cpu": "1"}));
            let labels = edited.metadata.labels.get_or_insert_default();
            let value = labels.get(label).map_or("set", |_| "edited").to_owned();
            labels.insert(label.to_owned(), value);
            assert!(!a.same_for_policies(&Cached::new(edited)), "{label}");
        }
    }

    #[test]
    fn only_changes_that_matter_to_policies_are_passed_on_but_all_are_stored() {
        let (store, mut writer) = reflector::store::<Cached<ResourceQuota>>();
        let changed = |e: &watcher::Event<Cached<ResourceQuota>>| match e {
            watcher::Event::Apply(o) => o.changed(),
            _ => panic!("{e:?}"),
        };
        let first = summarise(
            watcher::Event::Apply(quota("a", json!({"cpu": "1"}))),
            &store,
        );
        assert!(changed(&first));
        writer.apply_watcher_event(&first);
        let mut resent = quota("a", json!({"cpu": "1000m"}));
        resent.metadata.resource_version = Some("8".into());
        let second = summarise(watcher::Event::Apply(resent), &store);
        assert!(!changed(&second));
        writer.apply_watcher_event(&second);
        let cached = store.get(&ObjectRef::new("compute").within("a")).unwrap();
        assert_eq!(cached.resource_version.to_string(), "8");
        let third = summarise(
            watcher::Event::Apply(quota("a", json!({"cpu": "2"}))),
            &store,
        );
        assert!(changed(&third));
    }

    #[test]
    fn namespaces_keep_name_labels_and_termination() {
        let (store, mut writer) = reflector::store::<CachedNamespace>();
        let namespace = |labels: Value, terminating: bool| -> PartialObjectMeta<Namespace> {
            serde_json::from_value(json!({
                "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                "metadata": {
                    "name": "mia", "uid": "u", "resourceVersion": "1", "labels": labels,
                    "annotations": {"note": "x"},
                    "deletionTimestamp": terminating.then_some("2025-01-01T00:00:00Z"),
                },
            }))
            .unwrap()
        };
        let first = summarise(
            watcher::Event::Apply(namespace(json!({"team": "a"}), false)),
            &store,
        );
        writer.apply_watcher_event(&first);
        let cached = store.get(&ObjectRef::new("mia")).unwrap();
        assert_eq!(
            *cached.labels,
            BTreeMap::from([("team".into(), "a".into())])
        );
        assert!(cached.changed() && !cached.terminating);
        let same = summarise(
            watcher::Event::Apply(namespace(json!({"team": "a"}), false)),
            &store,
        );
        assert!(matches!(same, watcher::Event::Apply(ns) if !ns.changed()));
        let relabelled = summarise(
            watcher::Event::Apply(namespace(json!({"team": "b"}), false)),
            &store,
        );
        assert!(matches!(relabelled, watcher::Event::Apply(ns) if ns.changed()));
        let terminating = summarise(
            watcher::Event::Apply(namespace(json!({"team": "a"}), true)),
            &store,
        );
        assert!(matches!(terminating, watcher::Event::Apply(ns) if ns.changed() && ns.terminating));
    }

    #[test]
    fn uids_and_versions_read_back_exactly_as_given() {
        for uid in [
            "5f0c1b8e-3a4f-4d7e-9b2a-1c2d3e4f5a6b",
            "00000000-0000-0000-0000-000000000000",
            "5F0C1B8E-3A4F-4D7E-9B2A-1C2D3E4F5A6B",
            "5f0c1b8e3a4f4d7e9b2a1c2d3e4f5a6b",
            "5f0c1b8e-3a4f-4d7e-9b2a-1c2d3e4f5a6",
            "",
        ] {
            assert_eq!(Uid::new(uid.into()).to_string(), uid);
        }
        assert!(matches!(
            Uid::new("5f0c1b8e-3a4f-4d7e-9b2a-1c2d3e4f5a6b".into()),
            Uid::Uuid(_)
        ));
        for version in [
            "0",
            "123456",
            "007",
            "+1",
            "18446744073709551616",
            "abc",
            "",
        ] {
            assert_eq!(Version::new(version.into()).to_string(), version);
        }
        assert_eq!(Version::new("123456".into()), Version::Number(123456));
    }

    #[test]
    fn interners_share_equal_values_and_forget_dropped_ones() {
        let interner = Interner::<String>::default();
        let a = interner.intern(1, "a".to_owned());
        assert!(Arc::ptr_eq(&a, &interner.intern(1, "a".to_owned())));
        let collided = interner.intern(1, "b".to_owned());
        assert_eq!(*collided, "b", "a collision never returns another value");
        drop((a, collided));
        let kept: Vec<Arc<String>> = (0..1000)
            .map(|i| interner.intern(i + 10, i.to_string()))
            .filter(|s| s.len() == 1)
            .collect();
        assert!(
            interner.len() < 200,
            "dead entries are pruned: {} left",
            interner.len()
        );
        assert_eq!(kept.len(), 10);
    }
}
