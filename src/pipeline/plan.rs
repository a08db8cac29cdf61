//! Planning one policy: select -> the parts of its shared budgets -> hand-over -> diff. The
//! reconcile and `tenantry plan` both call [`plan`], each with its own view of the cluster (the
//! controller's caches; a read of the cluster), so what `tenantry plan` shows is what the
//! controller would write. Pure.

use std::collections::{BTreeSet, HashSet};
use std::time::Instant;

use crate::model::key::{ObjectKey, Owner};
use crate::model::live::LiveIndex;
use crate::model::namespace::NamespaceInfo;
use crate::pipeline::diff::{self, Diff};
use crate::pipeline::select::{self, Candidate, Shadowed, ShadowedClass};
use crate::pipeline::shared_quotas::{self, Budgets};

/// The cluster as planning reads it.
pub struct Cluster<'c, L: LiveIndex + ?Sized> {
    /// Every namespace.
    pub namespaces: &'c [NamespaceInfo<'c>],
    /// One namespace by name: the hand-over looks up the namespaces of the objects a policy
    /// holds and no longer wants.
    pub namespace: &'c dyn Fn(&str) -> Option<NamespaceInfo<'static>>,
    /// The names of the cluster's StorageClasses.
    pub classes: &'c BTreeSet<String>,
    /// The managed objects (and the status of shared budgets' parts).
    pub live: &'c L,
}

/// What one policy would write, and what it selects and loses.
pub struct Plan {
    pub selected: BTreeSet<String>,
    pub shadowed: Vec<Shadowed>,
    pub shadowed_classes: Vec<ShadowedClass>,
    pub diff: Diff,
    /// The shared budgets' states and the parts' planned writes.
    pub budgets: Budgets,
}

/// Plans `me` among `candidates` (every live policy, `me` among them). `budgets` is the
/// allocator's memory of its shared budgets (a fresh one plans as a controller just started
/// would); `known_converged` are the fingerprints of keys seen converged at this generation,
/// so a change to them is drift.
pub fn plan<L: LiveIndex + ?Sized>(
    me: &Candidate,
    candidates: &[Candidate],
    owner: &Owner,
    cluster: &Cluster<L>,
    budgets: &mut shared_quotas::BudgetMemories,
    known_converged: &HashSet<u64>,
    now: Instant,
) -> Plan {
    let mut assignment = select::assign(me, candidates, cluster.namespaces, cluster.classes);
    let budgets =
        shared_quotas::add_parts(owner, me.spec, &mut assignment, cluster.live, budgets, now);
    let handed_over = |key: &ObjectKey| {
        select::handed_over(me.name, key, candidates, cluster.namespace, cluster.classes)
    };
    let diff = diff::compute(
        owner,
        &assignment.desired,
        cluster.live,
        &handed_over,
        me.spec.deletion_policy,
        known_converged,
    );
    // The actions hold what they need of the desired objects (4 a namespace): free the rest.
    drop(assignment.desired);
    Plan {
        selected: assignment.selected,
        shadowed: assignment.shadowed,
        shadowed_classes: assignment.shadowed_classes,
        diff,
        budgets,
    }
}
