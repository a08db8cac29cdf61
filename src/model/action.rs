//! What the diff asks the writer to do (actions), and what became of it (outcomes).

use kube::api::DynamicObject;
use serde_json::Value;

use crate::api::Failure;
use crate::model::key::ObjectKey;
use crate::model::object::{Desired, Live};

/// Why an existing object is being rewritten although the policy did not change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drift {
    /// The field manager that last wrote the object, when managedFields tell.
    pub changed_by: Option<String>,
    pub deleted: bool,
}

/// One write.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// The object does not exist (as far as the cache knows): create it, failing if it does.
    Create {
        desired: Desired,
        drift: Option<Box<Drift>>,
    },
    /// An object of this name was found not owned a while ago: look at it again (GET), and
    /// create it if it is gone.
    Inspect {
        desired: Desired,
        drift: Option<Box<Drift>>,
    },
    /// Take an existing object of a declared name under the policy (`spec.adoptionPolicy`): a
    /// merge patch carrying the uid and resourceVersion read; `changed` names the declared
    /// fields it changes.
    Adopt {
        desired: Desired,
        patch: Value,
        changed: Vec<String>,
    },
    /// Server-side apply, on the condition that the object is still the one seen (its uid).
    Apply {
        desired: Desired,
        uid: String,
        drift: Option<Box<Drift>>,
    },
    /// Live holds fields, or owner references, that apply cannot remove: a JSON merge patch on
    /// the condition that the object is unchanged since seen (its resourceVersion).
    Replace {
        desired: Desired,
        patch: Value,
        drift: Option<Box<Drift>>,
    },
    /// A StorageClass whose immutable fields must change: delete the live one (on the condition
    /// that it is still the one seen) and create it anew.
    Recreate {
        desired: Desired,
        live: Box<Live>,
        /// The immutable fields that differ, for the Event that says why.
        changed: Vec<&'static str>,
    },
    /// No longer wanted, deletionPolicy Delete.
    Delete { live: Box<Live> },
    /// No longer wanted, deletionPolicy Retain: Tenantry's labels and ownerReference removed.
    Release { live: Box<Live>, patch: Value },
}

impl Action {
    pub fn key(&self) -> &ObjectKey {
        match self {
            Action::Create { desired, .. }
            | Action::Inspect { desired, .. }
            | Action::Adopt { desired, .. }
            | Action::Apply { desired, .. }
            | Action::Replace { desired, .. }
            | Action::Recreate { desired, .. } => &desired.key,
            Action::Delete { live } | Action::Release { live, .. } => &live.key,
        }
    }

    pub fn drift(&self) -> Option<&Drift> {
        match self {
            Action::Create { drift, .. }
            | Action::Inspect { drift, .. }
            | Action::Apply { drift, .. }
            | Action::Replace { drift, .. } => drift.as_deref(),
            _ => None,
        }
    }
}

/// What became of one action.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Created or updated; `drift` when it undid a change made outside Tenantry.
    Written {
        key: ObjectKey,
        drift: Option<Box<Drift>>,
    },
    /// Deleted and created anew (a StorageClass whose immutable fields changed, named).
    Recreated {
        key: ObjectKey,
        changed: Vec<&'static str>,
    },
    /// An existing object of a declared name taken under the policy (adoptionPolicy), with the
    /// declared fields its spec had to change to (none when it was already as declared).
    Adopted {
        key: ObjectKey,
        changed: Vec<String>,
    },
    Deleted(ObjectKey),
    Released(ObjectKey),
    /// Not done yet, nothing wrong: the cache is behind, or the object changed under us.
    Retry(ObjectKey),
    /// Boxed: outcomes are collected for every action, and failures are rare.
    Failed(Box<Failure>),
}

impl Outcome {
    pub fn key(&self) -> Option<&ObjectKey> {
        match self {
            Outcome::Written { key, .. }
            | Outcome::Recreated { key, .. }
            | Outcome::Adopted { key, .. } => Some(key),
            Outcome::Deleted(key) | Outcome::Released(key) | Outcome::Retry(key) => Some(key),
            Outcome::Failed(_) => None,
        }
    }
}

/// What the writer found when it executed one action.
#[derive(Debug)]
pub enum Found {
    /// The write went through.
    Done,
    /// No write was sent: this process does not hold leadership.
    Fenced,
    /// An object of the name exists (a creation was refused as AlreadyExists, or a look found
    /// it): the object as read.
    Exists(Box<DynamicObject>),
    /// There is no object of that name (a look, or the read after AlreadyExists, found none).
    Absent,
    /// The API server refused or failed the request.
    Error(kube::Error),
}
