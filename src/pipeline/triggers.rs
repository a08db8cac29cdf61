//! Which policies a change concerns. Pure.
//!
//! A policy's outcome depends on the namespaces it selects (their labels), on the other policies
//! selecting any of them (who wins each kind there), and on the policies declaring the same
//! StorageClasses. So a namespace change concerns the policies that select the namespace before
//! or after it; a policy change concerns the policies sharing a namespace with what it selects
//! before or after it, and those declaring one of its classes. Everything else is untouched: a
//! label flip in a fleet of 500 team policies wakes three of them, not all.

use std::collections::BTreeSet;

use crate::api::TenantPolicySpec;
use crate::model::namespace::NamespaceInfo;
use crate::pipeline::select::{Selection, SelectionIndex};

/// What of a policy decides which other policies its changes concern.
#[derive(Clone, Debug, Default)]
pub struct Footprint {
    /// `None` when the selector is invalid (the policy selects nothing).
    selection: Option<Selection>,
    classes: BTreeSet<String>,
}

impl Footprint {
    pub fn of(spec: &TenantPolicySpec) -> Self {
        Self {
            selection: Selection::new(spec).ok(),
            classes: (spec.storage.iter())
                .flat_map(|s| s.classes.iter().map(|c| c.name.clone()))
                .collect(),
        }
    }

    fn selects(&self, ns: &NamespaceInfo) -> bool {
        self.selection.as_ref().is_some_and(|s| s.selects(ns))
    }
}

/// The policies (of `policies`, by name) a namespace's change concerns: those selecting it
/// `before` or `after` (`None`: it did not exist, or is gone).
pub fn for_namespace<'p>(
    before: Option<&NamespaceInfo>,
    after: Option<&NamespaceInfo>,
    policies: impl IntoIterator<Item = (&'p str, &'p Footprint)>,
) -> Vec<String> {
    policies
        .into_iter()
        .filter(|(_, f)| {
            before.is_some_and(|ns| f.selects(ns)) || after.is_some_and(|ns| f.selects(ns))
        })
        .map(|(name, _)| name.to_owned())
        .collect()
}

/// The other policies (of `others`, by name) a policy's change from `before` to `after` concerns,
/// given the cluster's `namespaces`. The changed policy itself is reconciled on its own.
pub fn for_policy<'p>(
    before: Option<&Footprint>,
    after: Option<&Footprint>,
    others: &[(&'p str, &'p Footprint)],
    namespaces: &[NamespaceInfo],
) -> Vec<String> {
    let changed = || before.into_iter().chain(after);
    let classes: BTreeSet<&String> = changed().flat_map(|f| &f.classes).collect();
    let mut concerned = vec![false; others.len()];
    for (i, (_, other)) in others.iter().enumerate() {
        concerned[i] = other.classes.iter().any(|c| classes.contains(c));
    }
    let filed: Vec<(usize, &Selection)> = (others.iter().enumerate())
        .filter_map(|(i, (_, f))| f.selection.as_ref().map(|s| (i, s)))
        .collect();
    let index = SelectionIndex::new(filed.iter().map(|(_, s)| *s));
    for ns in namespaces {
        if changed().any(|f| f.selects(ns)) {
            for j in index.selecting(ns) {
                concerned[filed[j].0] = true;
            }
        }
    }
    (others.iter().zip(concerned))
        .filter(|(_, c)| *c)
        .map(|((name, _), _)| (*name).to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use serde_json::json;

    use super::*;

    fn footprint(value: serde_json::Value) -> Footprint {
        Footprint::of(&serde_json::from_value(value).unwrap())
    }

    fn ns(name: &str, team: &str) -> NamespaceInfo<'static> {
        NamespaceInfo {
            name: Cow::Owned(name.into()),
            labels: Cow::Owned([("team".to_string(), team.to_string())].into()),
            terminating: false,
        }
    }

    fn team(t: &str) -> Footprint {
        footprint(json!({"namespaceSelector": {"matchLabels": {"team": t}}}))
    }

    #[test]
    fn a_label_flip_concerns_the_policies_selecting_the_namespace_before_or_after() {
        let (baseline, a, b, c) = (
            footprint(json!({"namespaceSelector": {}})),
            team("a"),
            team("b"),
            team("c"),
        );
        let policies = [("baseline", &baseline), ("a", &a), ("b", &b), ("c", &c)];
        let flipped = for_namespace(Some(&ns("n", "a")), Some(&ns("n", "b")), policies);
        assert_eq!(flipped, ["baseline", "a", "b"]);
        let created = for_namespace(None, Some(&ns("n", "c")), policies);
        assert_eq!(created, ["baseline", "c"]);
        let gone = for_namespace(Some(&ns("n", "c")), None, policies);
        assert_eq!(gone, ["baseline", "c"]);
        let terminating = NamespaceInfo {
            terminating: true,
            ..ns("n", "a")
        };
        assert_eq!(
            for_namespace(Some(&ns("n", "a")), Some(&terminating), policies),
            ["baseline", "a"],
            "a namespace starting to terminate leaves those that selected it"
        );
    }

    #[test]
    fn a_policy_change_concerns_those_sharing_a_namespace_before_or_after_and_its_classes() {
        let namespaces = [ns("n1", "a"), ns("n2", "b"), ns("n3", "c"), ns("n4", "d")];
        let (a, b, c, d) = (team("a"), team("b"), team("c"), team("d"));
        let storage = footprint(json!({"namespaces": ["elsewhere"],
            "storage": {"classes": [{"name": "fast", "provisioner": "x"}]}}));
        let others = [
            ("a", &a),
            ("b", &b),
            ("c", &c),
            ("d", &d),
            ("storage", &storage),
        ];
        // Moving a policy from team b's namespaces to team c's concerns b and c only.
        let moved = for_policy(Some(&team("b")), Some(&team("c")), &others, &namespaces);
        assert_eq!(moved, ["b", "c"]);
        // Created, and deleted.
        assert_eq!(
            for_policy(None, Some(&team("d")), &others, &namespaces),
            ["d"]
        );
        assert_eq!(
            for_policy(Some(&team("a")), None, &others, &namespaces),
            ["a"]
        );
        // A policy over everything concerns everyone that selects something.
        let all = footprint(json!({"namespaceSelector": {}}));
        assert_eq!(
            for_policy(None, Some(&all), &others, &namespaces),
            ["a", "b", "c", "d"]
        );
        // Declaring a class another policy declares concerns it, wherever each selects.
        let claims = footprint(json!({"namespaces": ["nowhere"],
            "storage": {"classes": [{"name": "fast", "provisioner": "y"}]}}));
        assert_eq!(
            for_policy(None, Some(&claims), &others, &namespaces),
            ["storage"]
        );
        // An invalid selector selects nothing and concerns nobody through namespaces.
        let invalid = footprint(json!({"namespaceSelector": {"matchExpressions":
            [{"key": "team", "operator": "Bogus"}]}}));
        assert!(invalid.selection.is_none());
        assert!(for_policy(None, Some(&invalid), &others, &namespaces).is_empty());
    }
}
