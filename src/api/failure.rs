//! Why an object could not be made as declared: one typed reason, decided where the API's answer
//! is read (the writer) and read by status and the report, serialised as the CamelCase strings
//! `status.failures[].reason` has always carried.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One problem with one object.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    /// Namespace of the object; empty for cluster-scoped objects.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Kind of the object.
    pub kind: String,
    /// Name of the object.
    pub name: String,
    /// CamelCase reason, such as NotOwned or ApplyFailed.
    #[schemars(with = "String")]
    pub reason: FailureReason,
    /// What went wrong.
    pub message: String,
}

impl Failure {
    /// "namespace/Kind/name", or "Kind/name" for a cluster-scoped object.
    pub fn object(&self) -> String {
        if self.namespace.is_empty() {
            format!("{}/{}", self.kind, self.name)
        } else {
            format!("{}/{}/{}", self.namespace, self.kind, self.name)
        }
    }
}

/// Why a write did not happen. `NotOwned` and `Invalid` need a person (the policy is Stalled and
/// rechecked slowly); the others may pass on their own and are retried with backoff.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FailureReason {
    /// An object of the declared name exists without Tenantry's labels: it is left untouched.
    NotOwned,
    /// The API server refuses the object as built (422 or 400).
    Invalid,
    /// An admission policy or webhook refused the write; it may be lifted.
    AdmissionRefused,
    /// RBAC refused the write.
    Forbidden,
    /// Anything else (connection, timeout, server error). A reason written by a newer version
    /// that this one does not know reads as this, so such a status never makes a policy
    /// unreadable.
    #[serde(other)]
    ApplyFailed,
}

impl FailureReason {
    /// Needs a person, not a retry.
    pub fn is_terminal(self) -> bool {
        matches!(self, FailureReason::NotOwned | FailureReason::Invalid)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::NotOwned => "NotOwned",
            FailureReason::Invalid => "Invalid",
            FailureReason::AdmissionRefused => "AdmissionRefused",
            FailureReason::Forbidden => "Forbidden",
            FailureReason::ApplyFailed => "ApplyFailed",
        }
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_serialise_as_the_strings_status_has_always_carried() {
        for reason in [
            FailureReason::NotOwned,
            FailureReason::Invalid,
            FailureReason::AdmissionRefused,
            FailureReason::Forbidden,
            FailureReason::ApplyFailed,
        ] {
            let text = serde_json::to_value(reason).unwrap();
            assert_eq!(text, serde_json::json!(reason.as_str()));
            assert_eq!(
                serde_json::from_value::<FailureReason>(text).unwrap(),
                reason
            );
        }
        let unknown: FailureReason = serde_json::from_str("\"SomethingNew\"").unwrap();
        assert_eq!(unknown, FailureReason::ApplyFailed);
        assert!(FailureReason::NotOwned.is_terminal() && FailureReason::Invalid.is_terminal());
        assert!(!FailureReason::AdmissionRefused.is_terminal());
    }
}
