use super::*;
use crate::model::object::{Live, managed_labels};
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
    let mut memories = BudgetMemories::default();
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
    let total: i128 =
        second
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
        &mut BudgetMemories::default(),
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
        &mut BudgetMemories::default(),
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
    let mut memories = BudgetMemories::default();
    let run = |live: &Charged, memories: &mut BudgetMemories, at: Instant| {
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
    let mut memories = BudgetMemories::default();
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
    let mut memories = BudgetMemories::default();
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
