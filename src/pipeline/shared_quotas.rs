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

use crate::pipeline::allocator::{self, Allocation, Part, Write};

use crate::api::{
    ENFORCED_LABEL, FailureReason, LimitType, SHARED_QUOTA_LABEL, SharedQuotaStatus,
    SharedQuotaTemplate, TenantPolicySpec,
};
use crate::model::action::Outcome;
use crate::model::key::{ObjectKey, Owner};
use crate::model::kind::Kind;
use crate::model::live::LiveIndex;
use crate::model::object::Desired;
use crate::model::quantity::Amounts;
use crate::pipeline::build::shared_quota;
use crate::pipeline::select::Assignment;

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
pub struct BudgetMemories {
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

impl BudgetMemories {
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
    /// The part writes planned (for [`BudgetMemories::written`]).
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
    memories: &mut BudgetMemories,
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
    memories: &mut BudgetMemories,
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
            let Some(max) = max.and_then(|q| crate::model::quantity::milli(&q.0)) else {
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
mod tests;
