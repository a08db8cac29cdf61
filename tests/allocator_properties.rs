//! The shared-quota allocator against kube-controller-manager as an adversary.
//!
//! A model cluster holds each namespace's part (spec.hard, status.hard) and its use. Random
//! steps: the allocator runs and its writes are applied one at a time (sometimes only some of
//! them, as when writes fail), with spec->status copies of random parts between any two writes;
//! copies alone, in random order; use rising as admission allows (up to the enforced
//! status.hard; a part without status admits nothing here: the window is the controller's to
//! close) and falling; namespaces joining (with use they already had) and leaving; an admin
//! editing a part; hard changed in git; the controller restarting (its memory lost).
//!
//! Checked after every write, copy and change of use, for every resource: the sum of the
//! enforced parts, max(spec, status), stays at most hard, or (after hard was lowered, a
//! namespace joined over the budget or an admin raised a part) never grows while above it; the
//! same for the sum of max(spec, status, used), so admission can never take use beyond hard.
//! Then the namespaces ask for what they want, one request at a time (a pod, or a CPU request of
//! a random size, admitted whole or refused; the refusal is passed to the allocator as the
//! controller would read it from Events), rounds of run / copy / use follow, and within a
//! bounded number of rounds the allocator reaches a fixed point (it writes nothing on its own
//! converged output), at which a namespace that wants more than its part only waits when no
//! budget is left unallocated.

use std::collections::BTreeMap;

use proptest::prelude::*;
use tenantry::model::quantity::{Amounts, Milli};
use tenantry::pipeline::allocator::{self, Memory, Part, Write};

const RESOURCES: [&str; 2] = ["pods", "requests.cpu"];
/// Rounds the model runs after the random steps to reach the fixed point.
const ROUNDS: usize = 400;

#[derive(Clone, Debug)]
struct Namespace {
    name: String,
    selected: bool,
    used: Amounts,
    /// What the namespace's workloads would use, given room.
    wants: Amounts,
    /// The size of one of its requests (a pod, with its CPU request): admitted whole or refused.
    request: Amounts,
    spec: Option<Amounts>,
    status: Option<Amounts>,
    /// Its pods are created directly by a user: a refusal is never reported (no Event).
    direct: bool,
    /// The most one of its pods may request, where a LimitRange bounds it (at least `request`).
    pod_max: Amounts,
}

#[derive(Clone, Debug)]
enum Step {
    /// Run the allocator; the seed decides which writes are applied and the copies between them.
    Run(u64),
    Copy(usize),
    Grow(usize, usize, Milli),
    Shrink(usize, usize, Milli),
    Leave(usize),
    Join(usize),
    /// An admin sets one resource of a part.
    Edit(usize, usize, Milli),
    /// hard changed in git.
    Budget(usize, Milli),
    /// The controller restarts: the allocator's memory is lost.
    Restart,
}

struct Model {
    budget: Amounts,
    namespaces: Vec<Namespace>,
    memory: Memory,
    /// Per resource: the sums of max(spec, status) and of max(spec, status, used) at the last check.
    enforced: Vec<Milli>,
    committed: Vec<Milli>,
    rng: u64,
}

impl Model {
    fn new(budget: Amounts, namespaces: Vec<Namespace>) -> Self {
        let mut model = Model {
            budget,
            namespaces,
            memory: Memory::default(),
            enforced: vec![0; RESOURCES.len()],
            committed: vec![0; RESOURCES.len()],
            rng: 1,
        };
        model.rebase();
        model
    }

    fn random(&mut self) -> u64 {
        // xorshift64: the interleavings follow from the case's seed, so failures replay.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn parts(&self) -> Vec<Part> {
        self.namespaces
            .iter()
            .filter(|ns| ns.selected || ns.spec.is_some())
            .map(|ns| Part {
                namespace: ns.name.clone(),
                spec: ns.spec.clone(),
                status: ns.status.clone(),
                // kube-controller-manager reports use once it has synced the quota.
                used: if ns.status.is_some() {
                    ns.used.clone()
                } else {
                    Amounts::new()
                },
                selected: ns.selected,
                refused: self.refused(ns),
                pod_max: ns.pod_max.clone(),
                settling: false,
            })
            .collect()
    }

    fn sums(&self) -> (Vec<Milli>, Vec<Milli>) {
        let mut enforced = vec![0; RESOURCES.len()];
        let mut committed = vec![0; RESOURCES.len()];
        for ns in &self.namespaces {
            let Some(spec) = &ns.spec else { continue };
            for (k, r) in RESOURCES.iter().enumerate() {
                let s = spec.get(*r).copied().unwrap_or(0);
                let h = ns.status.as_ref().and_then(|st| st.get(*r)).copied();
                let u = if ns.status.is_some() {
                    ns.used.get(*r).copied().unwrap_or(0)
                } else {
                    0
                };
                enforced[k] += s.max(h.unwrap_or(0));
                committed[k] += s.max(h.unwrap_or(0)).max(u);
            }
        }
        (enforced, committed)
    }

    /// After an exogenous change: the new sums are the baseline.
    fn rebase(&mut self) {
        (self.enforced, self.committed) = self.sums();
    }

    fn check(&mut self, what: &str) {
        let (enforced, committed) = self.sums();
        for (k, r) in RESOURCES.iter().enumerate() {
            let hard = self.budget[*r];
            assert!(
                enforced[k] <= hard || enforced[k] <= self.enforced[k],
                "{what}: {r}: enforced parts sum to {} > hard {hard} (was {})\n{:#?}",
                enforced[k],
                self.enforced[k],
                self.namespaces
            );
            assert!(
                committed[k] <= hard || committed[k] <= self.committed[k],
                "{what}: {r}: max(spec, status, used) sums to {} > hard {hard} (was {})\n{:#?}",
                committed[k],
                self.committed[k],
                self.namespaces
            );
        }
        (self.enforced, self.committed) = (enforced, committed);
    }

    fn index(&self, namespace: &str) -> usize {
        self.namespaces
            .iter()
            .position(|ns| ns.name == namespace)
            .unwrap()
    }

    fn copy(&mut self, i: usize) {
        let ns = &mut self.namespaces[i];
        if ns.spec.is_none() {
            return;
        }
        let first = ns.status.is_none();
        ns.status = ns.spec.clone();
        if first {
            self.rebase(); // its use, there before, is reported from now on
        } else {
            self.check("copy");
        }
    }

    fn apply(&mut self, write: &Write) {
        let i = self.index(write.namespace());
        let ns = &mut self.namespaces[i];
        match write {
            Write::Create { hard, .. } => {
                assert!(ns.spec.is_none(), "create over an existing part");
                ns.spec = Some(hard.clone());
            }
            Write::SetHard { hard, .. } => ns.spec = Some(hard.clone()),
            Write::Delete { .. } => {
                assert!(
                    !ns.selected,
                    "deleting the part of a namespace in the budget"
                );
                ns.spec = None;
                ns.status = None;
            }
        }
        self.check(&format!("{write:?}"));
    }

    /// One allocator run, its writes applied in order (a write is dropped, as if it failed, with
    /// `drop_one_in` chance), random copies after each. Returns 0 when the run was settled.
    fn run(&mut self, seed: u64, drop_one_in: u64) -> usize {
        self.rng = seed | 1;
        let mut parts = self.parts();
        if drop_one_in > 0 {
            // Some parts were charged moments ago: their resizes are held (Part::settling).
            for part in &mut parts {
                part.settling = self.random().is_multiple_of(drop_one_in);
            }
        }
        let allocation = allocator::allocate(&self.budget, &parts, &self.memory);
        assert_lowers_first(&allocation.writes, &parts);
        let settled = allocation.settled(&self.memory);
        self.memory = allocation.memory;
        for write in &allocation.writes {
            if drop_one_in > 0 && self.random().is_multiple_of(drop_one_in) {
                continue;
            }
            self.apply(write);
            while self.random().is_multiple_of(3) {
                let i = (self.random() % self.namespaces.len() as u64) as usize;
                self.copy(i);
            }
        }
        // Learning something (a lowering seen enforced) asks for another run, as it would of
        // the controller.
        if settled {
            0
        } else {
            allocation.writes.len().max(1)
        }
    }

    /// Use rising as admission allows: up to the enforced status.hard (nothing without one).
    fn grow(&mut self, i: usize, r: &str, by: Milli) {
        let ns = &mut self.namespaces[i];
        let Some(limit) = ns.status.as_ref().and_then(|s| s.get(r)).copied() else {
            return;
        };
        let used = ns.used.entry(r.to_owned()).or_insert(0);
        if *used < limit {
            *used = (*used + by).min(limit);
            self.check("use");
        }
    }

    fn step(&mut self, step: &Step) {
        let n = self.namespaces.len();
        match *step {
            Step::Run(seed) => {
                self.run(seed, 4);
            }
            Step::Copy(i) => self.copy(i % n),
            Step::Grow(i, r, by) => self.grow(i % n, RESOURCES[r], by),
            Step::Shrink(i, r, by) => {
                let used = self.namespaces[i % n]
                    .used
                    .entry(RESOURCES[r].into())
                    .or_insert(0);
                *used = (*used - by).max(0);
                self.check("use falls");
            }
            Step::Leave(i) => self.namespaces[i % n].selected = false,
            Step::Join(i) => self.namespaces[i % n].selected = true,
            Step::Edit(i, r, value) => {
                if let Some(spec) = &mut self.namespaces[i % n].spec {
                    spec.insert(RESOURCES[r].into(), value);
                    self.rebase();
                }
            }
            Step::Budget(r, value) => {
                self.budget.insert(RESOURCES[r].into(), value);
                self.rebase();
            }
            Step::Restart => self.memory = Memory::default(),
        }
    }

    /// Every namespace asks for what it wants; rounds of run, copy all (in random order) and
    /// use rising, until a run writes nothing. Returns the rounds it took.
    fn converge(&mut self, seed: u64) -> usize {
        for round in 0..ROUNDS {
            let writes = self.run(seed.wrapping_add(round as u64), 0);
            let mut order: Vec<usize> = (0..self.namespaces.len()).collect();
            order.sort_by_key(|_| self.random());
            let mut copied = false;
            for i in order {
                let ns = &self.namespaces[i];
                copied |= ns.spec.is_some() && ns.status != ns.spec;
                self.copy(i);
            }
            let grew = self.grow_to_wants();
            if writes == 0 && !grew && !copied {
                return round;
            }
        }
        panic!(
            "no fixed point after {ROUNDS} rounds: {:#?}",
            self.namespaces
        );
    }

    /// The request admission refuses it, as the controller reads it from Events: its next
    /// request, when that does not fit in the enforced part.
    fn refused(&self, ns: &Namespace) -> Amounts {
        if ns.direct {
            return Amounts::new();
        }
        RESOURCES
            .iter()
            .filter(|r| waiting(ns, r))
            .filter(|r| {
                let limit = ns.status.as_ref().map_or(0, |s| get(s, r));
                get(&ns.used, r) + get(&ns.request, r) > limit
            })
            .map(|r| (r.to_string(), get(&ns.request, r)))
            .collect()
    }

    /// Workloads create requests one at a time, each admitted whole while it fits.
    fn grow_to_wants(&mut self) -> bool {
        let mut grew = false;
        for i in 0..self.namespaces.len() {
            for r in RESOURCES {
                let ns = &self.namespaces[i];
                let Some(limit) = ns.status.as_ref().map(|s| get(s, r)) else {
                    continue;
                };
                let (used, request) = (get(&ns.used, r), get(&ns.request, r));
                let admitted = ((limit - used) / request).min((get(&ns.wants, r) - used) / request);
                if ns.selected && admitted > 0 {
                    self.grow(i, r, admitted * request);
                    grew = true;
                }
            }
        }
        grew
    }
}

/// It wants at least one more request.
fn waiting(ns: &Namespace, r: &str) -> bool {
    ns.selected && get(&ns.wants, r) - get(&ns.used, r) >= get(&ns.request, r)
}

fn get(amounts: &Amounts, r: &str) -> Milli {
    amounts.get(r).copied().unwrap_or(0)
}

/// Lowerings (and deletions) come before every write that raises a part or creates one.
fn assert_lowers_first(writes: &[Write], parts: &[Part]) {
    let mut raised = false;
    for write in writes {
        let raises = match write {
            Write::Create { .. } => true,
            Write::Delete { .. } => false,
            Write::SetHard { namespace, hard } => {
                let part = parts.iter().find(|p| p.namespace == *namespace).unwrap();
                let spec = part.spec.clone().unwrap_or_default();
                hard.iter().any(|(r, v)| spec.get(r).is_some_and(|s| v > s))
            }
        };
        assert!(raises || !raised, "a lowering after a raise: {writes:?}");
        raised |= raises;
    }
}

fn budget() -> impl Strategy<Value = Amounts> {
    (1i128..=40, 100i128..=8000).prop_map(|(pods, cpu)| {
        BTreeMap::from([
            ("pods".to_string(), pods * 1000),
            ("requests.cpu".to_string(), cpu),
        ])
    })
}

fn namespace(i: usize) -> impl Strategy<Value = Namespace> {
    (
        (0i128..=15, 0i128..=4000),
        (0i128..=25, 0i128..=6000),
        1i128..=600,
        any::<bool>(),
        (any::<bool>(), prop::option::of(0i128..=400)),
    )
        .prop_map(
            move |((pods, cpu), (want_pods, want_cpu), request, selected, (direct, bound))| {
                let amounts = |pods: Milli, cpu: Milli| {
                    BTreeMap::from([
                        ("pods".to_string(), pods),
                        ("requests.cpu".to_string(), cpu),
                    ])
                };
                Namespace {
                    name: format!("ns-{i}"),
                    selected,
                    used: amounts(pods * 1000, cpu),
                    wants: amounts(want_pods * 1000, want_cpu),
                    request: amounts(1000, request),
                    spec: None,
                    status: None,
                    direct,
                    pod_max: bound
                        .map(|extra| amounts_of("requests.cpu", request + extra))
                        .unwrap_or_default(),
                }
            },
        )
}

fn namespaces() -> impl Strategy<Value = Vec<Namespace>> {
    (1usize..=8).prop_flat_map(|n| (0..n).map(namespace).collect::<Vec<_>>())
}

fn step() -> impl Strategy<Value = Step> {
    let r = 0usize..RESOURCES.len();
    prop_oneof![
        6 => any::<u64>().prop_map(Step::Run),
        6 => (0usize..8).prop_map(Step::Copy),
        6 => (0usize..8, r.clone(), 1i128..5000).prop_map(|(i, r, by)| Step::Grow(i, r, by)),
        2 => (0usize..8, r.clone(), 1i128..5000).prop_map(|(i, r, by)| Step::Shrink(i, r, by)),
        1 => (0usize..8).prop_map(Step::Leave),
        1 => (0usize..8).prop_map(Step::Join),
        1 => (0usize..8, r.clone(), 0i128..30_000).prop_map(|(i, r, v)| Step::Edit(i, r, v)),
        1 => (r, 0i128..40_000).prop_map(|(r, v)| Step::Budget(r, v)),
        1 => Just(Step::Restart),
    ]
}

fn amounts_of(resource: &str, value: Milli) -> Amounts {
    BTreeMap::from([(resource.to_string(), value)])
}

/// Where nothing waits while the budget has room: a namespace waits only when less than a step
/// is unallocated; one whose pods are created directly (never reported), when less than it
/// lacks for its largest pod is unallocated, and is not judged where no LimitRange bounds its
/// pods (the allocator cannot know it wants more until its use reaches its part: the
/// limitation the README states).
fn check_no_starvation(model: &Model) {
    for r in RESOURCES {
        let hard = model.budget[r];
        let holding: Vec<&Namespace> = model
            .namespaces
            .iter()
            .filter(|ns| ns.selected && ns.spec.is_some())
            .collect();
        let allocated: Milli = holding
            .iter()
            .map(|ns| get(ns.spec.as_ref().unwrap(), r).max(get(&ns.used, r)))
            .sum();
        let unallocated = hard - allocated;
        let waiting: Vec<&str> = holding
            .iter()
            .filter(|ns| waiting(ns, r))
            .filter(|ns| {
                if !ns.direct || r == "pods" {
                    return unallocated >= allocator::step(r);
                }
                let headroom = get(ns.spec.as_ref().unwrap(), r) - get(&ns.used, r);
                ns.pod_max.contains_key(r) && unallocated >= get(&ns.pod_max, r) - headroom
            })
            .map(|ns| ns.name.as_str())
            .collect();
        assert!(
            waiting.is_empty(),
            "{r}: {waiting:?} want more while {} of hard {hard} is unallocated\n{:#?}",
            hard - allocated,
            model.namespaces
        );
    }
}

proptest! {
    // 400 cases by default; PROPTEST_CASES=N for a longer run.
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(400)
    ))]

    #[test]
    fn parts_never_exceed_the_budget_and_converge_without_starving_anyone(
        budget in budget(),
        namespaces in namespaces(),
        steps in prop::collection::vec(step(), 0..80),
        seed in any::<u64>(),
    ) {
        let mut model = Model::new(budget, namespaces);
        for step in &steps {
            model.step(step);
        }
        model.converge(seed);
        check_no_starvation(&model);
        // The converged output is a fixed point: with everything enforced, nothing to write.
        let again = allocator::allocate(&model.budget, &model.parts(), &model.memory);
        prop_assert!(again.writes.is_empty(), "{:?}", again.writes);
        for r in RESOURCES {
            let enforced: Milli = model.namespaces.iter().filter_map(|ns| ns.spec.as_ref()).map(|s| get(s, r)).sum();
            let used: Milli = model.namespaces.iter().filter(|ns| ns.spec.is_some()).map(|ns| get(&ns.used, r)).sum();
            // Converged: the parts fit in hard, even where use alone is over it.
            prop_assert!(enforced <= model.budget[r], "{r}: {enforced} > {} (used {used})", model.budget[r]);
        }
    }
}
