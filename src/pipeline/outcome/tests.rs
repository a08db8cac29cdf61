use std::time::{Duration, Instant};

use kube::api::DynamicObject;
use serde_json::json;

use super::*;
use crate::api::MANAGED_BY_LABEL;
use crate::model::kind::Kind;
use crate::model::object::Live;

fn owner() -> Owner {
    Owner {
        name: "team".into(),
        uid: "uid-team".into(),
    }
}

fn quota(name: &str) -> Desired {
    let key = ObjectKey {
        kind: Kind::ResourceQuota,
        namespace: "mia".into(),
        name: name.into(),
    };
    Desired::of(key, json!({"hard": {"pods": "10"}}))
}

fn create(name: &str) -> Action {
    Action::Create {
        desired: quota(name),
        drift: None,
    }
}

/// An object of the name as the writer reads it: a quota with these labels and finalizers.
fn existing(name: &str, labels: serde_json::Value, finalizers: &[&str]) -> Found {
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ResourceQuota",
        "metadata": {"name": name, "namespace": "mia", "uid": "uid-q", "resourceVersion": "7",
                     "labels": labels, "finalizers": finalizers},
        "spec": {"hard": {"pods": "10"}},
    }))
    .unwrap();
    Found::Exists(Box::new(object))
}

fn api_error(code: u16, reason: &str, message: &str) -> Found {
    Found::Error(kube::Error::Api(Box::new(
        kube::core::Status::failure(message, reason).with_code(code),
    )))
}

fn reasons(outcomes: &[Outcome]) -> Vec<String> {
    outcomes
        .iter()
        .map(|o| match o {
            Outcome::Failed(f) => f.reason.as_str().to_owned(),
            other => format!("{other:?}")
                .split([' ', '(', '{'])
                .next()
                .unwrap()
                .to_owned(),
        })
        .collect()
}

#[test]
fn a_creation_found_taken_is_adopted_under_always_by_a_follow_up_patch() {
    let (owner, mut memory) = (owner(), NotOwned::new());
    let mut judging = Judging {
        adoption: AdoptionPolicy::Always,
        owner: &owner,
        memory: &mut memory,
        now: Instant::now(),
    };
    let executed = vec![(create("compute"), existing("compute", json!({}), &[]))];
    let (outcomes, follow_ups) = settle(executed, &mut judging);
    assert!(outcomes.is_empty());
    let [Action::Adopt { patch, changed, .. }] = follow_ups.as_slice() else {
        panic!("one adoption expected, got {follow_ups:?}");
    };
    assert!(changed.is_empty(), "already as declared");
    assert_eq!(patch["metadata"]["uid"], "uid-q");
    assert_eq!(patch["metadata"]["resourceVersion"], "7");
    // The patch, done, is the adoption.
    let done = vec![(follow_ups[0].clone(), Found::Done)];
    let (outcomes, more) = settle(done, &mut judging);
    assert!(more.is_empty());
    assert_eq!(reasons(&outcomes), ["Adopted"]);
}

#[test]
fn a_refused_adoption_is_reported_remembered_and_answered_from_memory_until_the_recheck() {
    let (owner, mut memory) = (owner(), NotOwned::new());
    let start = Instant::now();
    let mut judging = Judging {
        adoption: AdoptionPolicy::Never,
        owner: &owner,
        memory: &mut memory,
        now: start,
    };
    let executed = vec![(create("compute"), existing("compute", json!({}), &[]))];
    let (outcomes, follow_ups) = settle(executed, &mut judging);
    assert!(follow_ups.is_empty());
    assert_eq!(reasons(&outcomes), ["NotOwned"]);
    assert!(format!("{outcomes:?}").contains("adoptionPolicy Never"));
    // Soon after: answered from memory, nothing to execute.
    judging.now = start + Duration::from_secs(5);
    let (run, answered) = recall(vec![create("compute")], &judging);
    assert!(run.is_empty());
    assert_eq!(reasons(&answered), ["NotOwned"]);
    // Once the recheck is due: a look, not a blind POST.
    judging.now = start + NOT_OWNED_RECHECK;
    let (run, answered) = recall(vec![create("compute")], &judging);
    assert!(answered.is_empty());
    assert!(matches!(run.as_slice(), [Action::Inspect { .. }]));
    // A new adoptionPolicy is judged anew at once.
    judging.now = start + Duration::from_secs(1);
    judging.adoption = AdoptionPolicy::Always;
    let (run, _) = recall(vec![create("compute")], &judging);
    assert!(matches!(run.as_slice(), [Action::Inspect { .. }]));
}

#[test]
fn a_look_that_finds_the_object_gone_creates_it_and_forgets_it() {
    let (owner, mut memory) = (owner(), NotOwned::new());
    let now = Instant::now();
    memory.insert(
        quota("compute").key,
        NotOwnedEntry {
            checked: now - NOT_OWNED_RECHECK,
            adoption: AdoptionPolicy::Never,
            fingerprint: quota("compute").fingerprint,
            why: "adoptionPolicy Never".into(),
        },
    );
    let mut judging = Judging {
        adoption: AdoptionPolicy::Never,
        owner: &owner,
        memory: &mut memory,
        now,
    };
    let inspect = Action::Inspect {
        desired: quota("compute"),
        drift: None,
    };
    let (outcomes, follow_ups) = settle(vec![(inspect, Found::Absent)], &mut judging);
    assert!(outcomes.is_empty());
    assert!(matches!(follow_ups.as_slice(), [Action::Create { .. }]));
    assert!(judging.memory.is_empty());
}

#[test]
fn what_is_never_adopted_is_refused_whatever_the_policy() {
    let owner = owner();
    for (labels, finalizers, why) in [
        (json!({MANAGED_BY_LABEL: "tenantry"}), vec![], "Retry"),
        (json!({}), vec!["example.com/hold"], "finalizers"),
    ] {
        let mut memory = NotOwned::new();
        let mut judging = Judging {
            adoption: AdoptionPolicy::Always,
            owner: &owner,
            memory: &mut memory,
            now: Instant::now(),
        };
        let found = existing("compute", labels, &finalizers);
        let (outcomes, follow_ups) = settle(vec![(create("compute"), found)], &mut judging);
        assert!(follow_ups.is_empty());
        assert!(format!("{outcomes:?}").contains(why), "{outcomes:?}");
    }
}

#[test]
fn api_errors_become_retries_or_failures_and_a_fenced_write_is_retried() {
    let (owner, mut memory) = (owner(), NotOwned::new());
    let mut judging = Judging {
        adoption: AdoptionPolicy::Never,
        owner: &owner,
        memory: &mut memory,
        now: Instant::now(),
    };
    let release = Action::Release {
        live: Box::new(Live {
            key: quota("gone").key,
            uid: "u".into(),
            resource_version: "1".into(),
            labels: Default::default(),
            owner_references: vec![],
            spec: json!({}),
            foreign_manager: None,
            deleting: false,
        }),
        patch: json!({}),
    };
    let executed = vec![
        (
            create("a"),
            api_error(409, "Conflict", "the object has been modified"),
        ),
        (
            create("b"),
            api_error(403, "Forbidden", "namespace mia is being terminated"),
        ),
        (
            create("c"),
            api_error(422, "Invalid", "denied request: ValidatingAdmissionPolicy"),
        ),
        (create("d"), api_error(403, "Forbidden", "cannot create")),
        (
            create("e"),
            api_error(422, "Invalid", "spec.hard: Invalid value"),
        ),
        (create("f"), Found::Fenced),
        (release, api_error(404, "NotFound", "not found")),
    ];
    let (outcomes, _) = settle(executed, &mut judging);
    assert_eq!(
        reasons(&outcomes),
        [
            "Retry",
            "Retry",
            "AdmissionRefused",
            "Forbidden",
            "Invalid",
            "Retry",
            "Released"
        ]
    );
}

#[test]
fn follow_ups_left_after_the_last_round_are_retried() {
    assert_eq!(reasons(&give_up(vec![create("a")])), ["Retry"]);
}
