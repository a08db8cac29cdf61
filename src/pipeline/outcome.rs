//! What the writer's answers mean. The writer only executes an action and says what it found
//! ([`Found`]); this step decides what that is (an outcome), and which follow-up writes it calls
//! for: an existing object of a declared name is adopted, or reported as not owned and
//! remembered so it is not looked at again before [`NOT_OWNED_RECHECK`]. Pure.
//!
//! The sequence for one creation: [`recall`] answers from memory for an object judged not owned
//! moments ago, or turns the creation into a look ([`Action::Inspect`]) when that judgement is
//! due again; the writer POSTs (or GETs); [`settle`] judges what it found with
//! [`adoption::decide`] and returns the adoption patch as a follow-up action, or the outcome.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use kube::api::DynamicObject;

use crate::api::{AdoptionPolicy, Failure, FailureReason, is_managed};
use crate::model::action::{Action, Found, Outcome};
use crate::model::key::{ObjectKey, Owner};
use crate::model::object::Desired;
use crate::pipeline::adoption::{self, Decision, Existing};

/// How long an object found not owned is reported from memory before it is looked at again.
pub const NOT_OWNED_RECHECK: Duration = Duration::from_secs(20);

/// Objects found to exist without Tenantry's labels and not adopted, by key.
pub type NotOwned = HashMap<ObjectKey, NotOwnedEntry>;

/// When an object was found not owned, and what it was judged against (a new adoptionPolicy or
/// spec is judged anew at once).
#[derive(Clone, Debug)]
pub struct NotOwnedEntry {
    pub checked: Instant,
    pub adoption: AdoptionPolicy,
    /// The fingerprint of the declared spec it was judged against.
    pub fingerprint: u64,
    /// Why it was not adopted (kept so the failure reads the same until it is looked at again).
    pub why: String,
}

/// How existing objects of declared names are treated: the policy's adoptionPolicy, and the
/// memory of objects found not owned.
pub struct Judging<'m> {
    pub adoption: AdoptionPolicy,
    pub owner: &'m Owner,
    pub memory: &'m mut NotOwned,
    pub now: Instant,
}

/// Creations of objects judged not owned moments ago (same adoptionPolicy and spec) are
/// answered from memory; those due for another look become [`Action::Inspect`]. The rest are
/// returned as they are, to execute.
pub fn recall(actions: Vec<Action>, judging: &Judging) -> (Vec<Action>, Vec<Outcome>) {
    let mut run = Vec::with_capacity(actions.len());
    let mut answered = Vec::new();
    for action in actions {
        let Action::Create { desired, drift } = action else {
            run.push(action);
            continue;
        };
        match judging.memory.get(&desired.key) {
            None => run.push(Action::Create { desired, drift }),
            Some(entry) => {
                let same_judgement =
                    entry.adoption == judging.adoption && entry.fingerprint == desired.fingerprint;
                let recent =
                    judging.now.saturating_duration_since(entry.checked) < NOT_OWNED_RECHECK;
                if same_judgement && recent {
                    answered.push(not_owned(&desired.key, &entry.why));
                } else {
                    run.push(Action::Inspect { desired, drift });
                }
            }
        }
    }
    (run, answered)
}

/// The outcome of each executed action, and the follow-up actions they call for (an adoption
/// patch; the creation after a look found nothing). Updates the not-owned memory.
pub fn settle(
    executed: Vec<(Action, Found)>,
    judging: &mut Judging,
) -> (Vec<Outcome>, Vec<Action>) {
    let mut outcomes = Vec::with_capacity(executed.len());
    let mut follow_ups = Vec::new();
    for (action, found) in executed {
        match settle_one(action, found, judging) {
            Settled::Outcome(outcome) => outcomes.push(outcome),
            Settled::Then(action) => follow_ups.push(action),
        }
    }
    (outcomes, follow_ups)
}

/// Follow-ups still pending when the writer has been asked often enough are retried later.
pub fn give_up(pending: Vec<Action>) -> Vec<Outcome> {
    pending
        .into_iter()
        .map(|a| Outcome::Retry(a.key().clone()))
        .collect()
}

enum Settled {
    Outcome(Outcome),
    Then(Action),
}

fn settle_one(action: Action, found: Found, judging: &mut Judging) -> Settled {
    let key = action.key().clone();
    let outcome = match (action, found) {
        (_, Found::Fenced) => Outcome::Retry(key),
        // Released is what a release of an object already gone comes to.
        (Action::Release { .. }, Found::Error(kube::Error::Api(s))) if s.code == 404 => {
            Outcome::Released(key)
        }
        (_, Found::Error(error)) => classify(&key, &error),
        (Action::Create { desired, drift }, Found::Done) => {
            judging.memory.remove(&desired.key);
            Outcome::Written { key, drift }
        }
        (Action::Inspect { desired, drift }, Found::Absent) => {
            judging.memory.remove(&desired.key);
            return Settled::Then(Action::Create { desired, drift });
        }
        // Deleted between the refused POST and the read: try again.
        (_, Found::Absent) => Outcome::Retry(key),
        (
            Action::Create { desired, .. }
            | Action::Inspect { desired, .. }
            | Action::Recreate { desired, .. },
            Found::Exists(object),
        ) => return judge_existing(desired, &object, judging),
        (Action::Recreate { changed, .. }, Found::Done) => Outcome::Recreated { key, changed },
        (Action::Adopt { changed, .. }, Found::Done) => Outcome::Adopted { key, changed },
        (Action::Apply { drift, .. } | Action::Replace { drift, .. }, Found::Done) => {
            Outcome::Written { key, drift }
        }
        (Action::Delete { .. }, Found::Done) => Outcome::Deleted(key),
        (Action::Release { .. }, Found::Done) => Outcome::Released(key),
        // A look writes nothing, so it is never done; should it be, look again next time.
        (Action::Inspect { .. }, Found::Done) => Outcome::Retry(key),
        // Only creations and looks find objects; anything else finding one is the cache behind.
        (_, Found::Exists(_)) => Outcome::Retry(key),
    };
    Settled::Outcome(outcome)
}

/// An existing object of a declared name: Tenantry's with the cache behind (retry; overlaps
/// decide, never adoption), or adopted as `spec.adoptionPolicy` allows, or reported and
/// remembered.
fn judge_existing(desired: Desired, object: &DynamicObject, judging: &mut Judging) -> Settled {
    let key = desired.key.clone();
    if is_managed(
        object
            .metadata
            .labels
            .as_ref()
            .unwrap_or(&Default::default()),
    ) {
        return Settled::Outcome(Outcome::Retry(key));
    }
    let decision = match Existing::of(key.kind, object) {
        Some(existing) => adoption::decide(judging.adoption, &desired, &existing, judging.owner),
        None => Decision::Refuse(format!("it does not read as a {}", key.kind)),
    };
    match decision {
        Decision::Adopt { patch, changed } => {
            judging.memory.remove(&key);
            Settled::Then(Action::Adopt {
                desired,
                patch,
                changed,
            })
        }
        Decision::Refuse(why) => {
            let outcome = not_owned(&key, &why);
            let entry = NotOwnedEntry {
                checked: judging.now,
                adoption: judging.adoption,
                fingerprint: desired.fingerprint,
                why,
            };
            judging.memory.insert(key, entry);
            Settled::Outcome(outcome)
        }
    }
}

fn failure(key: &ObjectKey, reason: FailureReason, message: impl Into<String>) -> Outcome {
    Outcome::Failed(Box::new(Failure {
        namespace: key.namespace.clone(),
        kind: key.kind.to_string(),
        name: key.name.clone(),
        reason,
        message: message.into(),
    }))
}

fn not_owned(key: &ObjectKey, why: &str) -> Outcome {
    failure(
        key,
        FailureReason::NotOwned,
        format!(
            "a {} of this name exists without Tenantry's labels and owner; it is left untouched (not adopted: {why})",
            key.kind
        ),
    )
}

/// A ValidatingAdmissionPolicy or admission webhook refused the request (they answer 422 or 403).
pub fn is_admission_refusal(status: &kube::core::Status) -> bool {
    status.message.contains("denied request") || status.message.contains("admission webhook")
}

/// Maps an API error to an outcome: conflicts and races retry, the rest are reported.
pub fn classify(key: &ObjectKey, error: &kube::Error) -> Outcome {
    // Each retry costs the policy a second (`SOON`): worth seeing when latency is looked into.
    tracing::debug!(kind = %key.kind, namespace = %key.namespace, name = %key.name, %error, "write not done");
    match error {
        kube::Error::Api(s) if s.code == 409 || s.code == 404 => Outcome::Retry(key.clone()),
        // Creating in a namespace that has just started terminating.
        kube::Error::Api(s) if s.code == 403 && s.message.contains("being terminated") => {
            Outcome::Retry(key.clone())
        }
        // An admission policy or webhook refused the write: not a problem of the spec, and it may
        // be lifted, so it is retried with backoff (ValidatingAdmissionPolicies answer 422 or 403).
        kube::Error::Api(s) if is_admission_refusal(s) => {
            failure(key, FailureReason::AdmissionRefused, s.message.clone())
        }
        kube::Error::Api(s) if s.code == 403 => {
            failure(key, FailureReason::Forbidden, s.message.clone())
        }
        kube::Error::Api(s) if s.code == 422 || s.code == 400 => {
            failure(key, FailureReason::Invalid, s.message.clone())
        }
        other => failure(key, FailureReason::ApplyFailed, other.to_string()),
    }
}

#[cfg(test)]
mod tests;
