//! The shared-budget step of the pipeline: for each `spec.sharedQuotas` item, the parts as the
//! caches show them go through the [`allocator`], and come out as the desired part objects
//! (ResourceQuotas named after the item, labelled [`SHARED_QUOTA_LABEL`]) that the ordinary
//! diff and writer then create, resize or prune. Pure.
//!
//! Every namespace in the budget is desired with the size the allocator wants written now, or
//! its current size when the allocator leaves it alone, so the diff writes exactly the parts the
//! allocator moves headroom between and nothing at steady state. A namespace leaving the budget
//! is not desired, so its part goes as any object no longer governed (Delete or Retain).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::allocator::{self, Allocation, Amounts, Part, Write};
use crate::api::{SHARED_QUOTA_LABEL, SharedQuotaStatus, SharedQuotaTemplate, TenantPolicySpec};
use crate::diff::LiveIndex;
use crate::resources::{Desired, Kind, ObjectKey, Owner, shared_quota};
use crate::select::Assignment;

/// What the allocator remembers, per `spec.sharedQuotas` item name.
pub type Memories = BTreeMap<String, allocator::Memory>;

/// The parts to hold, and the state of each budget.
#[derive(Debug, Default)]
pub struct Budgets {
    pub desired: Vec<Desired>,
    pub states: Vec<SharedQuotaStatus>,
    /// Every allocation settled: nothing left to move once the writes are enforced.
    pub settled: bool,
}

/// Sizes the parts of every budget of `spec` among `namespaces` (where the policy wins
/// sharedQuotas), from what `live` shows of them; `memories` is updated for the next run.
pub fn plan<L: LiveIndex + ?Sized>(
    owner: &Owner,
    spec: &TenantPolicySpec,
    namespaces: &BTreeSet<String>,
    live: &L,
    memories: &mut Memories,
) -> Budgets {
    let mut budgets = Budgets {
        settled: true,
        ..Default::default()
    };
    memories.retain(|name, _| spec.shared_quotas.iter().any(|q| &q.name == name));
    for item in &spec.shared_quotas {
        // The CRD refuses what does not parse; validate.rs stalls the policy before this.
        let Ok(budget) = allocator::amounts(&item.hard) else {
            continue;
        };
        let parts = observe(owner, item, namespaces, live);
        let memory = memories.entry(item.name.clone()).or_default();
        let allocation = allocator::allocate(&budget, &parts, memory);
        budgets.settled &= allocation.settled(memory);
        budgets
            .desired
            .extend(desired_parts(item, namespaces, &parts, &allocation));
        budgets
            .states
            .push(allocation.usage.to_status(&item.name, &budget));
        *memory = allocation.memory;
    }
    budgets
}

/// The step as the controller and `tenantry plan` both run it: the parts of every budget of
/// `spec`, among the namespaces where `assignment` wins sharedQuotas, join its desired objects.
/// Returns the budgets' states (their `desired` moved into the assignment).
pub fn add_parts<L: LiveIndex + ?Sized>(
    owner: &Owner,
    spec: &TenantPolicySpec,
    assignment: &mut Assignment,
    live: &L,
    memories: &mut Memories,
) -> Budgets {
    let namespaces = &assignment.shared_namespaces;
    let mut budgets = plan(owner, spec, namespaces, live, memories);
    assignment.desired.append(&mut budgets.desired);
    budgets
}

fn key(namespace: &str, item: &SharedQuotaTemplate) -> ObjectKey {
    ObjectKey {
        kind: Kind::ResourceQuota,
        namespace: namespace.to_owned(),
        name: item.name.clone(),
    }
}

/// The parts as the caches show them: every namespace in the budget (with or without a part),
/// and every part of this policy left in a namespace that is not. An object of the item's name
/// that is not this policy's counts as no part (the diff reports it, NotOwned); the allocator
/// then raises nothing until it is resolved, since that namespace's use is unknown.
fn observe<L: LiveIndex + ?Sized>(
    owner: &Owner,
    item: &SharedQuotaTemplate,
    namespaces: &BTreeSet<String>,
    live: &L,
) -> Vec<Part> {
    let part = |namespace: &str, selected: bool| {
        let key = key(namespace, item);
        let ours = live.get(&key).filter(|l| l.is_owned_by(owner));
        let status = ours.as_ref().and_then(|_| live.quota_status(&key));
        let field = |value: Option<&Value>, name: &str| {
            value
                .and_then(|v| v.get(name))
                .and_then(|m| serde_json::from_value(m.clone()).ok())
                .and_then(|m| allocator::amounts(&m).ok())
        };
        Part {
            namespace: namespace.to_owned(),
            spec: ours.as_ref().and_then(|l| field(Some(&l.spec), "hard")),
            status: field(status.as_ref(), "hard"),
            used: field(status.as_ref(), "used").unwrap_or_default(),
            selected,
            refused: Amounts::new(),
        }
    };
    let mut parts: Vec<Part> = namespaces.iter().map(|ns| part(ns, true)).collect();
    let leaving = live.labelled_for(&owner.name, &|kind, namespace, name| {
        kind == Kind::ResourceQuota && name == item.name && !namespaces.contains(namespace)
    });
    parts.extend(leaving.iter().map(|k| part(&k.namespace, false)));
    parts
}

/// Each namespace's part as it should be after this run.
fn desired_parts(
    item: &SharedQuotaTemplate,
    namespaces: &BTreeSet<String>,
    parts: &[Part],
    allocation: &Allocation,
) -> Vec<Desired> {
    let written: BTreeMap<&str, &Amounts> = allocation
        .writes
        .iter()
        .filter_map(|w| match w {
            Write::Create { namespace, hard } | Write::SetHard { namespace, hard } => {
                Some((namespace.as_str(), hard))
            }
            Write::Delete { .. } => None,
        })
        .collect();
    parts
        .iter()
        .filter(|p| namespaces.contains(&p.namespace))
        .filter_map(|p| {
            let hard = written
                .get(p.namespace.as_str())
                .copied()
                .or(p.spec.as_ref())?;
            let labels = BTreeMap::from([(SHARED_QUOTA_LABEL.to_owned(), item.name.clone())]);
            Some(
                Desired::of(key(&p.namespace, item), shared_quota::build(item, hard))
                    .with_labels(labels),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{Live, managed_labels};
    use serde_json::json;

    struct Index(Vec<(Live, Value)>);

    impl LiveIndex for Index {
        fn get(&self, key: &ObjectKey) -> Option<Live> {
            self.0
                .iter()
                .find(|(l, _)| &l.key == key)
                .map(|(l, _)| l.clone())
        }
        fn labelled_for(
            &self,
            policy: &str,
            keep: &dyn Fn(Kind, &str, &str) -> bool,
        ) -> Vec<ObjectKey> {
            let lives: Vec<Live> = self.0.iter().map(|(l, _)| l.clone()).collect();
            lives.as_slice().labelled_for(policy, keep)
        }
        fn quota_status(&self, key: &ObjectKey) -> Option<Value> {
            self.0
                .iter()
                .find(|(l, _)| &l.key == key)
                .map(|(_, s)| s.clone())
        }
    }

    fn owner() -> Owner {
        Owner {
            name: "team".into(),
            uid: "uid-team".into(),
        }
    }

    fn spec(hard: Value) -> TenantPolicySpec {
        serde_json::from_value(json!({"sharedQuotas": [{"name": "budget", "hard": hard}]})).unwrap()
    }

    fn part(namespace: &str, hard: Value, used: Value) -> (Live, Value) {
        let mut labels = managed_labels("team");
        labels.insert(SHARED_QUOTA_LABEL.into(), "budget".into());
        let live = Live {
            key: ObjectKey {
                kind: Kind::ResourceQuota,
                namespace: namespace.into(),
                name: "budget".into(),
            },
            uid: format!("uid-{namespace}"),
            resource_version: "1".into(),
            labels,
            owner_references: vec![owner().owner_reference()],
            spec: json!({"hard": hard}),
            foreign_manager: None,
            deleting: false,
        };
        (live, json!({"hard": hard, "used": used}))
    }

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn new_namespaces_get_parts_labelled_for_the_budget_and_sized_once_their_use_is_known() {
        let spec = spec(json!({"pods": "20"}));
        let mut memories = Memories::new();
        let first = plan(
            &owner(),
            &spec,
            &names(&["a", "b"]),
            &Index(vec![]),
            &mut memories,
        );
        assert_eq!(first.desired.len(), 2, "{:?}", first.desired);
        for d in &first.desired {
            assert_eq!(d.key.name, "budget");
            assert_eq!(d.labels.as_ref().unwrap()[SHARED_QUOTA_LABEL], "budget");
        }
        assert!(!first.settled);
        let live = Index(vec![
            part("a", json!({"pods": "0"}), json!({"pods": "0"})),
            part("b", json!({"pods": "0"}), json!({"pods": "0"})),
        ]);
        let second = plan(&owner(), &spec, &names(&["a", "b"]), &live, &mut memories);
        let total: i128 = second
            .desired
            .iter()
            .map(|d| {
                allocator::amounts(&serde_json::from_value(d.spec["hard"].clone()).unwrap())
                    .unwrap()["pods"]
            })
            .sum();
        assert!(
            total > 0 && total <= 20_000,
            "parts sum to {total} milli-pods"
        );
        assert_eq!(second.states[0].namespaces, 2);
    }

    #[test]
    fn a_namespace_leaving_is_not_desired_and_objects_of_others_are_no_part() {
        let spec = spec(json!({"pods": "20"}));
        let mut foreign = part("c", json!({"pods": "5"}), json!({"pods": "1"}));
        foreign.0.owner_references.clear();
        foreign.0.labels.clear();
        let live = Index(vec![
            part("a", json!({"pods": "5"}), json!({"pods": "1"})),
            part("b", json!({"pods": "5"}), json!({"pods": "1"})),
            foreign,
        ]);
        let budgets = plan(
            &owner(),
            &spec,
            &names(&["a", "c"]),
            &live,
            &mut Memories::new(),
        );
        let desired: Vec<&str> = budgets
            .desired
            .iter()
            .map(|d| d.key.namespace.as_str())
            .collect();
        assert!(!desired.contains(&"b"), "b left the budget: {desired:?}");
        assert!(desired.contains(&"a"));
    }
}
