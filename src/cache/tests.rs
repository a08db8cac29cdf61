//! Tests of the cached objects and namespaces: what they keep and share, what the diff reads of
//! them, and which watch events are changes worth a reconcile.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::{Namespace, ResourceQuota};
use kube::api::PartialObjectMeta;
use serde_json::{Value, json};

use super::cached::Cached;
use super::encoding::{Uid, Version};
use super::namespace::CachedNamespace;
use super::*;
use crate::api::DeletionPolicy;
use crate::api::{SHARED_QUOTA_LABEL, TENANTRY_LABELS};
use crate::model::action::Action;
use crate::model::key::Owner;
use crate::model::kind::Kind;
use crate::model::object::{Desired, managed_labels};
use crate::pipeline::diff;
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
        crate::model::key::ObjectKey {
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
