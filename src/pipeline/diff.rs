//! Desired against live: the writes that make a policy's objects exactly as declared, and nothing
//! when they already are. Pure.

use std::collections::HashSet;

use serde_json::{Map, Value, json};

use crate::api::{DeletionPolicy, MANAGED_BY_LABEL, POLICY_LABEL};
use crate::model::action::Action;
use crate::model::action::Drift;
use crate::model::key::{ObjectKey, Owner, controlled_by, foreign_controller};
use crate::model::kind::Kind;
use crate::model::live::LiveIndex;
use crate::model::normalize;
use crate::model::object::{Desired, Live};
use crate::pipeline::build::storage_class;

/// The writes for one policy, and what needs none.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Diff {
    pub actions: Vec<Action>,
    /// Desired objects already exactly as declared (key fingerprints).
    pub converged: Vec<u64>,
    /// Desired objects that are being deleted by someone else: wait for them to go.
    pub waiting: Vec<ObjectKey>,
}

/// Computes the writes for `owner`.
///
/// `live` finds the Tenantry-managed objects; `handed_over` tells, of the objects the policy
/// holds and does not want, those the winning policy wants under the same name (left for it to
/// take: [`crate::pipeline::select::handed_over`]); `known_converged` are fingerprints of keys seen
/// converged at this generation, so a change to them is drift.
pub fn compute<L: LiveIndex + ?Sized>(
    owner: &Owner,
    desired: &[Desired],
    live: &L,
    handed_over: &dyn Fn(&ObjectKey) -> bool,
    deletion_policy: DeletionPolicy,
    known_converged: &HashSet<u64>,
) -> Diff {
    let mut plan = Diff::default();
    for d in desired {
        // A shared budget's part (extra labels) is resized by Tenantry itself at every
        // rebalance, so only a change by another writer, or its deletion, is drift there.
        let resized_by_tenantry = d.labels.is_some();
        let drift = |l: Option<&Live>| {
            let changed_by = l.and_then(|l| l.foreign_manager.clone());
            let seen_converged = known_converged.contains(&d.key.fingerprint());
            let changed = seen_converged && (l.is_none() || !resized_by_tenantry);
            (changed || changed_by.is_some()).then(|| {
                Box::new(Drift {
                    changed_by,
                    deleted: l.is_none(),
                })
            })
        };
        if d.labels.is_none() && live.converged(&d.key, owner, d.fingerprint) == Some(true) {
            plan.converged.push(d.key.fingerprint());
            continue;
        }
        match live.get(&d.key) {
            None => plan.actions.push(Action::Create {
                desired: d.clone(),
                drift: drift(None),
            }),
            Some(l) if l.deleting => plan.waiting.push(d.key.clone()),
            Some(l) if d.key.kind == Kind::StorageClass && !immutable_changes(d, &l).is_empty() => {
                let changed = immutable_changes(d, &l);
                plan.actions.push(Action::Recreate {
                    desired: d.clone(),
                    live: Box::new(l),
                    changed,
                })
            }
            Some(l) => match compare(d, &l, owner) {
                Comparison::Converged => plan.converged.push(d.key.fingerprint()),
                Comparison::NeedsApply => plan.actions.push(Action::Apply {
                    desired: d.clone(),
                    uid: l.uid.clone(),
                    drift: drift(Some(&l)),
                }),
                Comparison::NeedsReplace => plan.actions.push(Action::Replace {
                    desired: d.clone(),
                    patch: replace_patch(d, &l, owner),
                    drift: drift(Some(&l)),
                }),
            },
        }
    }
    // Borrowed keys: no allocation per managed object.
    let wanted: HashSet<(Kind, &str, &str)> = desired.iter().map(|d| borrowed(&d.key)).collect();
    let unwanted = live.labelled_for(&owner.name, &|kind, namespace, name| {
        !wanted.contains(&(kind, namespace, name))
    });
    let unwanted = unwanted.into_iter().filter(|k| !handed_over(k));
    for l in unwanted.filter_map(|k| live.get(&k)) {
        if l.is_owned_by(owner) && !l.deleting {
            plan.actions.push(match deletion_policy {
                DeletionPolicy::Delete => Action::Delete { live: Box::new(l) },
                DeletionPolicy::Retain => {
                    let patch = release_patch(&l, owner);
                    Action::Release {
                        live: Box::new(l),
                        patch,
                    }
                }
            });
        }
    }
    plan
}

/// Every object this policy owns released (Retain) or left to garbage collection (Delete), for
/// the policy's deletion.
fn borrowed(key: &ObjectKey) -> (Kind, &str, &str) {
    (key.kind, key.namespace.as_str(), key.name.as_str())
}

pub fn release_all<L: LiveIndex + ?Sized>(owner: &Owner, live: &L) -> Vec<Action> {
    live.labelled_for(&owner.name, &|_, _, _| true)
        .into_iter()
        .filter_map(|k| live.get(&k))
        .filter(|l| l.is_owned_by(owner) && !l.deleting)
        .map(|l| {
            let patch = release_patch(&l, owner);
            Action::Release {
                live: Box::new(l),
                patch,
            }
        })
        .collect()
}

fn immutable_changes(d: &Desired, l: &Live) -> Vec<&'static str> {
    storage_class::immutable_changes(&d.normalized, &normalize::storage_class(&l.spec))
}

#[derive(Debug, PartialEq, Eq)]
enum Comparison {
    Converged,
    NeedsApply,
    NeedsReplace,
}

fn compare(d: &Desired, l: &Live, owner: &Owner) -> Comparison {
    let want = d.normalized.as_ref();
    let have = &d.key.kind.normalize(&l.spec);
    let labels_ok = d
        .all_labels(owner)
        .iter()
        .all(|(k, v)| l.labels.get(k) == Some(v));
    let ours = controlled_by(&l.owner_references, owner);
    let other_controller = foreign_controller(&l.owner_references, owner).is_some();
    if want == have && labels_ok && ours && !other_controller {
        Comparison::Converged
    } else if other_controller || has_fields_beyond(have, want) {
        Comparison::NeedsReplace
    } else {
        Comparison::NeedsApply
    }
}

/// True when `live` holds an object field that `desired` does not (lists count as one value).
fn has_fields_beyond(live: &Value, desired: &Value) -> bool {
    match (live, desired) {
        (Value::Object(l), Value::Object(d)) => l
            .iter()
            .any(|(k, lv)| d.get(k).is_none_or(|dv| has_fields_beyond(lv, dv))),
        _ => false,
    }
}

/// RFC 7386 merge patch turning `from` into `to`.
pub fn merge_patch(from: &Value, to: &Value) -> Value {
    match (from, to) {
        (Value::Object(f), Value::Object(t)) => {
            let mut patch = Map::new();
            for k in f.keys().filter(|k| !t.contains_key(*k)) {
                patch.insert(k.clone(), Value::Null);
            }
            for (k, tv) in t {
                match f.get(k) {
                    Some(fv) if fv == tv => {}
                    Some(fv @ Value::Object(_)) if tv.is_object() => {
                        patch.insert(k.clone(), merge_patch(fv, tv));
                    }
                    _ => {
                        patch.insert(k.clone(), tv.clone());
                    }
                }
            }
            Value::Object(patch)
        }
        _ => to.clone(),
    }
}

/// The live object's ownerReferences with its controller reference, whoever it names, replaced
/// by `owner`'s (the others kept): for patches that take an object over.
pub fn with_owner_as_controller(live: &Live, owner: &Owner) -> Vec<Value> {
    let mut references: Vec<Value> = live
        .owner_references
        .iter()
        .filter(|r| r.controller != Some(true))
        .map(|r| serde_json::to_value(r).expect("serializes"))
        .collect();
    references.push(serde_json::to_value(owner.owner_reference()).expect("serializes"));
    references
}

fn replace_patch(d: &Desired, l: &Live, owner: &Owner) -> Value {
    let references = with_owner_as_controller(l, owner);
    let mut patch = json!({
        "metadata": {
            "resourceVersion": l.resource_version,
            "labels": d.all_labels(owner),
            "ownerReferences": references,
        },
    });
    crate::model::object::place_spec(&mut patch, d.key.kind, spec_patch(d, &l.spec));
    patch
}

/// The merge patch from a live spec to the desired one. A class is compared with the API
/// server's defaults filled in: patching from its raw form would null a defaulted immutable
/// field (reclaimPolicy) that the policy leaves unset.
pub fn spec_patch(d: &Desired, live_spec: &Value) -> Value {
    if d.key.kind.fields_at_top_level() {
        merge_patch(&d.key.kind.normalize(live_spec), &d.normalized)
    } else {
        merge_patch(live_spec, &d.spec)
    }
}

fn release_patch(l: &Live, owner: &Owner) -> Value {
    let references: Vec<Value> = l
        .owner_references
        .iter()
        .filter(|r| r.uid != owner.uid)
        .map(|r| serde_json::to_value(r).expect("serializes"))
        .collect();
    json!({
        "metadata": {
            "resourceVersion": l.resource_version,
            "labels": {MANAGED_BY_LABEL: null, POLICY_LABEL: null},
            "ownerReferences": references,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::SHARED_QUOTA_LABEL;
    use crate::model::object::managed_labels;
    use std::collections::BTreeMap;

    fn owner() -> Owner {
        Owner {
            name: "team".into(),
            uid: "uid-1".into(),
        }
    }

    fn key(ns: &str) -> ObjectKey {
        ObjectKey {
            kind: Kind::ResourceQuota,
            namespace: ns.into(),
            name: "compute".into(),
        }
    }

    fn desired(ns: &str, hard: Value) -> Desired {
        Desired::of(key(ns), json!({"hard": hard}))
    }

    fn live(ns: &str, hard: Value, owner: &Owner) -> Live {
        Live {
            key: key(ns),
            uid: format!("live-{ns}"),
            resource_version: "7".into(),
            labels: managed_labels(&owner.name),
            owner_references: vec![owner.owner_reference()],
            spec: json!({"hard": hard}),
            foreign_manager: None,
            deleting: false,
        }
    }

    fn run(desired: &[Desired], live: &[Live]) -> Diff {
        compute(
            &owner(),
            desired,
            live,
            &|_| false,
            DeletionPolicy::Delete,
            &HashSet::new(),
        )
    }

    #[test]
    fn semantically_equal_objects_need_no_write() {
        let p = run(
            &[desired("a", json!({"cpu": "1", "memory": "1Gi"}))],
            &[live(
                "a",
                json!({"cpu": "1000m", "memory": "1024Mi"}),
                &owner(),
            )],
        );
        assert!(p.actions.is_empty(), "{p:?}");
        assert_eq!(p.converged, vec![key("a").fingerprint()]);
    }

    #[test]
    fn missing_objects_are_created_changed_ones_applied_with_their_uid() {
        let p = run(
            &[
                desired("a", json!({"cpu": "1"})),
                desired("b", json!({"cpu": "2"})),
            ],
            &[live("b", json!({"cpu": "3"}), &owner())],
        );
        assert!(
            matches!(&p.actions[0], Action::Create { desired, drift: None } if desired.key == key("a"))
        );
        assert!(matches!(&p.actions[1], Action::Apply { uid, .. } if uid == "live-b"));
    }

    #[test]
    fn extra_fields_are_removed_by_a_guarded_merge_patch() {
        let p = run(
            &[desired("a", json!({"cpu": "1"}))],
            &[live("a", json!({"cpu": "1", "pods": "5"}), &owner())],
        );
        let Action::Replace { patch, .. } = &p.actions[0] else {
            panic!("{p:?}")
        };
        assert_eq!(patch["spec"], json!({"hard": {"pods": null}}));
        assert_eq!(patch["metadata"]["resourceVersion"], json!("7"));
    }

    #[test]
    fn objects_of_another_policy_are_adopted_with_its_controller_reference_replaced() {
        let other = Owner {
            name: "old".into(),
            uid: "uid-old".into(),
        };
        let p = run(
            &[desired("a", json!({"cpu": "1"}))],
            &[live("a", json!({"cpu": "1"}), &other)],
        );
        let Action::Replace { patch, .. } = &p.actions[0] else {
            panic!("{p:?}")
        };
        assert_eq!(
            patch["metadata"]["ownerReferences"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            patch["metadata"]["ownerReferences"][0]["uid"],
            json!("uid-1")
        );
        assert_eq!(patch["metadata"]["labels"][POLICY_LABEL], json!("team"));
    }

    #[test]
    fn unwanted_objects_follow_the_deletion_policy_and_handed_over_ones_stay() {
        let stale = live("gone", json!({"cpu": "1"}), &owner());
        let p = run(&[], std::slice::from_ref(&stale));
        assert!(matches!(&p.actions[..], [Action::Delete { .. }]));

        let retained = compute(
            &owner(),
            &[],
            std::slice::from_ref(&stale),
            &|_| false,
            DeletionPolicy::Retain,
            &HashSet::new(),
        );
        let [Action::Release { patch, .. }] = &retained.actions[..] else {
            panic!("{retained:?}")
        };
        assert_eq!(
            patch["metadata"]["labels"],
            json!({MANAGED_BY_LABEL: null, POLICY_LABEL: null})
        );
        assert_eq!(patch["metadata"]["ownerReferences"], json!([]));

        let handed = compute(
            &owner(),
            &[],
            std::slice::from_ref(&stale),
            &|k| *k == key("gone"),
            DeletionPolicy::Delete,
            &HashSet::new(),
        );
        assert!(handed.actions.is_empty());
    }

    #[test]
    fn objects_of_other_policies_are_never_pruned() {
        let other = Owner {
            name: "other".into(),
            uid: "uid-2".into(),
        };
        assert!(run(&[], &[live("x", json!({}), &other)]).actions.is_empty());
    }

    #[test]
    fn changes_to_converged_objects_are_drift_naming_the_manager() {
        let mut edited = live("a", json!({"cpu": "9"}), &owner());
        edited.foreign_manager = Some("kubectl-edit".into());
        let p = run(
            &[
                desired("a", json!({"cpu": "1"})),
                desired("b", json!({"cpu": "1"})),
            ],
            &[edited],
        );
        assert_eq!(
            p.actions[0].drift(),
            Some(&Drift {
                changed_by: Some("kubectl-edit".into()),
                deleted: false
            })
        );
        assert_eq!(
            p.actions[1].drift(),
            None,
            "never seen converged: a first creation"
        );

        let known = HashSet::from([key("b").fingerprint()]);
        let p = compute(
            &owner(),
            &[desired("b", json!({"cpu": "1"}))],
            &[][..],
            &|_| false,
            DeletionPolicy::Delete,
            &known,
        );
        assert_eq!(
            p.actions[0].drift(),
            Some(&Drift {
                changed_by: None,
                deleted: true
            })
        );
    }

    #[test]
    fn a_shared_part_resized_by_tenantry_is_no_drift_but_another_writers_change_is() {
        let part = |hard: Value| {
            let labels = BTreeMap::from([(SHARED_QUOTA_LABEL.to_owned(), "budget".to_owned())]);
            desired("a", hard).with_labels(labels)
        };
        let mut live_part = live("a", json!({"pods": "5"}), &owner());
        live_part
            .labels
            .insert(SHARED_QUOTA_LABEL.into(), "budget".into());
        let known = HashSet::from([key("a").fingerprint()]);
        let diff = |live: &[Live]| {
            let wanted = [part(json!({"pods": "7"}))];
            compute(
                &owner(),
                &wanted,
                live,
                &|_| false,
                DeletionPolicy::Delete,
                &known,
            )
        };
        let p = diff(std::slice::from_ref(&live_part));
        assert_eq!(p.actions.len(), 1);
        assert_eq!(p.actions[0].drift(), None, "a rebalance, not drift");
        live_part.foreign_manager = Some("kubectl-edit".into());
        let p = diff(std::slice::from_ref(&live_part));
        assert_eq!(
            p.actions[0].drift().and_then(|d| d.changed_by.as_deref()),
            Some("kubectl-edit")
        );
        let p = diff(&[]);
        assert!(p.actions[0].drift().is_some_and(|d| d.deleted), "deleted");
    }

    #[test]
    fn merge_patch_round_trips() {
        let from = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1]});
        let to = json!({"b": {"c": 2, "d": 4}, "e": [2], "f": "x"});
        assert_eq!(
            merge_patch(&from, &to),
            json!({"a": null, "b": {"d": 4}, "e": [2], "f": "x"})
        );
    }
}
