//! Events as data: what the pipeline wants said about a policy, for the writer to publish.

use crate::model::key::ObjectKey;

/// Event notes are cut to this many bytes (the API server refuses longer ones).
pub const MAX_NOTE: usize = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Normal,
    Warning,
}

/// One Event to publish about the policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventNote {
    pub severity: Severity,
    /// CamelCase and low-cardinality, so the recorder aggregates repeats into a series.
    pub reason: &'static str,
    pub note: String,
    /// The one object concerned, when there is one.
    pub related: Option<ObjectKey>,
}

impl EventNote {
    pub fn new(severity: Severity, reason: &'static str, note: String) -> Self {
        Self {
            severity,
            reason,
            note: truncate(note, MAX_NOTE),
            related: None,
        }
    }

    /// The Event's `action`: the reason and a digest of the note. kube-runtime's Recorder folds
    /// Events of the same reason, action and objects into one series, keeping the first note:
    /// with the note's digest in the action, identical notes still aggregate, and every distinct
    /// one reaches `kubectl get events`.
    pub fn action(&self) -> String {
        let digest = crate::model::fingerprint::fingerprint(&self.note) as u32;
        format!("{}-{digest:08x}", self.reason)
    }

    /// About this object in particular (the Event's related object).
    pub fn about(mut self, key: Option<&ObjectKey>) -> Self {
        self.related = key.cloned();
        self
    }
}

/// Cuts `text` to at most `max` bytes (on a character boundary), marking the cut with "...".
pub fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max - 3;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_notes_have_distinct_actions_and_identical_ones_the_same() {
        let note = |text: &str| EventNote::new(Severity::Normal, "Applied", text.to_owned());
        let (a, b) = (note("created 2 objects: a, b"), note("created 1 object: c"));
        assert_ne!(a.action(), b.action());
        assert_eq!(a.action(), note("created 2 objects: a, b").action());
        assert!(a.action().starts_with("Applied-") && a.action().len() <= 128);
    }
}
