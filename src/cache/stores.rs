//! The caches every reconcile reads, and how the diff looks objects up in them.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{LimitRange, ResourceQuota};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::runtime::reflector::{ObjectRef, Store};

use std::sync::Arc;

use super::Guarded;
use super::cached::Cached;
use super::namespace::CachedNamespace;
use super::refusals::Refusals;
use crate::api::{POLICY_LABEL, is_managed};
use crate::model::key::{ObjectKey, Owner};
use crate::model::kind::Kind;
use crate::model::live::LiveIndex;
use crate::model::object::{Live, ManagedResource, live_of_class};
use crate::model::quantity::Amounts;

#[derive(Clone)]
pub struct Stores {
    pub policies: Store<Guarded>,
    pub namespaces: Store<CachedNamespace>,
    pub limit_ranges: Store<Cached<LimitRange>>,
    pub quotas: Store<Cached<ResourceQuota>>,
    pub pdbs: Store<Cached<PodDisruptionBudget>>,
    /// Every StorageClass of the cluster (few): the allow-list caps those not allowed.
    pub storage_classes: Store<StorageClass>,
    /// Requests quota admission refused lately, as controllers reported them.
    pub refusals: Arc<Refusals>,
}

/// The class cache holds every class; only those labelled managed-by=tenantry are ours.
fn is_tenantry_class(class: &StorageClass) -> bool {
    class.metadata.labels.as_ref().is_some_and(is_managed)
}

/// The caches as the diff sees them: lookups by key, no copy of the whole cache.
impl LiveIndex for Stores {
    fn get(&self, key: &ObjectKey) -> Option<Live> {
        fn lookup<K: ManagedResource>(store: &Store<Cached<K>>, key: &ObjectKey) -> Option<Live> {
            store
                .get(&ObjectRef::new(&key.name).within(&key.namespace))
                .map(|o| o.to_live())
        }
        match key.kind {
            Kind::LimitRange => lookup(&self.limit_ranges, key),
            Kind::ResourceQuota => lookup(&self.quotas, key),
            Kind::PodDisruptionBudget => lookup(&self.pdbs, key),
            Kind::StorageClass => self
                .storage_classes
                .get(&ObjectRef::new(&key.name))
                .filter(|c| is_tenantry_class(c))
                .map(|c| live_of_class(c.as_ref())),
        }
    }

    fn labelled_for(
        &self,
        policy: &str,
        keep: &dyn Fn(Kind, &str, &str) -> bool,
    ) -> Vec<ObjectKey> {
        let mut keys = Vec::new();
        labelled_keys(&self.limit_ranges, policy, keep, &mut keys);
        labelled_keys(&self.quotas, policy, keep, &mut keys);
        labelled_keys(&self.pdbs, policy, keep, &mut keys);
        for class in self.storage_classes.state() {
            let name = class.metadata.name.as_deref().unwrap_or_default();
            let labels = class.metadata.labels.as_ref();
            if labels.and_then(|l| l.get(POLICY_LABEL)).map(String::as_str) == Some(policy)
                && is_tenantry_class(&class)
                && keep(Kind::StorageClass, "", name)
            {
                keys.push(ObjectKey {
                    kind: Kind::StorageClass,
                    namespace: String::new(),
                    name: name.to_owned(),
                });
            }
        }
        keys
    }

    fn refused(&self, key: &ObjectKey) -> Amounts {
        let used = (self.quota_status(key))
            .and_then(|s| serde_json::from_value(s.get("used")?.clone()).ok())
            .and_then(|u| crate::pipeline::allocator::amounts(&u).ok())
            .unwrap_or_default();
        let now = std::time::Instant::now();
        self.refusals.pending(&key.namespace, &key.name, &used, now)
    }

    fn quota_status(&self, key: &ObjectKey) -> Option<serde_json::Value> {
        if key.kind != Kind::ResourceQuota {
            return None;
        }
        let quota = self
            .quotas
            .get(&ObjectRef::new(&key.name).within(&key.namespace))?;
        quota.status.as_deref().cloned()
    }

    fn last_charged(&self, key: &ObjectKey) -> Option<std::time::Instant> {
        if key.kind != Kind::ResourceQuota {
            return None;
        }
        let quota = self
            .quotas
            .get(&ObjectRef::new(&key.name).within(&key.namespace))?;
        quota.last_charged
    }

    fn converged(&self, key: &ObjectKey, owner: &Owner, fingerprint: u64) -> Option<bool> {
        fn check<K: ManagedResource>(
            store: &Store<Cached<K>>,
            key: &ObjectKey,
            owner: &Owner,
            fingerprint: u64,
        ) -> Option<bool> {
            let object = store.get(&ObjectRef::new(&key.name).within(&key.namespace))?;
            Some(object.converged(owner, fingerprint))
        }
        match key.kind {
            Kind::LimitRange => check(&self.limit_ranges, key, owner, fingerprint),
            Kind::ResourceQuota => check(&self.quotas, key, owner, fingerprint),
            Kind::PodDisruptionBudget => check(&self.pdbs, key, owner, fingerprint),
            // Few, compared in full.
            Kind::StorageClass => None,
        }
    }
}

impl Stores {
    /// Names of the cluster's StorageClasses (those not being deleted).
    pub fn cluster_classes(&self) -> BTreeSet<String> {
        self.storage_classes
            .state()
            .iter()
            .filter(|c| c.metadata.deletion_timestamp.is_none())
            .filter_map(|c| c.metadata.name.clone())
            .collect()
    }

    /// How many objects of each kind Tenantry manages (for the `tenantry_managed_objects` gauge).
    pub fn managed_counts(&self) -> [(Kind, usize); 4] {
        let classes = self
            .storage_classes
            .state()
            .iter()
            .filter(|c| is_tenantry_class(c))
            .count();
        [
            (Kind::LimitRange, self.limit_ranges.len()),
            (Kind::ResourceQuota, self.quotas.len()),
            (Kind::PodDisruptionBudget, self.pdbs.len()),
            (Kind::StorageClass, classes),
        ]
    }
}

fn labelled_keys<K: ManagedResource>(
    store: &Store<Cached<K>>,
    policy: &str,
    keep: &dyn Fn(Kind, &str, &str) -> bool,
    out: &mut Vec<ObjectKey>,
) {
    for object in store.state() {
        if object.policy() == Some(policy) && keep(K::KIND, &object.namespace, &object.name) {
            out.push(object.key());
        }
    }
}
