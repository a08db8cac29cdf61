use super::*;

fn amounts(pairs: &[(&str, Milli)]) -> Amounts {
    pairs.iter().map(|(r, m)| (r.to_string(), *m)).collect()
}

/// Parts as the API server holds them, and the allocator's memory.
#[derive(Default)]
struct Cluster {
    parts: BTreeMap<String, Part>,
    memory: Memory,
}

impl Cluster {
    fn with_namespaces(names: &[&str]) -> Self {
        let mut cluster = Cluster::default();
        for name in names {
            cluster.join(name, &[]);
        }
        cluster
    }

    fn join(&mut self, namespace: &str, used: &[(&str, Milli)]) {
        self.parts.insert(
            namespace.into(),
            Part {
                namespace: namespace.into(),
                used: amounts(used),
                selected: true,
                ..Part::default()
            },
        );
    }

    fn part(&mut self, namespace: &str) -> &mut Part {
        self.parts.get_mut(namespace).unwrap()
    }

    fn run(&mut self, budget: &Amounts) -> Vec<Write> {
        let parts: Vec<Part> = self.parts.values().cloned().collect();
        let allocation = allocate(budget, &parts, &self.memory);
        self.memory = allocation.memory;
        for write in &allocation.writes {
            match write {
                Write::Create { namespace, hard } | Write::SetHard { namespace, hard } => {
                    self.part(namespace).spec = Some(hard.clone())
                }
                Write::Delete { namespace } => {
                    self.parts.remove(namespace);
                }
            }
        }
        allocation.writes
    }

    /// kube-controller-manager copies spec to status, for one part.
    fn copy(&mut self, namespace: &str) {
        let part = self.part(namespace);
        part.status = part.spec.clone();
    }

    fn copy_all(&mut self) {
        let names: Vec<String> = self.parts.keys().cloned().collect();
        names.iter().for_each(|n| self.copy(n));
    }

    /// Runs and copies until nothing is written (at most `rounds` times).
    fn settle(&mut self, budget: &Amounts, rounds: usize) -> usize {
        for round in 0..rounds {
            let writes = self.run(budget);
            self.copy_all();
            if writes.is_empty() {
                return round;
            }
        }
        panic!("not settled after {rounds} rounds");
    }

    fn hard(&self, namespace: &str, resource: &str) -> Milli {
        self.parts[namespace].spec.as_ref().unwrap()[resource]
    }

    fn headroom(&self, namespace: &str, resource: &str) -> Milli {
        self.hard(namespace, resource) - used(&self.parts[namespace], resource)
    }

    /// Fills a part up to what admission enforces.
    fn use_up(&mut self, namespace: &str, resource: &str) {
        let enforced = self.parts[namespace].status.as_ref().unwrap()[resource];
        self.part(namespace).used.insert(resource.into(), enforced);
    }

    fn set_used(&mut self, namespace: &str, resource: &str, value: Milli) {
        self.part(namespace).used.insert(resource.into(), value);
    }

    /// The sum of the enforced parts, max(spec, status).
    fn enforced(&self, resource: &str) -> Milli {
        self.parts
            .values()
            .filter_map(|p| {
                let spec = p.spec.as_ref()?.get(resource).copied()?;
                let status = p.status.as_ref().and_then(|s| s.get(resource)).copied();
                Some(spec.max(status.unwrap_or(0)))
            })
            .sum()
    }
}

const PODS: &str = "pods";

fn pods(n: Milli) -> Amounts {
    amounts(&[(PODS, n * 1000)])
}

#[test]
fn new_namespaces_get_a_chunk_each_and_the_rest_stays_free() {
    let mut cluster = Cluster::with_namespaces(&["a", "b", "c", "d"]);
    let writes = cluster.run(&pods(20));
    assert_eq!(writes.len(), 4);
    assert!(writes.iter().all(|w| matches!(w, Write::Create { .. })));
    for ns in ["a", "b", "c", "d"] {
        assert_eq!(
            cluster.hard(ns, PODS),
            0,
            "created at zero: its use is unknown"
        );
    }
    // Nothing is raised while a part waits for its status.
    cluster.copy("a");
    assert!(cluster.run(&pods(20)).is_empty());
    cluster.copy_all();
    let writes = cluster.run(&pods(20));
    assert_eq!(writes.len(), 4);
    // A chunk of hard/2n = 2.5, rounded down to whole pods.
    for ns in ["a", "b", "c", "d"] {
        assert_eq!(cluster.hard(ns, PODS), 2000);
    }
    cluster.copy_all();
    assert!(cluster.run(&pods(20)).is_empty(), "a fixed point");
}

#[test]
fn a_namespace_that_uses_up_its_part_is_raised_from_free_budget_alone() {
    let mut cluster = Cluster::with_namespaces(&["a", "b", "c", "d"]);
    cluster.settle(&pods(20), 3);
    cluster.use_up("b", PODS);
    let writes = cluster.run(&pods(20));
    assert_eq!(
        writes,
        vec![Write::SetHard {
            namespace: "b".into(),
            hard: pods(4)
        }],
        "used 2 plus the target headroom of 2; nobody else is written"
    );
}

#[test]
fn a_part_charged_moments_ago_is_left_as_it_is_until_it_settles() {
    let mut cluster = Cluster::with_namespaces(&["a", "b", "c", "d"]);
    cluster.settle(&pods(20), 3);
    cluster.use_up("b", PODS);
    cluster.part("b").settling = true;
    let before = cluster.memory.clone();
    let parts: Vec<Part> = cluster.parts.values().cloned().collect();
    let allocation = allocate(&pods(20), &parts, &cluster.memory);
    assert!(allocation.writes.is_empty(), "{:?}", allocation.writes);
    assert_eq!(allocation.held, vec!["b".to_owned()]);
    assert!(!allocation.settled(&before), "a held resize is still to do");
    assert_eq!(
        allocation.memory, before,
        "nothing remembered of the held resize"
    );
    // Settled: the same raise as without the wait, and nothing held.
    cluster.part("b").settling = false;
    assert_eq!(
        cluster.run(&pods(20)),
        vec![Write::SetHard {
            namespace: "b".into(),
            hard: pods(4)
        }]
    );
}

#[test]
fn a_settling_part_held_back_leaves_its_budget_free_and_others_are_still_resized() {
    // a holds surplus, b and c used theirs up; b is settling, c is not.
    let mut cluster = Cluster::with_namespaces(&["a", "b", "c"]);
    cluster.run(&pods(12));
    cluster.part("a").spec = Some(pods(2));
    cluster.part("b").spec = Some(pods(2));
    cluster.part("c").spec = Some(pods(2));
    cluster.memory = Memory::default();
    cluster.copy_all();
    cluster.use_up("b", PODS);
    cluster.use_up("c", PODS);
    cluster.part("b").settling = true;
    let parts: Vec<Part> = cluster.parts.values().cloned().collect();
    let allocation = allocate(&pods(12), &parts, &cluster.memory);
    assert_eq!(allocation.held, vec!["b".to_owned()]);
    let raised: Vec<&str> = allocation.writes.iter().map(Write::namespace).collect();
    assert_eq!(raised, vec!["c"], "c is raised; b waits");
    // c gets what it gets when b is resized too; b's part is as it was.
    let mut unheld = parts.clone();
    unheld.iter_mut().for_each(|p| p.settling = false);
    let both = allocate(&pods(12), &unheld, &cluster.memory).writes;
    assert!(both.iter().any(|w| w.namespace() == "b"), "{both:?}");
    assert!(both.contains(&allocation.writes[0]), "{both:?}");
}

/// a holds 8 pods of headroom it does not use, b (after a restart, so what is there is
/// taken as the allocator's own) has used up its 2.
fn lopsided() -> Cluster {
    let mut cluster = Cluster::with_namespaces(&["a", "b"]);
    cluster.run(&pods(10));
    cluster.part("a").spec = Some(pods(8));
    cluster.part("b").spec = Some(pods(2));
    cluster.memory = Memory::default();
    cluster.copy_all();
    cluster.use_up("b", PODS);
    cluster
}

#[test]
fn a_raise_waits_until_the_lowering_paying_for_it_is_enforced() {
    let mut cluster = lopsided();
    let writes = cluster.run(&pods(10));
    assert_eq!(
        writes,
        vec![Write::SetHard {
            namespace: "a".into(),
            hard: pods(6)
        }],
        "the lowering alone (of what b needs): the raise is withheld"
    );
    assert_eq!(cluster.enforced(PODS), 10_000);
    // Not enforced yet: still withheld, however often it runs.
    assert!(cluster.run(&pods(10)).is_empty());
    cluster.copy("a");
    let writes = cluster.run(&pods(10));
    assert_eq!(
        writes,
        vec![Write::SetHard {
            namespace: "b".into(),
            hard: pods(4)
        }],
        "used 2 plus the target headroom of 2"
    );
    assert_eq!(cluster.enforced(PODS), 10_000);
}

#[test]
fn a_lowering_is_credited_only_with_what_it_provably_freed() {
    let mut cluster = lopsided();
    cluster.run(&pods(10)); // lowers a from 8 to 6
    // Before the lowering is enforced, a admits 7 pods against its old status: what it
    // still holds above its new size cannot go to b.
    cluster.set_used("a", PODS, 7000);
    let writes = cluster.run(&pods(10));
    assert!(
        writes.iter().all(|w| w.namespace() != "b"),
        "a commits 8 (its status), b cannot grow: {writes:?}"
    );
    // 6 of them are gone by the time the lowering is enforced: then b gets its share.
    cluster.set_used("a", PODS, 1000);
    cluster.copy("a");
    cluster.settle(&pods(10), 4);
    assert_eq!(cluster.hard("b", PODS), 4000);
    assert!(cluster.enforced(PODS) <= 10_000);
}

#[test]
fn a_peak_above_the_new_size_withholds_the_raise() {
    let mut cluster = lopsided();
    cluster.run(&pods(10)); // lowers a to 6
    cluster.set_used("a", PODS, 8000); // a fills its old status before the copy
    cluster.copy("a");
    let writes = cluster.run(&pods(10));
    assert!(
        writes.iter().all(|w| w.namespace() != "b"),
        "a uses 8: nothing was freed for b: {writes:?}"
    );
    // a, now over its part, is shrunk to use or left: never raised above the budget.
    cluster.copy_all();
    assert!(cluster.enforced(PODS) <= 10_000);
}

#[test]
fn usage_over_the_budget_shrinks_parts_to_use_and_reports_the_overshoot() {
    let mut cluster = Cluster::with_namespaces(&["a", "b"]);
    cluster.settle(&pods(10), 3);
    cluster.join("late", &[(PODS, 12_000)]); // its pods existed before it joined
    cluster.settle(&pods(10), 5);
    let total: Milli = ["a", "b", "late"]
        .iter()
        .map(|n| cluster.hard(n, PODS))
        .sum();
    assert!(
        total <= 10_000,
        "the parts never add up above hard: {total}"
    );
    for ns in ["a", "b", "late"] {
        assert!(cluster.headroom(ns, PODS) <= 0, "{ns} admits nothing new");
    }
    let parts: Vec<Part> = cluster.parts.values().cloned().collect();
    let usage = allocate(&pods(10), &parts, &cluster.memory).usage;
    assert_eq!(usage.over_budget, pods(2));
    assert_eq!(usage.exhausted, vec![PODS.to_string()]);
    assert_eq!(usage.namespaces, 3);

    // Use falls below hard: headroom again.
    cluster.set_used("late", PODS, 4000);
    cluster.settle(&pods(10), 5);
    assert!(cluster.headroom("late", PODS) > 0);
    assert!(cluster.enforced(PODS) <= 10_000);
}

#[test]
fn hard_lowered_in_git_lowers_first_and_raises_nothing_until_it_fits() {
    let mut cluster = Cluster::with_namespaces(&["a", "b", "c"]);
    cluster.settle(&pods(30), 3);
    cluster.use_up("a", PODS);
    cluster.settle(&pods(30), 5);
    let writes = cluster.run(&pods(6));
    assert!(!writes.is_empty());
    for write in &writes {
        let Write::SetHard { namespace, hard } = write else {
            panic!("{write:?}")
        };
        let before = cluster.parts[namespace].status.as_ref().unwrap()[PODS];
        assert!(hard[PODS] <= before, "{write:?} raises");
    }
    cluster.copy_all();
    cluster.settle(&pods(6), 5);
    assert!(cluster.enforced(PODS) <= 6000);
}

#[test]
fn an_edited_part_is_restored_lowering_first() {
    let mut cluster = Cluster::with_namespaces(&["a", "b"]);
    cluster.settle(&pods(10), 3);
    let ours = cluster.hard("a", PODS);
    cluster.part("a").spec = Some(pods(9)); // someone raises a by hand
    let writes = cluster.run(&pods(10));
    assert_eq!(
        writes,
        vec![Write::SetHard {
            namespace: "a".into(),
            hard: amounts(&[(PODS, ours)])
        }]
    );
    cluster.copy_all();
    cluster.part("a").spec = Some(pods(0)); // and lowers it
    cluster.copy("a");
    let writes = cluster.run(&pods(10));
    assert_eq!(
        writes,
        vec![Write::SetHard {
            namespace: "a".into(),
            hard: amounts(&[(PODS, ours)])
        }],
        "restored, as it fits"
    );
}

#[test]
fn a_namespace_leaving_is_deleted_and_counts_until_gone() {
    let mut cluster = Cluster::with_namespaces(&["a", "b"]);
    cluster.settle(&pods(4), 3);
    cluster.use_up("a", PODS);
    cluster.use_up("b", PODS);
    cluster.settle(&pods(4), 3);
    cluster.part("b").selected = false;
    let parts: Vec<Part> = cluster.parts.values().cloned().collect();
    let writes = allocate(&pods(4), &parts, &cluster.memory).writes;
    assert_eq!(
        writes,
        vec![Write::Delete {
            namespace: "b".into()
        }],
        "b's part still counts: a is not raised in the same run"
    );
    cluster.run(&pods(4));
    assert!(!cluster.parts.contains_key("b"));
    cluster.use_up("a", PODS);
    cluster.settle(&pods(4), 3);
    assert_eq!(
        cluster.hard("a", PODS),
        4000,
        "b's share went to a once b was gone"
    );
}

#[test]
fn a_rebalance_writes_only_the_parts_it_moves_headroom_between() {
    let names: Vec<String> = (0..1000).map(|i| format!("ns-{i:04}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    // Plentiful: a chunk of 1 each, 2000 free. Each time ns-0007 fills its part, one raise.
    let mut cluster = Cluster::with_namespaces(&refs);
    let budget = pods(3000);
    cluster.settle(&budget, 3);
    for round in 0..30 {
        cluster.use_up("ns-0007", PODS);
        let writes = cluster.run(&budget);
        assert_eq!(writes.len(), 1, "round {round}: {writes:?}");
        cluster.copy_all();
    }
    // Scarce: every pod of the budget is someone's headroom. Each time ns-0007 fills its
    // part, one namespace with headroom is lowered, then ns-0007 raised once that is enforced.
    let mut cluster = Cluster::with_namespaces(&refs);
    let budget = pods(1000);
    cluster.settle(&budget, 3);
    for round in 0..10 {
        cluster.use_up("ns-0007", PODS);
        let lowered = cluster.run(&budget);
        cluster.copy_all();
        let raised = cluster.run(&budget);
        cluster.copy_all();
        assert_eq!((lowered.len(), raised.len()), (1, 1), "round {round}");
        assert_eq!(raised[0].namespace(), "ns-0007");
    }
    assert_eq!(cluster.hard("ns-0007", PODS), 11_000);
    assert!(cluster.enforced(PODS) <= 1_000_000);
}

#[test]
fn the_last_pods_go_to_a_namespace_that_asks_and_stay_there() {
    let mut cluster = Cluster::with_namespaces(&["a", "b"]);
    let budget = pods(4);
    cluster.settle(&budget, 3);
    // b goes idle at 0; a asks until the whole budget is in use.
    for _ in 0..6 {
        cluster.use_up("a", PODS);
        cluster.settle(&budget, 4);
    }
    assert_eq!(cluster.hard("a", PODS), 4000);
    assert_eq!(cluster.hard("b", PODS), 0);
    assert_eq!(cluster.settle(&budget, 2), 0, "no back and forth");
}

#[test]
fn two_namespaces_each_holding_half_of_a_refused_request_do_not_both_wait() {
    let cpu = |m: Milli| amounts(&[("requests.cpu", m)]);
    let budget = cpu(2000);
    let mut cluster = Cluster::with_namespaces(&["a", "b"]);
    for ns in ["a", "b"] {
        let part = cluster.part(ns);
        part.spec = Some(cpu(1000));
        part.status = Some(cpu(1000));
        part.used = cpu(950);
        part.refused = cpu(100);
    }
    // The lowering that pays first, enforced; then the raise it paid for.
    let mut writes = cluster.run(&budget);
    cluster.copy_all();
    writes.extend(cluster.run(&budget));
    cluster.copy_all();
    let headroom = [
        cluster.headroom("a", "requests.cpu"),
        cluster.headroom("b", "requests.cpu"),
    ];
    assert!(
        headroom.contains(&100),
        "one of them fits its 100m pod: {headroom:?} {writes:?}"
    );
    let sum = cluster.hard("a", "requests.cpu") + cluster.hard("b", "requests.cpu");
    assert!(sum <= 2000, "{sum}");
}

#[test]
fn a_namespace_asking_in_small_requests_takes_headroom_a_stuck_one_cannot_use_in_chunks() {
    let cpu = |m: Milli| amounts(&[("requests.cpu", m)]);
    let budget = cpu(2000);
    let mut cluster = Cluster::with_namespaces(&["a", "b"]);
    // The budget is nearly in use: a holds 265m it cannot use for its 266m pod; b fills
    // its part with 1m pods and is refused the next.
    for (ns, used, refused) in [("a", 735, 266), ("b", 1000, 1)] {
        let part = cluster.part(ns);
        part.spec = Some(cpu(1000));
        part.status = Some(cpu(1000));
        part.used = cpu(used);
        part.refused = cpu(refused);
    }
    let mut rounds = 0;
    loop {
        assert!(rounds < 20, "still moving after {rounds} rounds");
        let writes = cluster.run(&budget);
        cluster.copy_all();
        assert!(cluster.enforced("requests.cpu") <= 2000);
        if writes.is_empty() {
            break;
        }
        // b's pods fill what it got, and its next one is refused.
        cluster.use_up("b", "requests.cpu");
        cluster.part("b").refused = cpu(1);
        rounds += 1;
    }
    assert_eq!(
        cluster.headroom("a", "requests.cpu"),
        0,
        "a's 266m pod cannot fit in the 265m left, so b's pods have it all"
    );
    assert_eq!(cluster.hard("b", "requests.cpu"), 1265);
}

#[test]
fn a_refused_request_larger_than_the_headroom_is_made_to_fit() {
    let mut cluster = Cluster::with_namespaces(&["a", "b"]);
    let cpu = |m| amounts(&[("requests.cpu", m)]);
    let budget = cpu(2000);
    cluster.settle(&budget, 3);
    assert_eq!(cluster.hard("a", "requests.cpu"), 500);
    // a uses 200m and its next pod asks 350m: 300m of headroom is above half the target, so
    // use alone would not move anything.
    cluster.set_used("a", "requests.cpu", 200);
    assert!(cluster.run(&budget).is_empty());
    cluster.part("a").refused = cpu(350);
    let writes = cluster.run(&budget);
    assert_eq!(
        writes,
        vec![Write::SetHard {
            namespace: "a".into(),
            hard: cpu(700)
        }],
        "use + the target (500m), which holds the 350m"
    );
    cluster.copy_all();
    assert_eq!(
        cluster.settle(&budget, 2),
        0,
        "the refusal, still reported, is met"
    );
}

#[test]
fn while_budget_is_free_a_part_has_room_for_the_largest_pod_its_limit_range_allows() {
    let mut cluster = Cluster::with_namespaces(&["a", "b"]);
    let cpu = |m| amounts(&[("requests.cpu", m)]);
    let budget = cpu(2000);
    cluster.settle(&budget, 3);
    // As in the test above, but the 350m pod is created directly: refused without an
    // Event, it is never reported. The LimitRange bounds a pod at 400m.
    cluster.set_used("a", "requests.cpu", 200);
    assert!(cluster.run(&budget).is_empty(), "300m of 500m is left");
    for ns in ["a", "b"] {
        cluster.part(ns).pod_max = cpu(400);
    }
    let writes = cluster.run(&budget);
    assert_eq!(
        writes,
        vec![Write::SetHard {
            namespace: "a".into(),
            hard: cpu(1100)
        }],
        "use + the largest pod + the target, from the free budget; b already has 500m"
    );
    cluster.copy_all();
    assert_eq!(cluster.settle(&budget, 2), 0, "a fixed point");
    // One more pod of 100m: 800m of headroom left, no write for it.
    cluster.set_used("a", "requests.cpu", 300);
    assert!(cluster.run(&budget).is_empty());
}

#[test]
fn room_for_the_largest_pod_is_never_taken_from_what_others_are_meant_to_keep() {
    let cpu = |m: Milli| amounts(&[("requests.cpu", m)]);
    let budget = cpu(1000);
    let mut cluster = Cluster::with_namespaces(&["a", "b"]);
    for ns in ["a", "b"] {
        let part = cluster.part(ns);
        part.spec = Some(cpu(500));
        part.status = Some(cpu(500));
        part.used = cpu(300);
        part.pod_max = cpu(350);
    }
    // Nothing is free and neither holds more than its target: neither gives up its 200m for
    // a pod that may never come.
    assert_eq!(cluster.settle(&budget, 2), 0);
    assert_eq!(cluster.hard("a", "requests.cpu"), 500);
    // b's use falls: it holds 500m of headroom, above its target (250m) and its largest pod
    // (350m); a gets the 150m it lacks from what b holds beyond them.
    cluster.set_used("b", "requests.cpu", 0);
    cluster.settle(&budget, 4);
    assert_eq!(cluster.headroom("a", "requests.cpu"), 350);
    assert_eq!(cluster.headroom("b", "requests.cpu"), 350);
    assert!(cluster.enforced("requests.cpu") <= 1000);
}

#[test]
fn cpu_moves_in_millis_and_pods_in_whole_units() {
    assert_eq!(step("requests.cpu"), 1);
    assert_eq!(step("cpu"), 1);
    assert_eq!(step("pods"), 1000);
    assert_eq!(step("requests.memory"), 1000);
    let mut cluster = Cluster::with_namespaces(&["a", "b", "c"]);
    let budget = amounts(&[("requests.cpu", 1000)]);
    cluster.settle(&budget, 3);
    assert_eq!(cluster.hard("a", "requests.cpu"), 166);
}

#[test]
fn a_resource_a_part_lacks_limits_nothing_and_blocks_raises_until_added() {
    let mut cluster = Cluster::with_namespaces(&["a", "b"]);
    cluster.settle(&pods(10), 3);
    let budget = amounts(&[(PODS, 10_000), ("services", 4000)]);
    let writes = cluster.run(&budget);
    assert_eq!(writes.len(), 2, "{writes:?}");
    for ns in ["a", "b"] {
        assert!(cluster.hard(ns, "services") <= 2000);
    }
    cluster.copy_all();
    assert_eq!(cluster.settle(&budget, 3), 0);
}

#[test]
fn the_report_sums_use_and_names_what_is_exhausted() {
    let mut cluster = Cluster::with_namespaces(&["a", "b"]);
    cluster.settle(&pods(4), 3);
    cluster.set_used("a", PODS, 1000);
    let parts: Vec<Part> = cluster.parts.values().cloned().collect();
    let usage = allocate(&pods(4), &parts, &cluster.memory).usage;
    assert_eq!(usage.used, pods(1));
    assert!(usage.exhausted.is_empty());
    assert_eq!(usage.namespaces, 2);
    let status = usage.to_status("team", &pods(4));
    assert_eq!(status.hard["pods"], Quantity("4".into()));
    assert_eq!(status.used["pods"], Quantity("1".into()));
    assert_eq!(status.namespaces, 2);
    assert_eq!(
        quantities(&amounts(&[("requests.cpu", 1500), (PODS, 3000)])),
        BTreeMap::from([
            ("pods".to_string(), Quantity("3".into())),
            ("requests.cpu".to_string(), Quantity("1500m".into()))
        ])
    );
}

#[test]
fn a_request_that_can_never_fit_is_named_and_leaves_the_others_their_room() {
    // A 4 CPU budget over three namespaces; `typo` asked for `cpu: 100` where 100m was meant.
    let cpu = |m: Milli| amounts(&[("requests.cpu", m)]);
    let budget = cpu(4000);
    let mut cluster = Cluster::with_namespaces(&["typo", "web", "idle"]);
    // typo ran 2 CPU of pods; its rollout then replaced them with pods of the typo: the old
    // ones are gone, every new one is refused.
    cluster.part("typo").used = cpu(2000);
    cluster.settle(&budget, 6);
    cluster.part("typo").used = cpu(0);
    cluster.part("typo").refused = cpu(100_000);
    cluster.settle(&budget, 6);
    let typo = cluster.hard("typo", "requests.cpu");
    // web then asks for 6 pods of 500m (3 CPU) and is refused at each step until it has them.
    for _ in 0..12 {
        let headroom = cluster.headroom("web", "requests.cpu");
        let used = cluster
            .part("web")
            .used
            .get("requests.cpu")
            .copied()
            .unwrap_or(0);
        if used >= 3000 {
            break;
        }
        if headroom >= 500 {
            cluster.part("web").used = cpu(used + 500);
            cluster.part("web").refused = Amounts::new();
        } else {
            cluster.part("web").refused = cpu(500);
        }
        cluster.settle(&budget, 6);
    }
    assert_eq!(
        cluster.part("web").used["requests.cpu"],
        3000,
        "web got its 6 pods"
    );
    assert!(
        cluster.hard("typo", "requests.cpu") <= typo,
        "the hopeless request was granted nothing"
    );
    let parts: Vec<Part> = cluster.parts.values().cloned().collect();
    let usage = allocate(&budget, &parts, &cluster.memory).usage;
    assert_eq!(
        usage.too_large,
        [("typo".to_owned(), "requests.cpu".to_owned(), 100_000)]
    );
    let sum: Milli = ["typo", "web", "idle"]
        .iter()
        .map(|ns| cluster.hard(ns, "requests.cpu"))
        .sum();
    assert!(sum <= 4000, "{sum}");
}
