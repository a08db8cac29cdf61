//! The storage section's ResourceQuota in each namespace where the policy wins that section: every
//! StorageClass of the cluster outside `allowedClasses` capped at zero, and the per-class caps of
//! `quotas`. One object (named [`NAME`]) holds both, because both are "which classes, how much":
//! a namespace's storage rules read in one place, and one object is created per namespace, not two.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::api::StorageSpec;

/// Name of the storage section's ResourceQuota; reserved (a policy's `resourceQuotas` cannot use it).
pub const NAME: &str = "tenantry-storage";

/// The quota key for one resource of one class.
pub fn key(class: &str, resource: &str) -> String {
    format!("{class}.storageclass.storage.k8s.io/{resource}")
}

/// The quota's spec, given the names of the cluster's StorageClasses; `None` when there is nothing
/// to cap (no other class exists and no per-class quota is set).
pub fn build(storage: &StorageSpec, cluster_classes: &BTreeSet<String>) -> Option<Value> {
    let mut hard: BTreeMap<String, String> = BTreeMap::new();
    if let Some(allowed) = &storage.allowed_classes {
        for class in cluster_classes.iter().filter(|c| !allowed.contains(c)) {
            hard.insert(key(class, "requests.storage"), "0".into());
            hard.insert(key(class, "persistentvolumeclaims"), "0".into());
        }
    }
    for (class, caps) in &storage.quotas {
        if let Some(q) = &caps.requests_storage {
            hard.insert(key(class, "requests.storage"), q.0.clone());
        }
        if let Some(q) = &caps.persistent_volume_claims {
            hard.insert(key(class, "persistentvolumeclaims"), q.0.clone());
        }
    }
    (!hard.is_empty()).then(|| json!({ "hard": hard }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn every_class_outside_the_allow_list_is_capped_at_zero_and_quotas_are_added() {
        let storage: StorageSpec = serde_json::from_value(json!({
            "allowedClasses": ["fast"],
            "quotas": {"fast": {"requests.storage": "100Gi", "persistentvolumeclaims": "10"}}
        }))
        .unwrap();
        let spec = build(&storage, &classes(&["fast", "slow", "standard"])).unwrap();
        assert_eq!(
            spec,
            json!({"hard": {
                "fast.storageclass.storage.k8s.io/persistentvolumeclaims": "10",
                "fast.storageclass.storage.k8s.io/requests.storage": "100Gi",
                "slow.storageclass.storage.k8s.io/persistentvolumeclaims": "0",
                "slow.storageclass.storage.k8s.io/requests.storage": "0",
                "standard.storageclass.storage.k8s.io/persistentvolumeclaims": "0",
                "standard.storageclass.storage.k8s.io/requests.storage": "0",
            }})
        );
    }

    #[test]
    fn nothing_to_cap_builds_nothing_and_no_allow_list_caps_nothing() {
        let allow_all_there_is: StorageSpec =
            serde_json::from_value(json!({"allowedClasses": ["fast"]})).unwrap();
        assert_eq!(build(&allow_all_there_is, &classes(&["fast"])), None);
        let quotas_only: StorageSpec =
            serde_json::from_value(json!({"quotas": {"fast": {"persistentvolumeclaims": "1"}}}))
                .unwrap();
        assert_eq!(
            build(&quotas_only, &classes(&["fast", "slow"])).unwrap(),
            json!({"hard": {"fast.storageclass.storage.k8s.io/persistentvolumeclaims": "1"}})
        );
    }
}
