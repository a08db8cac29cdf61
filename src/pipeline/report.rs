//! What a reconcile's outcomes mean: the summary that status is computed from, the Events to
//! publish (as data: one summary per kind of happening, never one per object, so their number
//! does not grow with the number of namespaces), and when to look at the policy again. Pure.

use std::collections::{BTreeSet, HashSet};

use crate::api::{FailureReason, SharedQuotaStatus};
use crate::model::action::Drift;
use crate::model::action::Outcome;
use crate::model::event::EventNote;
use crate::model::event::Severity;
use crate::model::key::ObjectKey;
use crate::model::kind::Kind;
use crate::pipeline::message::{self, listing};
use crate::pipeline::select::{Shadowed, ShadowedClass};
use crate::pipeline::status::{self, Summary};

/// What was last said in Events, so that a persisting problem is not repeated every reconcile.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reported {
    failures: BTreeSet<(String, FailureReason)>,
    shadowed: usize,
    invalid: Option<String>,
    /// (budget, resource) pairs last reported exhausted.
    exhausted: BTreeSet<(String, String)>,
    /// (budget, namespace, resource) requests last reported as never fitting.
    too_large: BTreeSet<(String, String, String)>,
}

impl Reported {
    /// Records the spec problem being reported; true when it differs from the last one (so one
    /// Warning Event is published per distinct problem).
    pub fn invalid_spec(&mut self, problem: &str) -> bool {
        let changed = self.invalid.as_deref() != Some(problem);
        self.invalid = Some(problem.to_owned());
        changed
    }

    /// The spec is valid again: a later problem, even the same one, is news.
    pub fn spec_valid(&mut self) {
        self.invalid = None;
    }
}

/// When to look at the policy again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Within a second: the cache is behind, or an object is being deleted by someone else.
    Soon,
    /// Transient failures: back off, longer with each consecutive one.
    Backoff,
    /// Only failures that need a person (NotOwned, Invalid): recheck now and then.
    Recheck,
    /// Converged: the periodic safety resync.
    Resync,
}

/// What one reconcile found and did.
pub struct Facts<'a> {
    pub generation: Option<i64>,
    pub selected: BTreeSet<String>,
    pub shadowed: Vec<Shadowed>,
    pub shadowed_classes: Vec<ShadowedClass>,
    /// The StorageClasses the policy declares, by name.
    pub declared_classes: Vec<String>,
    /// Fingerprints of the keys the diff found already as declared.
    pub converged: Vec<u64>,
    /// Keys the diff found being deleted by someone else.
    pub waiting: Vec<ObjectKey>,
    pub outcomes: &'a [Outcome],
    /// The state of each shared budget, and whether the allocator has settled.
    pub budgets: Vec<SharedQuotaStatus>,
    pub budgets_settled: bool,
}

/// What the controller does with a reconcile's result.
#[derive(Debug)]
pub struct Report {
    pub summary: Summary,
    pub events: Vec<EventNote>,
    /// Fingerprints of the keys now as declared (a later change to them is drift).
    pub converged: HashSet<u64>,
    /// The kind of each object whose drift was corrected (for the drift metric).
    pub drift_corrected: Vec<Kind>,
    /// Some writes are to be retried within a second: status is not written for the
    /// in-between state, which would only make it flap.
    pub retry: bool,
    /// Failures that may pass on their own (not NotOwned, not Invalid).
    pub transient_failures: bool,
    pub next: Next,
}

/// The outcomes sorted by what Events say of them. Keys are borrowed: no copy per object.
#[derive(Default)]
struct Sorted<'a> {
    applied: Vec<&'a ObjectKey>,
    corrected: Vec<(&'a ObjectKey, &'a Drift)>,
    recreated: Vec<(&'a ObjectKey, &'a [&'static str])>,
    adopted: Vec<(&'a ObjectKey, &'a [String])>,
    pruned: usize,
    released: usize,
    retry: bool,
}

/// Folds the outcomes into the summary and sorts them for the Events.
fn sort<'a>(facts: &Facts<'a>, summary: &mut Summary, converged: &mut HashSet<u64>) -> Sorted<'a> {
    let mut sorted = Sorted::default();
    let mut pending_classes: BTreeSet<String> = BTreeSet::new();
    for key in &facts.waiting {
        if key.kind == Kind::StorageClass {
            pending_classes.insert(key.name.clone());
        }
        summary.waiting.insert(key.namespace.clone());
    }
    for outcome in facts.outcomes {
        match outcome {
            Outcome::Written { key, drift } => {
                match drift {
                    Some(d) => sorted.corrected.push((key, d)),
                    None => sorted.applied.push(key),
                }
                converged.insert(key.fingerprint());
            }
            Outcome::Recreated { key, changed } => {
                converged.insert(key.fingerprint());
                sorted.recreated.push((key, changed));
            }
            Outcome::Adopted { key, changed } => {
                converged.insert(key.fingerprint());
                sorted.adopted.push((key, changed));
            }
            Outcome::Deleted(_) => sorted.pruned += 1,
            Outcome::Released(_) => sorted.released += 1,
            Outcome::Retry(key) => {
                sorted.retry = true;
                if key.kind == Kind::StorageClass {
                    pending_classes.insert(key.name.clone());
                }
                if summary.selected.contains(&key.namespace) {
                    summary.waiting.insert(key.namespace.clone());
                }
            }
            Outcome::Failed(f) => summary.failures.push(f.as_ref().clone()),
        }
    }
    summary.storage_classes = status::class_states(
        &facts.declared_classes,
        &summary.shadowed_classes,
        &summary.failures,
        &pending_classes,
    );
    sorted
}

/// "adopted 2 existing objects: a/ResourceQuota/compute (changed spec.hard.cpu),
/// b/ResourceQuota/compute (already as declared)": one Event for all of them, bounded.
fn adopted_event(adopted: &mut [(&ObjectKey, &[String])]) -> Option<EventNote> {
    if adopted.is_empty() {
        return None;
    }
    // Writes finish in any order: the note names the objects in key order.
    adopted.sort_unstable_by_key(|&(key, _)| key);
    let objects = listing(adopted.iter().map(|&(key, changed)| {
        if changed.is_empty() {
            format!("{key} (already as declared)")
        } else {
            format!("{key} (changed {})", listing(changed))
        }
    }));
    let note = format!(
        "adopted {} existing {}: {objects}",
        message::count(adopted.len()),
        if adopted.len() == 1 {
            "object"
        } else {
            "objects"
        }
    );
    let single = (adopted.len() == 1).then(|| adopted[0].0);
    Some(EventNote::new(Severity::Normal, "Adopted", note).about(single))
}

/// The Events about what was written: drift undone, classes recreated, objects adopted, applied,
/// pruned and released.
fn write_events(sorted: &mut Sorted) -> Vec<EventNote> {
    let mut events = Vec::new();
    events.extend(adopted_event(&mut sorted.adopted));
    if !sorted.corrected.is_empty() {
        let objects = listing(sorted.corrected.iter().map(|&(k, d)| {
            let how = match (&d.changed_by, d.deleted) {
                (_, true) => "deleted".to_owned(),
                (Some(by), false) => format!("changed by {by}"),
                (None, false) => "changed".to_owned(),
            };
            format!("{k} ({how})")
        }));
        let note = format!(
            "restored {} objects changed outside Tenantry: {objects}",
            sorted.corrected.len()
        );
        let single = (sorted.corrected.len() == 1).then(|| sorted.corrected[0].0);
        events.push(EventNote::new(Severity::Warning, "DriftCorrected", note).about(single));
    }
    for &(key, changed) in &sorted.recreated {
        let note = format!(
            "{key} deleted and created anew: {} changed, which Kubernetes does not allow to update in place; existing PersistentVolumes are unaffected",
            changed.join(", ")
        );
        events.push(EventNote::new(Severity::Normal, "Recreated", note).about(Some(key)));
    }
    if !sorted.applied.is_empty() {
        let namespaces: BTreeSet<&str> = sorted
            .applied
            .iter()
            .map(|k| k.namespace.as_str())
            .collect();
        let note = format!(
            "applied {} objects in {} namespaces: {}",
            sorted.applied.len(),
            namespaces.len(),
            listing(&sorted.applied)
        );
        events.push(EventNote::new(Severity::Normal, "Applied", note));
    }
    if sorted.pruned > 0 {
        let note = format!(
            "deleted {} objects no longer governed by this policy",
            sorted.pruned
        );
        events.push(EventNote::new(Severity::Normal, "Pruned", note));
    }
    if sorted.released > 0 {
        let note = format!(
            "released {} objects no longer governed by this policy (deletionPolicy Retain)",
            sorted.released
        );
        events.push(EventNote::new(Severity::Normal, "Released", note));
    }
    events
}

/// The Events about problems and overlaps, each said once while it persists: failures not
/// reported before, and a change in what is shadowed.
fn news_events(summary: &Summary, reported: &mut Reported) -> Vec<EventNote> {
    let failures: BTreeSet<(String, FailureReason)> = summary
        .failures
        .iter()
        .map(|f| (f.object(), f.reason))
        .collect();
    let new: Vec<&(String, FailureReason)> = failures.difference(&reported.failures).collect();
    let (not_owned, others): (Vec<_>, Vec<_>) = new
        .into_iter()
        .partition(|(_, r)| *r == FailureReason::NotOwned);
    let mut events = Vec::new();
    if !not_owned.is_empty() {
        let note = format!(
            "left untouched {} existing objects not managed by Tenantry: {}",
            not_owned.len(),
            listing(not_owned.iter().map(|(k, _)| k))
        );
        events.push(EventNote::new(Severity::Warning, "NotOwned", note));
    }
    if !others.is_empty() {
        let note = format!(
            "could not write {} objects: {}",
            others.len(),
            listing(others.iter().map(|(k, r)| format!("{k} ({r})")))
        );
        events.push(EventNote::new(Severity::Warning, "ApplyFailed", note));
    }
    let shadowed = summary.shadowed.len() + summary.shadowed_classes.len();
    let shadow_changed = reported.shadowed != shadowed;
    reported.failures = failures;
    reported.shadowed = shadowed;
    if shadow_changed && !summary.shadowed_classes.is_empty() {
        let note = format!(
            "{}; left to them",
            message::shadowed_classes(&summary.shadowed_classes)
        );
        events.push(EventNote::new(Severity::Normal, "ClassShadowed", note));
    }
    if shadow_changed && !summary.shadowed.is_empty() {
        let note = format!(
            "{}; this policy leaves them alone there",
            message::shadowed(&summary.shadowed)
        );
        events.push(EventNote::new(Severity::Normal, "Shadowed", note));
    }
    events
}

/// One Warning when a budget's resources become exhausted (not one per refused request: the
/// quota admission refuses those, the Event says the budget is the reason).
fn exhausted_events(budgets: &[SharedQuotaStatus], reported: &mut Reported) -> Vec<EventNote> {
    let now: BTreeSet<(String, String)> = budgets
        .iter()
        .flat_map(|b| b.exhausted.iter().map(|r| (b.name.clone(), r.clone())))
        .collect();
    let new: Vec<&(String, String)> = now.difference(&reported.exhausted).collect();
    let events = if new.is_empty() {
        Vec::new()
    } else {
        let note = format!(
            "the whole shared budget is in use, new requests are refused until use falls: {}",
            listing(new.iter().map(|(b, r)| format!("{b} {r}")))
        );
        vec![EventNote::new(
            Severity::Warning,
            "SharedQuotaExhausted",
            note,
        )]
    };
    reported.exhausted = now;
    events
}

/// One Warning when a request that can never fit its budget is first seen (a typo such as
/// `cpu: 100` for `100m`), naming it; not again while it stays.
fn too_large_events(budgets: &[SharedQuotaStatus], reported: &mut Reported) -> Vec<EventNote> {
    let now: BTreeSet<(String, String, String)> = (budgets.iter())
        .flat_map(|b| {
            (b.too_large.iter()).map(|r| (b.name.clone(), r.namespace.clone(), r.resource.clone()))
        })
        .collect();
    let new: Vec<String> = (budgets.iter())
        .flat_map(|b| b.too_large.iter().map(move |r| (b, r)))
        .filter(|(b, r)| {
            let key = (b.name.clone(), r.namespace.clone(), r.resource.clone());
            !reported.too_large.contains(&key)
        })
        .map(|(b, r)| {
            format!(
                "{} {} of {} in {}",
                r.resource, r.request.0, b.name, r.namespace
            )
        })
        .collect();
    reported.too_large = now;
    if new.is_empty() {
        return Vec::new();
    }
    let note = format!(
        "a request is larger than its whole shared budget and is given nothing: {}",
        listing(new)
    );
    vec![EventNote::new(
        Severity::Warning,
        "SharedQuotaRequestTooLarge",
        note,
    )]
}

/// The report of one reconcile; `reported` is what earlier Events said, updated here.
pub fn report(facts: Facts, reported: &mut Reported) -> Report {
    let mut summary = Summary {
        generation: facts.generation,
        selected: facts.selected.clone(),
        shadowed: facts.shadowed.clone(),
        shadowed_classes: facts.shadowed_classes.clone(),
        shared_quotas: facts.budgets.clone(),
        ..Default::default()
    };
    let mut converged: HashSet<u64> = facts.converged.iter().copied().collect();
    let mut sorted = sort(&facts, &mut summary, &mut converged);
    let mut events = write_events(&mut sorted);
    events.extend(news_events(&summary, reported));
    events.extend(exhausted_events(&summary.shared_quotas, reported));
    events.extend(too_large_events(&summary.shared_quotas, reported));
    let drift_corrected = sorted.corrected.iter().map(|(k, _)| k.kind).collect();
    let transient_failures = summary.failures.iter().any(|f| !f.reason.is_terminal());
    let next = if sorted.retry || !summary.waiting.is_empty() || !facts.budgets_settled {
        Next::Soon
    } else if transient_failures {
        Next::Backoff
    } else if !summary.failures.is_empty() {
        Next::Recheck
    } else {
        Next::Resync
    };
    Report {
        summary,
        events,
        converged,
        drift_corrected,
        retry: sorted.retry,
        transient_failures,
        next,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Failure;
    use crate::model::kind::Section;
    use crate::pipeline::status::{READY, STALLED, compute};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn key(namespace: &str, kind: Kind, name: &str) -> ObjectKey {
        ObjectKey {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    fn facts<'a>(namespaces: &[&str], outcomes: &'a [Outcome]) -> Facts<'a> {
        Facts {
            generation: Some(2),
            selected: namespaces.iter().map(|s| s.to_string()).collect(),
            shadowed: Vec::new(),
            shadowed_classes: Vec::new(),
            declared_classes: Vec::new(),
            converged: Vec::new(),
            waiting: Vec::new(),
            outcomes,
            budgets: Vec::new(),
            budgets_settled: true,
        }
    }

    fn written(k: ObjectKey) -> Outcome {
        Outcome::Written {
            key: k,
            drift: None,
        }
    }

    fn reasons(report: &Report) -> Vec<&'static str> {
        report.events.iter().map(|e| e.reason).collect()
    }

    fn ready(report: &Report) -> (String, String, String) {
        let status = compute(
            &report.summary,
            None,
            Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        );
        let c = status.conditions.iter().find(|c| c.type_ == READY).unwrap();
        (c.status.clone(), c.reason.clone(), c.message.clone())
    }

    #[test]
    fn all_converged_says_applied_once_then_nothing() {
        let outcomes = [
            written(key("a", Kind::LimitRange, "defaults")),
            written(key("b", Kind::LimitRange, "defaults")),
        ];
        let mut reported = Reported::default();
        let first = report(facts(&["a", "b"], &outcomes), &mut reported);
        assert_eq!(reasons(&first), ["Applied"]);
        assert_eq!(
            first.events[0].note,
            "applied 2 objects in 2 namespaces: a/LimitRange/defaults, b/LimitRange/defaults"
        );
        assert_eq!(first.next, Next::Resync);
        assert!(!first.retry && !first.transient_failures);
        assert_eq!(first.converged.len(), 2);
        assert_eq!(
            ready(&first),
            (
                "True".into(),
                "Reconciled".into(),
                "2/2 namespaces in policy".into()
            )
        );
        // The next reconcile finds everything converged: no writes, no Events.
        let mut again = facts(&["a", "b"], &[]);
        again.converged = first.converged.iter().copied().collect();
        let second = report(again, &mut reported);
        assert!(second.events.is_empty(), "{:?}", second.events);
        assert_eq!(second.converged, first.converged);
    }

    #[test]
    fn a_not_owned_object_stalls_is_said_once_and_rechecked_slowly() {
        let failure = Failure {
            namespace: "b".into(),
            kind: "ResourceQuota".into(),
            name: "compute".into(),
            reason: FailureReason::NotOwned,
            message: "exists".into(),
        };
        let outcomes = [Outcome::Failed(Box::new(failure))];
        let mut reported = Reported::default();
        let first = report(facts(&["a", "b"], &outcomes), &mut reported);
        assert_eq!(reasons(&first), ["NotOwned"]);
        assert_eq!(first.events[0].severity, Severity::Warning);
        assert!(first.events[0].note.contains("b/ResourceQuota/compute"));
        assert_eq!(first.next, Next::Recheck);
        assert!(!first.transient_failures);
        let (status, reason, message) = ready(&first);
        assert_eq!((status.as_str(), reason.as_str()), ("False", "NotOwned"));
        assert!(
            message.starts_with("1/2 namespaces in policy; 1 failed"),
            "{message}"
        );
        let stalled = compute(
            &first.summary,
            None,
            Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        );
        assert!(
            stalled
                .conditions
                .iter()
                .any(|c| c.type_ == STALLED && c.status == "True")
        );
        let second = report(facts(&["a", "b"], &outcomes), &mut reported);
        assert!(
            second.events.is_empty(),
            "a persisting problem is not repeated"
        );
    }

    #[test]
    fn a_shadowed_kind_is_said_when_it_changes_and_named_in_status() {
        let mut reported = Reported::default();
        let shadowed = |f: &mut Facts| {
            f.shadowed = vec![Shadowed {
                namespace: "a".into(),
                section: Section::ResourceQuotas,
                winner: "team-mia".into(),
            }]
        };
        let mut first_facts = facts(&["a"], &[]);
        shadowed(&mut first_facts);
        let first = report(first_facts, &mut reported);
        assert_eq!(reasons(&first), ["Shadowed"]);
        assert!(first.events[0].note.contains("team-mia"));
        let (status, reason, message) = ready(&first);
        assert_eq!((status.as_str(), reason.as_str()), ("True", "Shadowed"));
        assert!(
            message.contains(
                "the ResourceQuota kind in 1 namespace won by a higher-precedence policy: team-mia"
            ),
            "{message}"
        );
        let mut again = facts(&["a"], &[]);
        shadowed(&mut again);
        assert!(report(again, &mut reported).events.is_empty());
    }

    #[test]
    fn a_transient_failure_retries_with_backoff_and_keeps_reconciling() {
        let failure = Failure {
            namespace: "a".into(),
            kind: "LimitRange".into(),
            name: "defaults".into(),
            reason: FailureReason::AdmissionRefused,
            message: "denied request".into(),
        };
        let outcomes = [Outcome::Failed(Box::new(failure))];
        let report = report(facts(&["a"], &outcomes), &mut Reported::default());
        assert_eq!(reasons(&report), ["ApplyFailed"]);
        assert!(
            report.events[0]
                .note
                .contains("a/LimitRange/defaults (AdmissionRefused)")
        );
        assert_eq!(report.next, Next::Backoff);
        assert!(report.transient_failures && !report.retry);
        let (status, reason, _) = ready(&report);
        assert_eq!((status.as_str(), reason.as_str()), ("False", "ApplyFailed"));
    }

    #[test]
    fn corrected_drift_names_who_changed_it_and_counts_per_kind() {
        let drifted = key("a", Kind::ResourceQuota, "compute");
        let outcomes = [
            Outcome::Written {
                key: drifted.clone(),
                drift: Some(Box::new(Drift {
                    changed_by: Some("kubectl-edit".into()),
                    deleted: false,
                })),
            },
            Outcome::Written {
                key: key("b", Kind::LimitRange, "defaults"),
                drift: Some(Box::new(Drift {
                    changed_by: None,
                    deleted: true,
                })),
            },
        ];
        let report = report(facts(&["a", "b"], &outcomes), &mut Reported::default());
        assert_eq!(reasons(&report), ["DriftCorrected"]);
        let event = &report.events[0];
        assert_eq!(event.severity, Severity::Warning);
        assert_eq!(
            event.note,
            "restored 2 objects changed outside Tenantry: a/ResourceQuota/compute (changed by kubectl-edit), b/LimitRange/defaults (deleted)"
        );
        assert_eq!(
            event.related, None,
            "two objects: the Event is about the policy"
        );
        assert_eq!(
            report.drift_corrected,
            [Kind::ResourceQuota, Kind::LimitRange]
        );
        let single = [outcomes[0].clone()];
        let one = super::report(facts(&["a"], &single), &mut Reported::default());
        assert_eq!(one.events[0].related, Some(drifted));
    }

    #[test]
    fn adoptions_are_one_normal_event_naming_the_objects_and_the_fields_changed() {
        let changed = key("a", Kind::ResourceQuota, "compute");
        let outcomes = [
            Outcome::Adopted {
                key: key("b", Kind::ResourceQuota, "compute"),
                changed: Vec::new(),
            },
            Outcome::Adopted {
                key: changed.clone(),
                changed: vec!["spec.hard.cpu".into(), "spec.hard.pods".into()],
            },
        ];
        let report = report(facts(&["a", "b"], &outcomes), &mut Reported::default());
        assert_eq!(reasons(&report), ["Adopted"]);
        let event = &report.events[0];
        assert_eq!(event.severity, Severity::Normal);
        assert_eq!(
            event.note,
            "adopted 2 existing objects: a/ResourceQuota/compute (changed spec.hard.cpu, spec.hard.pods), b/ResourceQuota/compute (already as declared)"
        );
        assert_eq!(report.converged.len(), 2, "adopted objects are as declared");
        assert_eq!(ready(&report).1, "Reconciled");
        let single = [outcomes[1].clone()];
        let one = super::report(facts(&["a"], &single), &mut Reported::default());
        assert!(
            one.events[0]
                .note
                .starts_with("adopted 1 existing object: ")
        );
        assert_eq!(one.events[0].related, Some(changed));
    }

    #[test]
    fn a_retry_is_looked_at_soon_and_its_namespace_is_waiting() {
        let outcomes = [
            Outcome::Retry(key("a", Kind::LimitRange, "defaults")),
            written(key("b", Kind::LimitRange, "defaults")),
        ];
        let report = report(facts(&["a", "b"], &outcomes), &mut Reported::default());
        assert!(report.retry);
        assert_eq!(report.next, Next::Soon);
        assert_eq!(report.summary.waiting, BTreeSet::from(["a".to_owned()]));
    }
}
