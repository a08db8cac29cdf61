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
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::allocator::{self, Allocation, Amounts, Part, Write};
use crate::api::{
    ENFORCED_LABEL, FailureReason, LimitType, SHARED_QUOTA_LABEL, SharedQuotaStatus,
    SharedQuotaTemplate, TenantPolicySpec,
};
use crate::apply::Outcome;
use crate::diff::LiveIndex;
use crate::resources::{Desired, Kind, ObjectKey, Owner, shared_quota};
use crate::select::Assignment;

/// How long a written part may take to show in the cache before the write is taken as lost.
pub const UNSEEN_FOR: Duration = Duration::from_secs(10);

/// How long after quota admission last charged a part (its `status.used` grew) the part is left
/// as it is. A change of `spec.hard` has kube-controller-manager recount the part's use from its
/// informers; a pod admitted just before may not be in them yet, and the recount then drops its
/// charge, so the namespace may admit that much again beyond its part (measured in the README).
/// Waiting this long after the last charge lets the informers catch up. A use that falls (pods
/// deleted) charges nothing, so a part is lowered at once as its namespace scales down.
pub const SETTLE: Duration = Duration::from_millis(100);

/// A part charged again and again, never this long apart, is resized anyway once held this long:
/// holding is safe (any subset of the allocator's writes is), but others may be waiting.
pub const HELD_AT_MOST: Duration = Duration::from_secs(5);

/// What the step remembers between reconciles of one policy.
#[derive(Debug, Default)]
pub struct Memories {
    /// The allocator's memory, per `spec.sharedQuotas` item name.
    allocators: BTreeMap<String, allocator::Memory>,
    /// Parts written that the cache does not show yet. The allocator must not plan from a cache
    /// that lacks the controller's own last raise (it would hand that budget out twice), so a
    /// budget with such a part waits for the watch.
    unseen: BTreeMap<ObjectKey, Unseen>,
    /// Parts whose resize is held while they settle ([`SETTLE`]), since when.
    held: BTreeMap<ObjectKey, Instant>,
}

#[derive(Debug)]
struct Unseen {
    /// The resourceVersion the cache showed when the write was planned ("" for a creation).
    version: String,
    hard: Amounts,
    at: Instant,
}

/// A part write this run plans, to be remembered once its outcome is known.
#[derive(Debug)]
pub struct Planned {
    key: ObjectKey,
    version: String,
    hard: Amounts,
}

impl Memories {
    /// After the writes: the planned parts whose write was acknowledged, or whose outcome is
    /// unknown (a timeout may have landed), are unseen until the cache shows a newer version.
    pub fn written(&mut self, planned: Vec<Planned>, outcomes: &[Outcome], now: Instant) {
        for p in planned {
            let landed_or_unknown = outcomes.iter().any(|o| match o {
                Outcome::Written { key, .. } => *key == p.key,
                Outcome::Failed(f) => {
                    f.reason == FailureReason::ApplyFailed
                        && f.namespace == p.key.namespace
                        && f.name == p.key.name
                        && f.kind == p.key.kind.as_str()
                }
                _ => false,
            });
            if landed_or_unknown {
                let (version, hard) = (p.version, p.hard);
                self.unseen.insert(
                    p.key,
                    Unseen {
                        version,
                        hard,
                        at: now,
                    },
                );
            }
        }
    }
}

/// The parts to hold, and the state of each budget.
#[derive(Debug, Default)]
pub struct Budgets {
    pub desired: Vec<Desired>,
    pub states: Vec<SharedQuotaStatus>,
    /// Every allocation settled: nothing left to move once the writes are enforced.
    pub settled: bool,
    /// The part writes planned (for [`Memories::written`]).
    pub planned: Vec<Planned>,
    /// When to run again for the resizes held while parts settle, if any.
    pub recheck_in: Option<Duration>,
}

/// Sizes the parts of every budget of `spec` among `namespaces` (where the policy wins
/// sharedQuotas), from what `live` shows of them; `memories` is updated for the next run.
/// `bounded`: the namespaces where the policy's LimitRanges apply (it wins limitRanges there).
pub fn plan<L: LiveIndex + ?Sized>(
    owner: &Owner,
    spec: &TenantPolicySpec,
    namespaces: &BTreeSet<String>,
    bounded: &BTreeSet<String>,
    live: &L,
    memories: &mut Memories,
    now: Instant,
) -> Budgets {
    let mut budgets = Budgets {
        settled: true,
        ..Default::default()
    };
    let declared = |name: &str| spec.shared_quotas.iter().any(|q| q.name == name);
    memories.allocators.retain(|name, _| declared(name));
    memories.unseen.retain(|key, unseen| {
        let version = live
            .get(key)
            .map(|l| l.resource_version)
            .unwrap_or_default();
        declared(&key.name) && version == unseen.version && now - unseen.at < UNSEEN_FOR
    });
    for item in &spec.shared_quotas {
        // The CRD refuses what does not parse; validate.rs stalls the policy before this.
        let Ok(budget) = allocator::amounts(&item.hard) else {
            continue;
        };
        let mut parts = observe(owner, item, namespaces, live);
        // Time since each part was last charged, for those charged less than SETTLE ago.
        let mut settling = BTreeMap::new();
        for p in parts.iter_mut() {
            let key = key(&p.namespace, item);
            let charged = live
                .last_charged(&key)
                .map(|t| now.saturating_duration_since(t));
            let held_for = memories
                .held
                .get(&key)
                .map(|t| now.saturating_duration_since(*t));
            if let Some(charged) = charged.filter(|c| *c < SETTLE)
                && held_for.is_none_or(|h| h < HELD_AT_MOST)
            {
                p.settling = true;
                settling.insert(p.namespace.clone(), charged);
            }
        }
        let largest = pod_max(spec, &budget);
        for p in parts.iter_mut().filter(|p| bounded.contains(&p.namespace)) {
            p.pod_max = largest.clone();
        }
        let memory = memories.allocators.entry(item.name.clone()).or_default();
        let allocation = allocator::allocate(&budget, &parts, memory);
        let state = allocation.usage.to_status(&item.name, &budget);
        budgets.states.push(state);
        let unseen: BTreeMap<&str, &Amounts> = (memories.unseen.iter())
            .filter(|(k, _)| k.name == item.name)
            .map(|(k, u)| (k.namespace.as_str(), &u.hard))
            .collect();
        if !unseen.is_empty() {
            // Hold every part as written last; allocate again once the cache shows them.
            budgets.settled = false;
            budgets
                .desired
                .extend(sized_parts(item, namespaces, &parts, &unseen));
            continue;
        }
        budgets.settled &= allocation.settled(memory);
        memories
            .held
            .retain(|k, _| k.name != item.name || allocation.held.contains(&k.namespace));
        for namespace in &allocation.held {
            memories.held.entry(key(namespace, item)).or_insert(now);
            let remaining = SETTLE.saturating_sub(settling[namespace]);
            budgets.recheck_in = Some(budgets.recheck_in.map_or(remaining, |r| r.min(remaining)));
        }
        let versions = |ns: &str| {
            live.get(&key(ns, item))
                .map(|l| l.resource_version)
                .unwrap_or_default()
        };
        budgets
            .planned
            .extend(allocation.writes.iter().filter_map(|w| match w {
                Write::Create { namespace, hard } | Write::SetHard { namespace, hard } => {
                    Some(Planned {
                        key: key(namespace, item),
                        version: versions(namespace),
                        hard: hard.clone(),
                    })
                }
                Write::Delete { .. } => None,
            }));
        budgets
            .desired
            .extend(desired_parts(item, namespaces, &parts, &allocation));
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
    now: Instant,
) -> Budgets {
    let namespaces = &assignment.shared_namespaces;
    let bounded: BTreeSet<String> = (assignment.desired.iter())
        .filter(|d| d.key.kind == Kind::LimitRange)
        .map(|d| d.key.namespace.clone())
        .collect();
    let mut budgets = plan(owner, spec, namespaces, &bounded, live, memories, now);
    assignment.desired.append(&mut budgets.desired);
    budgets
}

/// The most one pod may request of each resource of `budget` under the policy's LimitRanges:
/// the smallest `max` of their `type: Pod` items (every LimitRange in a namespace applies, and
/// LimitRanger bounds a pod's requests and limits alike, so `requests.cpu`, `limits.cpu` and
/// `cpu` are all bounded by the `cpu` max). Resources no such item bounds are left out.
pub fn pod_max(spec: &TenantPolicySpec, budget: &Amounts) -> Amounts {
    let items = (spec.limit_ranges.iter())
        .flat_map(|l| &l.limits)
        .filter(|item| item.type_ == LimitType::Pod);
    let mut largest = Amounts::new();
    for item in items {
        for resource in budget.keys() {
            let name = (resource.strip_prefix("requests."))
                .or_else(|| resource.strip_prefix("limits."))
                .unwrap_or(resource);
            let max = item.max.as_ref().and_then(|m| m.get(name));
            let Some(max) = max.and_then(|q| crate::quantity::milli(&q.0)) else {
                continue;
            };
            let entry = largest.entry(resource.clone()).or_insert(max);
            *entry = (*entry).min(max);
        }
    }
    largest
}

/// Every part in the budget at the size `sizes` gives its namespace, else as it is.
fn sized_parts(
    item: &SharedQuotaTemplate,
    namespaces: &BTreeSet<String>,
    parts: &[Part],
    sizes: &BTreeMap<&str, &Amounts>,
) -> Vec<Desired> {
    parts
        .iter()
        .filter(|p| namespaces.contains(&p.namespace))
        .filter_map(|p| {
            let hard = sizes
                .get(p.namespace.as_str())
                .copied()
                .or(p.spec.as_ref())?;
            Some(part(item, &p.namespace, hard, enforced(p)))
        })
        .collect()
}

/// Whether kube-controller-manager has written the part's `status.hard` for every resource of
/// its spec, as the cache shows it (false for a part to create).
fn enforced(part: &Part) -> bool {
    match (&part.spec, &part.status) {
        (Some(spec), Some(status)) => spec.keys().all(|r| status.contains_key(r)),
        _ => false,
    }
}

fn part(item: &SharedQuotaTemplate, namespace: &str, hard: &Amounts, enforced: bool) -> Desired {
    let labels = BTreeMap::from([
        (SHARED_QUOTA_LABEL.to_owned(), item.name.clone()),
        (ENFORCED_LABEL.to_owned(), enforced.to_string()),
    ]);
    Desired::of(key(namespace, item), shared_quota::build(item, hard)).with_labels(labels)
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
            refused: live.refused(&key),
            pod_max: Amounts::new(),
            settling: false,
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
    sized_parts(item, namespaces, parts, &written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{Live, managed_labels};
    use serde_json::json;

    struct Index(Vec<(Live, Value)>);

    /// An index whose parts in `charged` were last charged at that instant.
    struct Charged<'a>(&'a Index, BTreeMap<String, Instant>);

    impl LiveIndex for Charged<'_> {
        fn get(&self, key: &ObjectKey) -> Option<Live> {
            self.0.get(key)
        }
        fn labelled_for(
            &self,
            policy: &str,
            keep: &dyn Fn(Kind, &str, &str) -> bool,
        ) -> Vec<ObjectKey> {
            self.0.labelled_for(policy, keep)
        }
        fn quota_status(&self, key: &ObjectKey) -> Option<Value> {
            self.0.quota_status(key)
        }
        fn last_charged(&self, key: &ObjectKey) -> Option<Instant> {
            self.1.get(&key.namespace).copied()
        }
    }

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
        let mut memories = Memories::default();
        let first = plan(
            &owner(),
            &spec,
            &names(&["a", "b"]),
            &BTreeSet::new(),
            &Index(vec![]),
            &mut memories,
            Instant::now(),
        );
        assert_eq!(first.desired.len(), 2, "{:?}", first.desired);
        for d in &first.desired {
            assert_eq!(d.key.name, "budget");
            assert_eq!(d.labels.as_ref().unwrap()[SHARED_QUOTA_LABEL], "budget");
            assert_eq!(d.labels.as_ref().unwrap()[ENFORCED_LABEL], "false");
            let set: Vec<String> = d.all_labels(&owner()).into_keys().collect();
            assert!(
                set.iter()
                    .all(|l| crate::api::TENANTRY_LABELS.contains(&l.as_str())),
                "the caches keep every label a part carries: {set:?}"
            );
        }
        assert!(!first.settled);
        let live = Index(vec![
            part("a", json!({"pods": "0"}), json!({"pods": "0"})),
            part("b", json!({"pods": "0"}), json!({"pods": "0"})),
        ]);
        let second = plan(
            &owner(),
            &spec,
            &names(&["a", "b"]),
            &BTreeSet::new(),
            &live,
            &mut memories,
            Instant::now(),
        );
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
        // Their status seen: relabelled in the same write that sizes them.
        for d in &second.desired {
            assert_eq!(d.labels.as_ref().unwrap()[ENFORCED_LABEL], "true");
        }
        assert_eq!(second.states[0].namespaces, 2);
    }

    #[test]
    fn the_largest_pod_is_the_smallest_pod_max_of_the_policys_limit_ranges() {
        let spec: TenantPolicySpec = serde_json::from_value(json!({
            "limitRanges": [
                {"name": "a", "limits": [
                    {"type": "Container", "max": {"cpu": "1"}},
                    {"type": "Pod", "max": {"cpu": "2", "memory": "4Gi"}},
                ]},
                {"name": "b", "limits": [{"type": "Pod", "max": {"cpu": "1500m"}}]},
            ],
            "sharedQuotas": [{"name": "budget", "hard": {"requests.cpu": "4"}}],
        }))
        .unwrap();
        let budget = Amounts::from([
            ("requests.cpu".to_owned(), 10_000),
            ("limits.memory".to_owned(), 8 << 40),
            ("pods".to_owned(), 5000),
        ]);
        // A Container max bounds containers, not a pod (it may have many): not counted.
        assert_eq!(
            pod_max(&spec, &budget),
            Amounts::from([
                ("requests.cpu".to_owned(), 1500),
                ("limits.memory".to_owned(), 4000 << 30),
            ])
        );
        // Only where the policy's LimitRanges apply.
        let live = Index(vec![
            part(
                "a",
                json!({"requests.cpu": "1"}),
                json!({"requests.cpu": "0"}),
            ),
            part(
                "b",
                json!({"requests.cpu": "1"}),
                json!({"requests.cpu": "0"}),
            ),
        ]);
        let budgets = plan(
            &owner(),
            &spec,
            &names(&["a", "b"]),
            &names(&["a"]),
            &live,
            &mut Memories::default(),
            Instant::now(),
        );
        let hard = |ns: &str| {
            let d = budgets
                .desired
                .iter()
                .find(|d| d.key.namespace == ns)
                .unwrap();
            d.spec["hard"]["requests.cpu"].as_str().unwrap().to_owned()
        };
        // Target headroom 1000m (4/(2*2)): a, with a LimitRange bounding a pod at 1500m, is
        // raised to the largest pod plus the target; b, which has 1000m, is left alone.
        assert_eq!((hard("a").as_str(), hard("b").as_str()), ("2500m", "1"));
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
            &BTreeSet::new(),
            &live,
            &mut Memories::default(),
            Instant::now(),
        );
        let desired: Vec<&str> = budgets
            .desired
            .iter()
            .map(|d| d.key.namespace.as_str())
            .collect();
        assert!(!desired.contains(&"b"), "b left the budget: {desired:?}");
        assert!(desired.contains(&"a"));
    }

    #[test]
    fn a_part_charged_moments_ago_is_resized_once_it_settles_or_has_waited_long_enough() {
        let spec = spec(json!({"pods": "20"}));
        let index = Index(vec![
            part("a", json!({"pods": "2"}), json!({"pods": "2"})),
            part("b", json!({"pods": "2"}), json!({"pods": "0"})),
        ]);
        let now = Instant::now();
        let charged = now - Duration::from_millis(40);
        let live = Charged(&index, BTreeMap::from([("a".to_owned(), charged)]));
        let mut memories = Memories::default();
        let run = |live: &Charged, memories: &mut Memories, at: Instant| {
            plan(
                &owner(),
                &spec,
                &names(&["a", "b"]),
                &BTreeSet::new(),
                live,
                memories,
                at,
            )
        };
        let first = run(&live, &mut memories, now);
        assert!(first.planned.is_empty(), "a, at its part, waits to settle");
        assert!(!first.settled);
        assert_eq!(first.recheck_in, Some(SETTLE - Duration::from_millis(40)));
        let a = |b: &Budgets| {
            (b.desired.iter())
                .find(|d| d.key.namespace == "a")
                .map(|d| d.spec["hard"]["pods"].clone())
        };
        assert_eq!(a(&first), Some(json!("2")), "held at its size");
        // Settled: raised, as without the wait.
        let settled = run(&live, &mut memories, charged + SETTLE);
        assert_eq!(settled.planned.len(), 1, "{:?}", settled.planned);
        assert_ne!(a(&settled), Some(json!("2")));
        assert_eq!(settled.recheck_in, None);

        // A use that never stays still: held no longer than HELD_AT_MOST.
        let mut memories = Memories::default();
        let mut at = now;
        while at < now + HELD_AT_MOST {
            let live = Charged(&index, BTreeMap::from([("a".to_owned(), at)]));
            assert!(run(&live, &mut memories, at).planned.is_empty());
            at += Duration::from_millis(500);
        }
        let live = Charged(&index, BTreeMap::from([("a".to_owned(), at)]));
        assert_eq!(run(&live, &mut memories, at).planned.len(), 1);
    }

    #[test]
    fn a_budget_waits_for_the_cache_to_show_its_own_last_writes() {
        let spec = spec(json!({"pods": "20"}));
        let live = Index(vec![
            part("a", json!({"pods": "2"}), json!({"pods": "2"})),
            part("b", json!({"pods": "2"}), json!({"pods": "0"})),
        ]);
        let mut memories = Memories::default();
        let now = Instant::now();
        let first = plan(
            &owner(),
            &spec,
            &names(&["a", "b"]),
            &BTreeSet::new(),
            &live,
            &mut memories,
            now,
        );
        assert!(!first.planned.is_empty(), "a, at its part, is raised");
        let raised: Vec<Outcome> = first
            .planned
            .iter()
            .map(|p| Outcome::Written {
                key: p.key.clone(),
                drift: None,
            })
            .collect();
        let held: Vec<(String, Value)> = first
            .desired
            .iter()
            .map(|d| (d.key.namespace.clone(), d.spec["hard"].clone()))
            .collect();
        memories.written(first.planned, &raised, now);
        // The cache still shows the old part (same resourceVersion): nothing is planned from it,
        // and the parts are held as written.
        let again = plan(
            &owner(),
            &spec,
            &names(&["a", "b"]),
            &BTreeSet::new(),
            &live,
            &mut memories,
            now,
        );
        assert!(again.planned.is_empty() && !again.settled);
        let held_again: Vec<(String, Value)> = again
            .desired
            .iter()
            .map(|d| (d.key.namespace.clone(), d.spec["hard"].clone()))
            .collect();
        assert_eq!(held_again, held);
        // Once the cache shows a newer version, or after UNSEEN_FOR, it allocates again.
        let later = now + UNSEEN_FOR;
        plan(
            &owner(),
            &spec,
            &names(&["a", "b"]),
            &BTreeSet::new(),
            &live,
            &mut memories,
            later,
        );
        assert!(memories.unseen.is_empty());
    }
}
