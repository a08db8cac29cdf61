//! The policy's status from what a reconcile found and did: kstatus-compatible conditions and the
//! counts. Pure; a condition's lastTransitionTime moves only when its status changes, so an
//! unchanged outcome yields an unchanged status (and no write).

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::{
    Failure, FailureReason, SharedQuotaStatus, StorageClassState, TenantPolicyStatus,
};
use crate::pipeline::message;
use crate::pipeline::select::{Shadowed, ShadowedClass};

/// At most this many failures are listed in status.
pub const MAX_FAILURES: usize = 20;

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";

/// What one reconcile found and did, as status reads it.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub generation: Option<i64>,
    pub selected: BTreeSet<String>,
    pub failures: Vec<Failure>,
    /// Namespaces where something is still in progress (an object being deleted by someone else).
    pub waiting: BTreeSet<String>,
    pub shadowed: Vec<Shadowed>,
    /// StorageClasses this policy declares that another policy owns.
    pub shadowed_classes: Vec<ShadowedClass>,
    /// State of each StorageClass this policy declares.
    pub storage_classes: Vec<StorageClassState>,
    /// Set when the spec cannot be applied at all.
    pub invalid_spec: Option<String>,
    /// State of each shared budget.
    pub shared_quotas: Vec<SharedQuotaStatus>,
}

fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) -> Condition {
    Condition {
        type_: type_.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    }
}

/// Computes the status; `previous` supplies lastTransitionTime for conditions whose status holds.
pub fn compute(
    summary: &Summary,
    previous: Option<&TenantPolicyStatus>,
    now: Time,
) -> TenantPolicyStatus {
    let mut failures = summary.failures.clone();
    failures.sort();
    failures.dedup();
    // Cluster-scoped objects (StorageClasses) fail outside any namespace.
    let failed_namespaces: BTreeSet<String> = failures
        .iter()
        .filter(|f| !f.namespace.is_empty())
        .map(|f| f.namespace.clone())
        .collect();
    let selected = summary.selected.len();
    let ready = summary
        .selected
        .iter()
        .filter(|ns| !failed_namespaces.contains(*ns) && !summary.waiting.contains(*ns))
        .count();
    let shadowed_namespaces: BTreeSet<&str> = summary
        .shadowed
        .iter()
        .map(|s| s.namespace.as_str())
        .collect();
    let mut in_policy = format!("{ready}/{selected} namespaces in policy");
    for budget in &summary.shared_quotas {
        in_policy.push_str(&message::budget(budget));
    }
    let g = summary.generation;
    let conditions = conditions(summary, &failures, &in_policy)
        .into_iter()
        .map(|mut c| {
            let before =
                previous.and_then(|p| p.conditions.iter().find(|old| old.type_ == c.type_));
            c.last_transition_time = match before {
                Some(old) if old.status == c.status => old.last_transition_time.clone(),
                _ => now.clone(),
            };
            c
        })
        .collect();

    failures.truncate(MAX_FAILURES);
    TenantPolicyStatus {
        observed_generation: g,
        conditions,
        selected_namespaces: selected as i32,
        ready_namespaces: ready as i32,
        failed_namespaces: failed_namespaces.len() as i32,
        shadowed_namespaces: shadowed_namespaces.len() as i32,
        failures,
        // A spec that cannot be applied touches nothing: the classes are as they were.
        storage_classes: if summary.invalid_spec.is_some() {
            previous
                .map(|p| p.storage_classes.clone())
                .unwrap_or_default()
        } else {
            summary.storage_classes.clone()
        },
        shared_quotas: if summary.invalid_spec.is_some() {
            previous
                .map(|p| p.shared_quotas.clone())
                .unwrap_or_default()
        } else {
            summary.shared_quotas.clone()
        },
    }
}

/// Ready, Reconciling and Stalled for what the summary says (before transition times).
fn conditions(summary: &Summary, failures: &[Failure], in_policy: &str) -> Vec<Condition> {
    let g = summary.generation;
    if let Some(problem) = &summary.invalid_spec {
        vec![
            condition(READY, false, "InvalidSpec", problem, g),
            condition(RECONCILING, false, "InvalidSpec", problem, g),
            condition(STALLED, true, "InvalidSpec", problem, g),
        ]
    } else if !failures.is_empty() {
        failed(failures, in_policy, g)
    } else if !summary.waiting.is_empty() {
        let message = format!(
            "{in_policy}; waiting for objects being deleted in {} namespaces",
            summary.waiting.len()
        );
        vec![
            condition(READY, false, "Progressing", &message, g),
            condition(RECONCILING, true, "Progressing", &message, g),
            condition(STALLED, false, "Progressing", &message, g),
        ]
    } else {
        let mut text = in_policy.to_owned();
        if !summary.shadowed.is_empty() {
            text.push_str("; ");
            text.push_str(&message::shadowed(&summary.shadowed));
        }
        if !summary.shadowed_classes.is_empty() {
            text.push_str("; ");
            text.push_str(&message::shadowed_classes(&summary.shadowed_classes));
        }
        let shadowed = !summary.shadowed.is_empty() || !summary.shadowed_classes.is_empty();
        let reason = if shadowed { "Shadowed" } else { "Reconciled" };
        vec![
            condition(READY, true, reason, &text, g),
            condition(RECONCILING, false, reason, &text, g),
            condition(STALLED, false, reason, &text, g),
        ]
    }
}

/// The conditions when some objects failed: Stalled when every failure needs a person.
fn failed(failures: &[Failure], in_policy: &str, g: Option<i64>) -> Vec<Condition> {
    let terminal = failures.iter().all(|f| f.reason.is_terminal());
    let reason = if terminal {
        failures[0].reason
    } else {
        FailureReason::ApplyFailed
    };
    let first = &failures[0];
    let more = if failures.len() > 1 {
        format!(" (and {} more)", failures.len() - 1)
    } else {
        String::new()
    };
    let message = format!(
        "{in_policy}; {} failed: {}: {}{more}",
        failures.len(),
        first.object(),
        first.message
    );
    vec![
        condition(READY, false, reason.as_str(), &message, g),
        condition(
            RECONCILING,
            !terminal,
            if terminal { "Stalled" } else { "Retrying" },
            &message,
            g,
        ),
        condition(STALLED, terminal, reason.as_str(), &message, g),
    ]
}

/// The state of each declared StorageClass: Shadowed (another policy owns it), NotOwned (a class
/// of that name exists without Tenantry's labels), Failed, Progressing (being recreated or
/// waited for), or Ready.
pub fn class_states(
    declared: &[String],
    shadowed: &[ShadowedClass],
    failures: &[Failure],
    pending: &BTreeSet<String>,
) -> Vec<StorageClassState> {
    declared
        .iter()
        .map(|name| {
            let failure = failures
                .iter()
                .find(|f| f.namespace.is_empty() && f.kind == "StorageClass" && f.name == *name);
            let state = if shadowed.iter().any(|s| s.name == *name) {
                "Shadowed"
            } else if let Some(f) = failure {
                if f.reason == FailureReason::NotOwned {
                    "NotOwned"
                } else {
                    "Failed"
                }
            } else if pending.contains(name) {
                "Progressing"
            } else {
                "Ready"
            };
            StorageClassState {
                name: name.clone(),
                state: state.into(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kind::Section;

    fn at(seconds: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap())
    }

    fn selected(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn get<'a>(s: &'a TenantPolicyStatus, t: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn all_converged_is_ready_and_a_repeat_changes_nothing() {
        let summary = Summary {
            generation: Some(3),
            selected: selected(&["a", "b"]),
            ..Default::default()
        };
        let first = compute(&summary, None, at(100));
        assert_eq!(
            (
                first.selected_namespaces,
                first.ready_namespaces,
                first.failed_namespaces
            ),
            (2, 2, 0)
        );
        let ready = get(&first, READY);
        assert_eq!(
            (
                ready.status.as_str(),
                ready.reason.as_str(),
                ready.message.as_str()
            ),
            ("True", "Reconciled", "2/2 namespaces in policy")
        );
        assert_eq!(ready.observed_generation, Some(3));
        assert_eq!(get(&first, STALLED).status, "False");
        assert_eq!(
            compute(&summary, Some(&first), at(200)),
            first,
            "no timestamps move when nothing changed"
        );
    }

    #[test]
    fn not_owned_objects_stall_the_policy_and_are_listed() {
        let failure = Failure {
            namespace: "b".into(),
            kind: "LimitRange".into(),
            name: "defaults".into(),
            reason: FailureReason::NotOwned,
            message: "exists and is not managed by Tenantry".into(),
        };
        let summary = Summary {
            generation: Some(1),
            selected: selected(&["a", "b"]),
            failures: vec![failure.clone()],
            ..Default::default()
        };
        let status = compute(&summary, None, at(1));
        assert_eq!((status.ready_namespaces, status.failed_namespaces), (1, 1));
        assert_eq!(get(&status, READY).status, "False");
        assert_eq!(get(&status, READY).reason, "NotOwned");
        assert_eq!(get(&status, STALLED).status, "True");
        assert_eq!(status.failures, vec![failure]);
        assert!(
            get(&status, READY)
                .message
                .starts_with("1/2 namespaces in policy; 1 failed: b/LimitRange/defaults")
        );
    }

    #[test]
    fn transient_failures_keep_reconciling_and_failures_are_bounded() {
        let failures = (0..30)
            .map(|i| Failure {
                namespace: format!("ns{i:02}"),
                kind: "ResourceQuota".into(),
                name: "q".into(),
                reason: FailureReason::ApplyFailed,
                message: "timeout".into(),
            })
            .collect();
        let summary = Summary {
            selected: (0..30).map(|i| format!("ns{i:02}")).collect(),
            failures,
            ..Default::default()
        };
        let status = compute(&summary, None, at(1));
        assert_eq!(status.failures.len(), MAX_FAILURES);
        assert_eq!(status.failed_namespaces, 30);
        assert_eq!(get(&status, RECONCILING).status, "True");
        assert_eq!(get(&status, STALLED).status, "False");
    }

    #[test]
    fn shadowed_kinds_are_counted_and_named() {
        let summary = Summary {
            selected: selected(&["a"]),
            shadowed: vec![Shadowed {
                namespace: "a".into(),
                section: Section::LimitRanges,
                winner: "platform".into(),
            }],
            ..Default::default()
        };
        let status = compute(&summary, None, at(1));
        assert_eq!(status.shadowed_namespaces, 1);
        let ready = get(&status, READY);
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", "Shadowed")
        );
        assert!(ready.message.contains("platform"), "{}", ready.message);
    }

    #[test]
    fn invalid_spec_stalls() {
        let summary = Summary {
            invalid_spec: Some("spec.namespaceSelector: bad".into()),
            ..Default::default()
        };
        let status = compute(&summary, None, at(5));
        assert_eq!(get(&status, STALLED).reason, "InvalidSpec");
        assert_eq!(get(&status, READY).status, "False");
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let ok = Summary {
            selected: selected(&["a"]),
            ..Default::default()
        };
        let first = compute(&ok, None, at(10));
        let broken = Summary {
            invalid_spec: Some("x".into()),
            ..ok.clone()
        };
        let second = compute(&broken, Some(&first), at(20));
        assert_eq!(get(&second, READY).last_transition_time, at(20));
        let third = compute(&ok, Some(&second), at(30));
        assert_eq!(get(&third, READY).last_transition_time, at(30));
    }
}
