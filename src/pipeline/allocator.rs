//! The shared-quota allocator: sizes each namespace's part of one budget (`spec.sharedQuotas`
//! item) so that the parts, as admission enforces them, never add up to more than the budget.
//! Pure: the parts as observed and a small memory in, the writes and the next memory out.
//!
//! # Safety
//! Admission enforces a part's `status.hard`, which kube-controller-manager copies from
//! `spec.hard` in its own time, so a part's *enforced* size is the larger of the two. Every write
//! the allocator returns keeps, for every resource, the sum over parts of max(spec, status) at
//! most the budget, after any subset of the writes, applied in any order, and under any order of
//! the copies:
//! - A lowering is written at once but credited nothing until `status.hard` is observed lowered,
//!   and then only with what it provably freed: its part counts at the larger of its new size and
//!   the highest `status.used` seen from the lowering write until it was enforced.
//! - A raise is written only when it fits beside what every part *commits*:
//!   max(spec, status, used, that highest use while a lowering is pending). A raise that needs a
//!   lowering to be enforced first is withheld and returned by a later run.
//! - A part is created at zero and sized once kube-controller-manager has reported in its status
//!   what the namespace already uses (a namespace joins with the pods it has). While a namespace's
//!   use is unknown (a part to create, or one without status) nothing is raised anywhere. A part
//!   just created limits nothing until its status is written (the window Kubernetes leaves); it
//!   counts at its spec size from the moment it is created.
//! - A part below its use (a namespace that joined with it) holds its use.
//! - A part missing a resource of the budget limits nothing of it: no raise of that resource
//!   anywhere until every part carries it.
//!
//! # Headroom rule
//! Per resource, with `used` the parts' `status.used`, `n` the namespaces in the budget and
//! `step` the unit headroom is handed out in (1m for CPU resources, one whole unit otherwise):
//! - *slack* = hard minus what all namespaces use; *target* headroom = the smaller of a chunk of
//!   hard/(2n) (at least one step) and an even split slack/n, rounded down to a step. So while the
//!   budget is plentiful every namespace holds a chunk and the rest stays free for whoever grows;
//!   when it is scarce, the slack is split evenly; when slack/n is below a step, headroom goes a
//!   step at a time to the namespaces that ask.
//! - A namespace *needs* headroom when its part minus its use is below half the target (and
//!   below one step at least): its usage has reached its part. It is raised to use + the target
//!   (at least one step), from the free budget first, then from namespaces holding more than the
//!   target, which are lowered to use + target (the largest surplus first, only as much as is
//!   needed). So a rebalance writes only the parts it moves headroom between.
//! - Where the controller knows the largest request a part refused (`Part::refused`), a part
//!   also needs headroom while its headroom is below that request, and is raised to fit it.
//!   Headroom that namespaces refused a larger request cannot use is pooled to fit one of them
//!   at a time (the one missing least first), then topped up by the target, so a namespace
//!   asking in small requests gets that headroom in chunks, not a request per run.
//! - Where a LimitRange bounds the largest pod (`Part::pod_max`), a part's headroom is kept at
//!   least that pod: from the free budget (to the pod plus the target), else from what others
//!   hold above their target and their own largest pod. A pod created directly is refused
//!   without an Event; this is how it fits anyway.
//! - When the slack is less than a step per namespace, headroom is taken from others only for a
//!   namespace whose use grew since its part was last written (it is asking, not idle); that keeps
//!   the last steps from moving back and forth. An idle namespace may end with no headroom then,
//!   and gets some from the free budget as soon as there is any.
//! - Parts adding up to more than hard (hard lowered, a part raised by hand with no memory of it)
//!   are lowered: surplus above the target first, then headroom, largest first.
//! - When the namespaces together use hard or more (a namespace joined with its usage, hard was
//!   lowered below use), every part shrinks to at most its use, and if those still add up to more
//!   than hard, to a share of hard proportional to its use: nothing new is admitted anywhere until
//!   use falls below hard, and nothing is evicted. The status reports how far over.
//! - A part edited by someone else is restored to what was last written (a lowering at once, a
//!   raise when it fits). A namespace leaving the budget has its part deleted (or released, under
//!   Retain); it counts until it is gone.
//! - Nothing else is written: the allocator's output, applied and enforced, is a fixed point.
//!
//! Quantities are integer milli-units (see [`crate::model::quantity`]); no floating point.
//!
//! # Use from the controller
//! Per (policy, sharedQuotas item): build the [`Part`]s (every namespace where the policy wins
//! sharedQuotas, and every namespace still holding a part of the item that is not, see
//! [`crate::pipeline::build::shared_quota::part_of`]), call [`allocate`] with the [`Memory`] kept from
//! the last run, keep the returned memory, apply the writes in order (each guarded by the
//! resourceVersion read, so a write based on a stale read fails rather than lands), and run again
//! on the next change of a part, or soon when [`Allocation::settled`] is false. Mark a part
//! [`Part::settling`] while quota admission charged it moments ago: its resize is held (as a
//! write not made, which is safe) and [`Allocation::held`] says to run again once it settles.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::model::quantity::{self, Amounts, Milli};

/// One namespace's part of the budget, as observed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Part {
    pub namespace: String,
    /// The part's `spec.hard`; `None` when the namespace has no part yet.
    pub spec: Option<Amounts>,
    /// The part's `status.hard`; `None` until kube-controller-manager has written it.
    pub status: Option<Amounts>,
    /// The part's `status.used` (absent resources count as zero).
    pub used: Amounts,
    /// Whether the namespace is still in the budget (selected, and the policy wins
    /// sharedQuotas there). A part of a namespace that is not is deleted.
    pub selected: bool,
    /// The largest request admission refused against this part since it was last written, per
    /// resource, when the controller knows it (quota admission names it in the error, which the
    /// ReplicaSet controller repeats in its FailedCreate Events); empty otherwise. The
    /// allocator sees use, not requests: without this, a namespace whose headroom is not
    /// below half the target but smaller than its next request waits for the slack to change.
    pub refused: Amounts,
    /// The most one pod may request of each resource in this namespace, where a LimitRange
    /// bounds it (a `type: Pod` item's `max`); empty otherwise. A pod a user creates directly is
    /// refused without an Event, so `refused` never hears of it: while the budget is free, the
    /// part keeps at least this much headroom, so that any pod the namespace may create fits.
    pub pod_max: Amounts,
    /// Quota admission charged this part moments ago: leave its `spec.hard` as it is this run.
    /// Every change of `spec.hard` has kube-controller-manager recount the part's use from its
    /// own caches, which may not hold the pods just admitted yet; that recount would erase their
    /// charge (and admit as much again beyond the part). See [`Allocation::held`].
    pub settling: bool,
}

/// What the allocator remembers of one shared budget between runs. The controller keeps one per
/// (policy, sharedQuotas item), starting from `Memory::default()` (also after a restart: the
/// allocator is safe without it, it only writes a little more).
///
/// Deliberately not persisted (issue 15). A restart loses it: a pending lowering is then
/// credited by what `status.hard` and `status.used` show rather than the peak, every namespace
/// counts as asking once, and an admin's edit made while the controller was down is taken as
/// the part's size; the property test (`tests/allocator_properties.rs`, `Step::Restart`) checks
/// the invariant after every write and copy across such restarts, so the cost is a rebalance or
/// two that a remembered run would have skipped, once per restart. Persisting it (the peaks as an
/// annotation written with the lowering) would have the allocator credit budget on the word of
/// an object a namespace admin can edit wherever `config/admission` is not installed: a forged
/// peak or "last written" size is budget handed out twice. Rare restarts do not buy that.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    parts: BTreeMap<String, PartMemory>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct PartMemory {
    /// The `spec.hard` last written: a different spec is someone else's edit, to restore.
    written: Option<Amounts>,
    /// Per resource with a lowering written and not yet seen enforced: the highest `status.used`
    /// seen since the lowering was written.
    lowering_peaks: Amounts,
    /// Use when the part was last written: use above it means the namespace is asking for more.
    used_when_written: Amounts,
}

/// A write to one part. The controller applies them in order, guarded by the resourceVersion
/// it read; any subset of them is safe, so a failed write needs no undo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// Create the namespace's part with this `spec.hard`.
    Create { namespace: String, hard: Amounts },
    /// Set the part's `spec.hard`.
    SetHard { namespace: String, hard: Amounts },
    /// The namespace left the budget: delete its part (or release it, under Retain).
    Delete { namespace: String },
}

impl Write {
    pub fn namespace(&self) -> &str {
        match self {
            Write::Create { namespace, .. }
            | Write::SetHard { namespace, .. }
            | Write::Delete { namespace } => namespace,
        }
    }
}

/// The state of the budget, for `status.sharedQuotas`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Sum of the parts' `status.used`, per resource of the budget.
    pub used: Amounts,
    /// Namespaces holding a part (in the budget).
    pub namespaces: usize,
    /// Resources whose whole budget is in use (less than one step left).
    pub exhausted: Vec<String>,
    /// Resources used beyond the budget, by how much.
    pub over_budget: Amounts,
    /// Requests refused that can never fit (each alone exceeds the whole budget, as `cpu: 100`
    /// where `100m` was meant): given nothing, so one typo cannot
    /// hold headroom the other namespaces need. (namespace, resource, request)
    pub too_large: Vec<(String, String, Milli)>,
}

impl Usage {
    /// The status entry of the budget `name` (`status.sharedQuotas[]`).
    pub fn to_status(&self, name: &str, budget: &Amounts) -> crate::api::SharedQuotaStatus {
        crate::api::SharedQuotaStatus {
            name: name.to_owned(),
            hard: quantities(budget),
            used: quantities(&self.used),
            namespaces: i32::try_from(self.namespaces).unwrap_or(i32::MAX),
            exhausted: self.exhausted.clone(),
            over_budget: quantities(&self.over_budget),
            too_large: (self.too_large.iter())
                .map(
                    |(namespace, resource, request)| crate::api::TooLargeRequest {
                        namespace: namespace.clone(),
                        resource: resource.clone(),
                        request: Quantity(quantity::format_milli(*request)),
                    },
                )
                .collect(),
        }
    }
}

/// The result of one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allocation {
    /// Deletions, then lowerings, then creations, then raises.
    pub writes: Vec<Write>,
    /// The memory for the next run (keep it whether or not the writes succeed).
    pub memory: Memory,
    pub usage: Usage,
    /// The namespaces whose part was to be resized but is settling ([`Part::settling`]):
    /// nothing written there this run, and nothing remembered of the resize. Run again once
    /// they have settled.
    pub held: Vec<String>,
}

impl Allocation {
    /// Nothing to write and nothing newly learnt: no need to run again until a part changes.
    /// Otherwise run again once the writes are applied (or after a short delay).
    pub fn settled(&self, previous: &Memory) -> bool {
        self.writes.is_empty() && self.held.is_empty() && self.memory == *previous
    }
}

/// The unit headroom of `resource` is handed out in: 1m for CPU, one whole unit otherwise (a
/// part of 2.5 pods admits 2).
pub fn step(resource: &str) -> Milli {
    if resource == "cpu" || resource.ends_with(".cpu") {
        1
    } else {
        1000
    }
}

/// A quantity that does not parse, and the resource it is for.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{resource}: {value:?} is not a quantity")]
pub struct NotAQuantity {
    pub resource: String,
    pub value: String,
}

/// Amounts from a quantity map (as stored: rounded up to a milli-unit); the error names the
/// resource whose quantity does not parse.
pub fn amounts(quantities: &BTreeMap<String, Quantity>) -> Result<Amounts, NotAQuantity> {
    quantities
        .iter()
        .map(|(resource, q)| {
            quantity::milli(&q.0)
                .map(|m| (resource.clone(), m))
                .ok_or_else(|| NotAQuantity {
                    resource: resource.clone(),
                    value: q.0.clone(),
                })
        })
        .collect()
}

/// Quantities for a quota's `hard` or a status, spelled in whole units where exact.
pub fn quantities(amounts: &Amounts) -> BTreeMap<String, Quantity> {
    amounts
        .iter()
        .map(|(resource, m)| (resource.clone(), Quantity(quantity::format_milli(*m))))
        .collect()
}

/// Runs the allocator once. `parts` has at most one entry per namespace: every namespace in the
/// budget (with or without a part yet) and every namespace still holding a part that left it.
pub fn allocate(budget: &Amounts, parts: &[Part], memory: &Memory) -> Allocation {
    let observed = observe(parts, memory);
    let targets = plan(budget, parts, &observed);
    let (writes, memory, held) = write(budget, parts, &observed, &targets);
    Allocation {
        writes,
        memory,
        usage: usage(budget, parts),
        held,
    }
}

/// Per part: its memory with the lowering peaks updated by this observation, and for each
/// resource what it commits this run.
struct Observed {
    memory: Vec<PartMemory>,
    committed: Vec<BTreeMap<String, Option<Milli>>>,
}

fn observe(parts: &[Part], memory: &Memory) -> Observed {
    let mut memories = Vec::with_capacity(parts.len());
    let mut committed = Vec::with_capacity(parts.len());
    for part in parts {
        let mut mem = memory
            .parts
            .get(&part.namespace)
            .cloned()
            .unwrap_or_default();
        for (resource, peak) in mem.lowering_peaks.iter_mut() {
            *peak = (*peak).max(used(part, resource));
        }
        committed.push(commitments(part, &mem));
        // A lowering seen enforced has been credited (at its peak, above): forget the peak.
        mem.lowering_peaks
            .retain(|resource, _| !lowering_enforced(part, resource));
        memories.push(mem);
    }
    Observed {
        memory: memories,
        committed,
    }
}

fn used(part: &Part, resource: &str) -> Milli {
    part.used.get(resource).copied().unwrap_or(0)
}

fn lowering_enforced(part: &Part, resource: &str) -> bool {
    match (&part.spec, &part.status) {
        (Some(spec), Some(status)) => match (spec.get(resource), status.get(resource)) {
            (Some(s), Some(h)) => h <= s,
            _ => false,
        },
        // No part any more: nothing to wait for.
        (None, _) => true,
        (Some(_), None) => false,
    }
}

/// What a part commits per resource: the most its namespace may be using, or come to use, as far
/// as this observation proves. `None`: unlimited (the part lacks the resource).
fn commitments(part: &Part, mem: &PartMemory) -> BTreeMap<String, Option<Milli>> {
    let Some(spec) = &part.spec else {
        return BTreeMap::new(); // no part: nothing of the budget is held there yet
    };
    let resources: BTreeSet<&String> = spec
        .keys()
        .chain(part.status.iter().flat_map(|s| s.keys()))
        .chain(mem.lowering_peaks.keys())
        .collect();
    resources
        .into_iter()
        .map(|resource| {
            // Until kube-controller-manager writes status, the part limits nothing and its use
            // (pods there before it joined) is unknown: nothing can be proven free.
            let status = part.status.as_ref().and_then(|s| s.get(resource)).copied();
            let enforced = spec
                .get(resource)
                .copied()
                .zip(status)
                .map(|(s, h)| s.max(h));
            let peak = mem.lowering_peaks.get(resource).copied().unwrap_or(0);
            (
                resource.clone(),
                enforced.map(|e| e.max(used(part, resource)).max(peak)),
            )
        })
        .collect()
}

/// What one part commits of `resource`; `None` when unlimited or not known: a namespace joining
/// (no part yet) or a part without status may already use any amount.
fn committed_of(observed: &Observed, i: usize, part: &Part, resource: &str) -> Option<Milli> {
    match &part.spec {
        None if part.selected => None,
        None => Some(0),
        Some(_) => observed.committed[i].get(resource).copied().flatten(),
    }
}

/// The planned size of every part in the budget, per resource: `targets[i]` for `parts[i]`,
/// empty for parts leaving it.
fn plan(budget: &Amounts, parts: &[Part], observed: &Observed) -> Vec<Amounts> {
    let mut targets = vec![Amounts::new(); parts.len()];
    for (resource, &hard) in budget {
        let mut lines = Vec::new();
        let mut held_by_leavers = 0;
        for (i, part) in parts.iter().enumerate() {
            if part.selected {
                lines.push(line(part, &observed.memory[i], resource, i, hard));
            } else {
                let committed = committed_of(observed, i, part, resource);
                held_by_leavers += committed.unwrap_or_else(|| spec_of(part, resource));
            }
        }
        for (i, size) in size_resource(hard - held_by_leavers, step(resource), &lines) {
            targets[i].insert(resource.clone(), size);
        }
    }
    targets
}

fn spec_of(part: &Part, resource: &str) -> Milli {
    part.spec
        .as_ref()
        .and_then(|s| s.get(resource))
        .copied()
        .unwrap_or(0)
}

/// One part in the budget, for planning one resource.
#[derive(Clone, Debug)]
struct Line {
    index: usize,
    namespace: String,
    /// The size the allocator meant the part to have: what it last wrote, else what it has.
    planned: Milli,
    used: Milli,
    /// Use grew since the part was last written (or that is not known), or a request was refused.
    asking: bool,
    /// The largest request refused (0 when not known).
    refused: Milli,
    /// The most one pod may request (0 when not bounded).
    pod_max: Milli,
}

impl Line {
    fn headroom(&self) -> Milli {
        self.planned - self.used
    }
}

/// Whether the request `part` was refused of `resource` can never fit a budget of `hard`: it
/// alone is more than all of it (what the namespace uses now may still fall).
fn too_large(part: &Part, resource: &str, hard: Milli) -> bool {
    part.refused
        .get(resource)
        .is_some_and(|&refused| refused > hard)
}

fn line(part: &Part, mem: &PartMemory, resource: &str, index: usize, hard: Milli) -> Line {
    let planned = mem
        .written
        .as_ref()
        .and_then(|w| w.get(resource))
        .copied()
        .unwrap_or_else(|| spec_of(part, resource));
    let used = used(part, resource);
    // Nothing written yet (or forgotten): it may be asking. A request that can never fit asks
    // for nothing.
    let refused = match too_large(part, resource, hard) {
        true => 0,
        false => part.refused.get(resource).copied().unwrap_or(0),
    };
    let asking = mem.written.is_none()
        || used > mem.used_when_written.get(resource).copied().unwrap_or(0)
        || refused > planned - used;
    Line {
        index,
        namespace: part.namespace.clone(),
        planned,
        used,
        asking,
        refused,
        pod_max: part.pod_max.get(resource).copied().unwrap_or(0),
    }
}

fn floor_to(value: Milli, step: Milli) -> Milli {
    if value <= 0 { 0 } else { value - value % step }
}

/// Sizes of the parts of one resource, given what of the budget is `available` to them.
fn size_resource(available: Milli, step: Milli, lines: &[Line]) -> Vec<(usize, Milli)> {
    if lines.is_empty() {
        return Vec::new();
    }
    let total_used: Milli = lines.iter().map(|l| l.used).sum();
    let sizes = if total_used >= available {
        shrink_to_use(available, step, lines, total_used)
    } else {
        share_headroom(available, step, lines, available - total_used)
    };
    lines.iter().map(|l| l.index).zip(sizes).collect()
}

/// Use at or above the budget: every part at most its use, together at most `available`.
fn shrink_to_use(available: Milli, step: Milli, lines: &[Line], total_used: Milli) -> Vec<Milli> {
    let kept: Vec<Milli> = lines.iter().map(|l| l.planned.min(l.used).max(0)).collect();
    if kept.iter().sum::<Milli>() <= available {
        return kept;
    }
    let available = available.max(0);
    if total_used == 0 {
        return vec![0; lines.len()]; // leavers still hold the whole budget
    }
    lines
        .iter()
        .zip(kept)
        .map(|(l, k)| {
            // A share proportional to use; 0 in the (unrealistic) case the product overflows.
            let share = l.used.checked_mul(available).map_or(0, |p| p / total_used);
            k.min(floor_to(share, step))
        })
        .collect()
}

/// Use below the budget: `slack` of it is headroom to share by the rule in the module doc.
fn share_headroom(available: Milli, step: Milli, lines: &[Line], slack: Milli) -> Vec<Milli> {
    let n = lines.len() as Milli;
    let chunk = floor_to(available / (2 * n), step).max(step);
    let target = chunk.min(floor_to(slack / n, step));
    let low = step.max(floor_to(target / 2, step));
    let grant = target.max(step);
    let scarce = target < step;

    let mut sizes: Vec<Milli> = lines.iter().map(|l| l.planned).collect();
    // A part below its use (a namespace that joined with it) holds its use all the same.
    let held = |sizes: &[Milli], i: usize| sizes[i].max(lines[i].used);
    let mut free = available - (0..lines.len()).map(|i| held(&sizes, i)).sum::<Milli>();
    if free < 0 {
        free += reclaim(&mut sizes, lines, target, -free);
    }
    let needs_more =
        |sizes: &[Milli], i: usize| sizes[i] - lines[i].used < low.max(lines[i].refused);
    let mut needy: Vec<usize> = (0..lines.len())
        .filter(|&i| needs_more(&sizes, i))
        .collect();
    // Those asking first, then the emptiest, then by name: deterministic.
    needy.sort_by_key(|&i| (!lines[i].asking, lines[i].headroom(), &lines[i].namespace));
    // A donor keeps the target (and room for what it was refused), and does not need any.
    let keep = |j: usize| target.max(lines[j].refused);
    let is_donor = |sizes: &[Milli], j: usize| {
        sizes[j] - lines[j].used > keep(j).max(low - 1).max(lines[j].refused - 1)
    };
    let mut granted = vec![false; lines.len()];
    for i in needy {
        granted[i] = true;
        let want = lines[i].used + grant.max(lines[i].refused) - held(&sizes, i);
        let from_free = want.min(free).max(0);
        free -= from_free;
        let mut got = from_free;
        if from_free < want && (!scarce || lines[i].asking) {
            let mut donors: Vec<usize> = (0..lines.len())
                .filter(|&j| !granted[j] && is_donor(&sizes, j))
                .collect();
            donors.sort_by_key(|&j| (lines[j].used - sizes[j], &lines[j].namespace));
            let mut missing = want - from_free;
            for j in donors {
                if missing == 0 {
                    break;
                }
                let give = (sizes[j] - lines[j].used - keep(j)).min(missing);
                sizes[j] -= give;
                got += give;
                missing -= give;
            }
        }
        if got > 0 {
            sizes[i] = held(&sizes, i) + got;
        }
    }
    let free = room_for_the_largest_pod(&mut sizes, lines, target, free);
    fit_refused(&mut sizes, lines, target, free);
    sizes
}

/// Where a LimitRange bounds the largest pod (`Part::pod_max`), headroom below it is raised: a
/// pod created directly is refused without an Event, so only this makes sure it fits while the
/// budget has room. From the free budget, to the largest pod plus the target (so not again for
/// every pod); else, just to the largest pod, from what others hold above their target and
/// their own largest pod (never below: no namespace gives up the headroom it is meant to keep
/// for a pod that may never come). Smallest shortfall first. Returns what is left free.
fn room_for_the_largest_pod(
    sizes: &mut [Milli],
    lines: &[Line],
    target: Milli,
    mut free: Milli,
) -> Milli {
    let headroom = |sizes: &[Milli], i: usize| headroom_of(sizes, lines, i);
    let short = |sizes: &[Milli], i: usize| lines[i].pod_max - headroom(sizes, i);
    let keep = |j: usize| target.max(lines[j].refused).max(lines[j].pod_max);
    let surplus = |sizes: &[Milli], j: usize| (headroom(sizes, j) - keep(j)).max(0);
    let mut order: Vec<usize> = (0..lines.len()).filter(|&i| short(sizes, i) > 0).collect();
    order.sort_by_key(|&i| (short(sizes, i), &lines[i].namespace));
    for i in order {
        let missing = short(sizes, i);
        let base = lines[i].used + headroom(sizes, i);
        if missing <= free {
            let give = (missing + target).min(free);
            sizes[i] = base + give;
            free -= give;
            continue;
        }
        let mut donors: Vec<usize> = (0..lines.len())
            .filter(|&j| j != i && surplus(sizes, j) > 0)
            .collect();
        let pooled: Milli = donors.iter().map(|&j| surplus(sizes, j)).sum();
        if free.max(0) + pooled < missing {
            continue;
        }
        donors.sort_by_key(|&j| (-surplus(sizes, j), &lines[j].namespace));
        let mut still = missing - free.max(0);
        free -= missing - still;
        for j in donors {
            let give = surplus(sizes, j).min(still);
            sizes[j] -= give;
            still -= give;
        }
        sizes[i] = base + missing;
    }
    free
}

/// Namespaces whose headroom is smaller than the request they were refused cannot use it: pool
/// it (with what is free) for one of them at a time, the one missing least first, so that two
/// namespaces each holding half of a request do not both wait for good. A namespace that gives
/// is one that could not use what it gave.
///
/// Then each namespace fitted is topped up by up to the target, from what is free and from what
/// the namespaces still unable to fit their request hold, so it is not short again at its next
/// request: fitting only the request moved the headroom a stuck namespace cannot use one request
/// at a time (1m per run for a namespace asking 1m pods). Only after every fit, so the top-up
/// never takes what another namespace needed to fit its own request.
fn fit_refused(sizes: &mut [Milli], lines: &[Line], target: Milli, mut free: Milli) {
    let mut order: Vec<usize> = (0..lines.len())
        .filter(|&j| short_of_refused(sizes, lines, j) > 0)
        .collect();
    order.sort_by_key(|&j| (short_of_refused(sizes, lines, j), &lines[j].namespace));
    let mut fitted = vec![false; lines.len()];
    for &i in &order {
        let missing = short_of_refused(sizes, lines, i);
        let pooled: Milli = givers(sizes, lines, &fitted, i)
            .map(|j| headroom_of(sizes, lines, j))
            .sum();
        if missing <= 0 || free.max(0) + pooled < missing {
            continue;
        }
        pool_into(sizes, lines, &fitted, i, missing, &mut free);
        fitted[i] = true;
    }
    for i in order.into_iter().filter(|&i| fitted[i]) {
        pool_into(sizes, lines, &fitted, i, target, &mut free);
    }
}

fn headroom_of(sizes: &[Milli], lines: &[Line], j: usize) -> Milli {
    (sizes[j] - lines[j].used).max(0)
}

/// How much more headroom the request `lines[j]` was refused needs (0 or less: it fits).
fn short_of_refused(sizes: &[Milli], lines: &[Line], j: usize) -> Milli {
    lines[j].refused - headroom_of(sizes, lines, j)
}

/// The namespaces that may give to `i`: those that cannot fit their own refused request (and
/// were not fitted this run), so cannot use what they hold.
fn givers<'a>(
    sizes: &'a [Milli],
    lines: &'a [Line],
    fitted: &'a [bool],
    i: usize,
) -> impl Iterator<Item = usize> + 'a {
    (0..lines.len()).filter(move |&j| j != i && !fitted[j] && short_of_refused(sizes, lines, j) > 0)
}

/// Raises `sizes[i]` by up to `amount`: from what is free first, then from the givers, in order.
fn pool_into(
    sizes: &mut [Milli],
    lines: &[Line],
    fitted: &[bool],
    i: usize,
    amount: Milli,
    free: &mut Milli,
) {
    let from_free = amount.min((*free).max(0));
    *free -= from_free;
    let mut still = amount - from_free;
    let from: Vec<usize> = givers(sizes, lines, fitted, i).collect();
    for j in from {
        let give = headroom_of(sizes, lines, j).min(still);
        sizes[j] -= give;
        still -= give;
    }
    sizes[i] += amount - still;
}

/// Parts planned above the budget: lowers them by `excess`, surplus above the target first, then
/// headroom, the largest first. Returns what it freed.
fn reclaim(sizes: &mut [Milli], lines: &[Line], target: Milli, excess: Milli) -> Milli {
    let mut freed = 0;
    for keep in [target, 0] {
        let mut order: Vec<usize> = (0..lines.len()).collect();
        order.sort_by_key(|&j| (lines[j].used - sizes[j], &lines[j].namespace));
        for j in order {
            if freed >= excess {
                return freed;
            }
            let surplus = sizes[j] - lines[j].used - keep;
            if surplus > 0 {
                let take = surplus.min(excess - freed);
                sizes[j] -= take;
                freed += take;
            }
        }
    }
    freed
}

/// What is free of the budget per resource, by what the parts commit; `None` where nothing can
/// be proven free (a part is unlimited, or its use is not known yet).
type Free<'a> = BTreeMap<&'a String, Option<Milli>>;

/// The writes that bring the parts to their targets safely, and the memory after them.
fn write(
    budget: &Amounts,
    parts: &[Part],
    observed: &Observed,
    targets: &[Amounts],
) -> (Vec<Write>, Memory, Vec<String>) {
    let mut free: Free = budget
        .iter()
        .map(|(resource, &hard)| {
            let held = parts.iter().enumerate().try_fold(0, |sum: Milli, (i, p)| {
                committed_of(observed, i, p, resource).map(|c| sum + c)
            });
            (resource, held.map(|h| hard - h))
        })
        .collect();
    let mut memory = Memory::default();
    let (mut deletes, mut lowers, mut creates, mut raises) = (vec![], vec![], vec![], vec![]);
    let mut held = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let mut mem = observed.memory[i].clone();
        let namespace = part.namespace.clone();
        match &part.spec {
            Some(_) if !part.selected => deletes.push(Write::Delete { namespace }),
            None if !part.selected => continue,
            None => {
                // Created at zero: what its namespace already uses is unknown until
                // kube-controller-manager reports it in the part's status. Sized on the next run.
                let hard: Amounts = budget.keys().map(|r| (r.clone(), 0)).collect();
                mem = PartMemory {
                    written: Some(hard.clone()),
                    ..PartMemory::default()
                };
                creates.push(Write::Create { namespace, hard });
            }
            Some(current) => {
                let free_before = part.settling.then(|| free.clone());
                let (hard, raised) =
                    resize(budget, part, observed, i, &targets[i], &mut mem, &mut free);
                if let Some(free_before) = free_before.filter(|_| hard != *current) {
                    // Held: as if not planned, so the budget it would take stays free.
                    free = free_before;
                    mem = observed.memory[i].clone();
                    held.push(namespace);
                } else if hard == *current {
                    // Nothing remembered (a restart): what is there is taken as ours. Otherwise a
                    // restore that has to wait keeps what was written in memory.
                    if mem.written.is_none() {
                        mem.written = Some(hard);
                        mem.used_when_written = part.used.clone();
                    }
                } else {
                    mem.written = Some(hard.clone());
                    mem.used_when_written = part.used.clone();
                    let write = Write::SetHard { namespace, hard };
                    if raised {
                        raises.push(write)
                    } else {
                        lowers.push(write)
                    }
                }
            }
        }
        memory.parts.insert(part.namespace.clone(), mem);
    }
    let writes = [deletes, lowers, creates, raises].concat();
    (writes, memory, held)
}

/// The spec.hard an existing part gets this run (every lowering, the raises that fit), and
/// whether it raises anything.
fn resize(
    budget: &Amounts,
    part: &Part,
    observed: &Observed,
    i: usize,
    targets: &Amounts,
    mem: &mut PartMemory,
    free: &mut Free,
) -> (Amounts, bool) {
    let current = part.spec.clone().unwrap_or_default();
    let mut hard = current.clone();
    hard.retain(|resource, _| budget.contains_key(resource));
    let mut raised = false;
    for (resource, &target) in targets {
        let size = match current.get(resource).copied() {
            // Lowering (or limiting a resource the part lacked): at once, credited later.
            Some(now) if target < now => lower(mem, part, resource, target),
            None => lower(mem, part, resource, target),
            Some(now) if target == now => now,
            Some(now) => {
                let raise = Raise {
                    resource,
                    target,
                    now,
                    before: committed_of(observed, i, part, resource),
                };
                let fitted = fit(raise, part, mem, free.get_mut(resource));
                raised |= fitted > now;
                fitted
            }
        };
        hard.insert(resource.clone(), size);
    }
    (hard, raised)
}

/// Records a lowering of `resource` to `target` (its use seen so far) and returns the new size.
fn lower(mem: &mut PartMemory, part: &Part, resource: &str, target: Milli) -> Milli {
    let peak = mem.lowering_peaks.entry(resource.to_owned()).or_insert(0);
    *peak = (*peak).max(used(part, resource));
    target
}

/// `target` when the raise fits in what is `free` of the budget, else (withheld) `now`.
fn fit(raise: Raise, part: &Part, mem: &PartMemory, free: Option<&mut Option<Milli>>) -> Milli {
    let Raise {
        resource,
        target,
        now,
        before,
    } = raise;
    let (Some(Some(free)), Some(before)) = (free, before) else {
        return now; // nothing can be proven free
    };
    // What the part commits whatever its spec: its enforced status, its use, a pending peak.
    let status = part.status.as_ref().and_then(|s| s.get(resource)).copied();
    let peak = mem.lowering_peaks.get(resource).copied();
    let floor = [status, peak, Some(used(part, resource))]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(0);
    let cost = (target.max(floor) - before).max(0);
    if cost > *free {
        return now;
    }
    *free -= cost;
    target
}

/// A raise of one resource of one part to `target`, from `now` (its spec) and `before` (what it
/// commits now; `None`: not known).
struct Raise<'a> {
    resource: &'a str,
    target: Milli,
    now: Milli,
    before: Option<Milli>,
}

fn usage(budget: &Amounts, parts: &[Part]) -> Usage {
    let holding: Vec<&Part> = parts
        .iter()
        .filter(|p| p.selected && p.spec.is_some())
        .collect();
    let mut report = Usage {
        namespaces: holding.len(),
        ..Usage::default()
    };
    for (resource, &hard) in budget {
        let used: Milli = holding.iter().map(|p| used(p, resource)).sum();
        report.used.insert(resource.clone(), used);
        if hard - used < step(resource) {
            report.exhausted.push(resource.clone());
        }
        if used > hard {
            report.over_budget.insert(resource.clone(), used - hard);
        }
        for part in parts
            .iter()
            .filter(|p| p.selected && too_large(p, resource, hard))
        {
            let request = part.refused[resource];
            (report.too_large).push((part.namespace.clone(), resource.clone(), request));
        }
    }
    report
}

#[cfg(test)]
mod tests;
