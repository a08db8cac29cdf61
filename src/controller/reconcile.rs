//! The reconcile of one policy, as a pipeline: validate -> select -> dry-run gate -> diff ->
//! write -> report -> Events and status -> requeue. Each step is a pure function or one call
//! to the writer; this file only sequences them.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action as Requeue;
use kube::runtime::finalizer::Event as FinalizerEvent;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use tracing::{info, warn};

use super::{Context, Error, PolicyMemory};
use crate::api::{DeletionPolicy, TenantPolicy};
use crate::apply::{DRY_RUN_NAMESPACE, NotOwned, Outcome, Taking};
use crate::cache::{Guarded, Stores};
use crate::diff::{self, LiveIndex};
use crate::report::{self, EventNote, Facts, Severity};
use crate::resources::{ObjectKey, Owner, templates};
use crate::select::{self, Assignment, Candidate, NamespaceInfo};
use crate::shared_quotas;
use crate::status::{self, Summary};
use crate::validate;

/// How long a reconcile waits for the caches to show the writes made before it started.
const OWN_WRITES_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

pub async fn reconcile(guard: Arc<Guarded>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    ctx.synced.wait().await?;
    let woken = Instant::now();
    // Plans read the caches: without this, one started just after another policy's (or its own)
    // writes may not see them and report converged over objects it should have removed. When
    // the caches are slower than that, the watch events still to come trigger another look.
    if !ctx.own_writes.wait(OWN_WRITES_WAIT).await {
        tracing::debug!(policy = %guard.name_any(), "caches behind Tenantry's own writes");
    }
    let waited = woken.elapsed();
    let policy = match &guard.0 {
        Ok(policy) => Arc::new(policy.clone()),
        Err(invalid) => return unreadable(&guard, invalid, &ctx).await,
    };
    let started = Instant::now();
    ctx.metrics.reconciles.inc();
    let result = ctx
        .writer
        .with_finalizer(policy, |event| async {
            match event {
                FinalizerEvent::Apply(p) => apply_policy(p, &ctx).await,
                FinalizerEvent::Cleanup(p) => cleanup_policy(p, &ctx).await,
            }
        })
        .await
        .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    // Where a slow reconcile's time went (with kube-runtime's span: which object, and why).
    tracing::debug!(
        policy = %guard.name_any(),
        waited_for_caches_ms = waited.as_millis() as u64,
        took_ms = started.elapsed().as_millis() as u64,
        ok = result.is_ok(),
        "reconciled"
    );
    ctx.count_managed();
    result
}

/// The pipeline for a live policy.
async fn apply_policy(policy: Arc<TenantPolicy>, ctx: &Context) -> Result<Requeue, Error> {
    let owner = owner_of(&policy);
    let memory = ctx.memory.of(&owner.name);
    let generation = policy.meta().generation;
    if let Err(problem) = validate::validate(&owner.name, &policy.spec) {
        return stall_invalid(&policy, ctx, problem).await;
    }
    let mut assignment = select_for(&policy, &ctx.stores);
    let budgets = memory.budgets(|memories| {
        let (live, now) = (&ctx.stores, Instant::now());
        shared_quotas::add_parts(&owner, &policy.spec, &mut assignment, live, memories, now)
    });
    if let Err(problem) = dry_run_gate(&policy, &owner, ctx, &memory).await {
        return stall_invalid(&policy, ctx, problem).await;
    }
    let diff = diff::compute(
        &owner,
        &assignment.desired,
        &ctx.stores,
        &handover(&policy, &ctx.stores.policies.state(), &ctx.stores),
        policy.spec.deletion_policy,
        &memory.known_converged(generation),
    );
    // The actions hold what they need of it: free it before the writes (4 objects a namespace).
    assignment.desired = Vec::new();
    let (planned, writes) = (Instant::now(), diff.actions.len());
    let outcomes = ctx
        .writer
        .execute(&owner, diff.actions, taking(&policy, &memory.not_owned))
        .await;
    tracing::debug!(
        policy = %owner.name,
        selected = assignment.selected.len(),
        writes,
        retries = outcomes.iter().filter(|o| matches!(o, Outcome::Retry(_))).count(),
        writes_ms = planned.elapsed().as_millis() as u64,
        "written"
    );
    let facts = Facts {
        generation,
        selected: std::mem::take(&mut assignment.selected),
        shadowed: assignment.shadowed,
        shadowed_classes: assignment.shadowed_classes,
        declared_classes: declared_classes(&policy),
        converged: diff.converged,
        waiting: diff.waiting,
        outcomes: &outcomes,
        budgets: budgets.states,
        budgets_settled: budgets.settled,
    };
    let recheck_in = budgets.recheck_in;
    memory.budgets(|m| m.written(budgets.planned, &outcomes, Instant::now()));
    let mut report = memory.reported(|reported| report::report(facts, reported));
    drop(outcomes);
    memory.remember_converged(generation, std::mem::take(&mut report.converged));
    ctx.count_drift(&report.drift_corrected);
    ctx.count_budgets(&owner.name, &report.summary.shared_quotas);
    publish(ctx, &policy, &report.events).await;
    if !report.retry {
        write_status(&policy, &report.summary, ctx).await?;
    }
    let delay = memory.delay(report.next, report.transient_failures);
    // A resize held while a part settles is due sooner than the usual "soon".
    Ok(Requeue::requeue(recheck_in.map_or(delay, |r| delay.min(r))))
}

/// Whatever the API server would refuse in the objects the policy builds, found before any
/// namespace is touched, whether or not one is selected: once per generation.
async fn dry_run_gate(
    policy: &TenantPolicy,
    owner: &Owner,
    ctx: &Context,
    memory: &PolicyMemory,
) -> Result<(), String> {
    let generation = policy.meta().generation;
    if !memory.is_validated(generation, policy.status.as_ref()) {
        let classes = ctx.stores.cluster_classes();
        let templates = templates(&policy.spec, &classes, DRY_RUN_NAMESPACE);
        ctx.writer.dry_run(owner, &templates).await?;
        memory.mark_validated(generation);
    }
    memory.reported(|r| r.spec_valid());
    Ok(())
}

/// Which namespaces the policy selects and what it wins in each, against every other live
/// policy in the cache.
fn select_for(policy: &TenantPolicy, stores: &Stores) -> Assignment {
    let all = stores.policies.state();
    let candidates = candidates_with(policy, &all);
    let me = candidates.last().expect("this policy was just added");
    let snapshot = stores.namespaces.state();
    let namespaces: Vec<NamespaceInfo> = snapshot.iter().map(|ns| ns.info()).collect();
    select::assign(me, &candidates, &namespaces, &stores.cluster_classes())
}

/// Whether an object the policy holds and no longer wants is the winner's to take in place
/// ([`select::handed_over`]); the candidates are built at the first such object.
fn handover<'p>(
    policy: &'p TenantPolicy,
    all: &'p [Arc<Guarded>],
    stores: &'p Stores,
) -> impl Fn(&ObjectKey) -> bool + 'p {
    let classes = stores.cluster_classes();
    let candidates = std::cell::OnceCell::new();
    move |key: &ObjectKey| {
        let candidates = candidates.get_or_init(|| candidates_with(policy, all));
        let namespace = |ns: &str| {
            let ns = stores.namespaces.get(&ObjectRef::new(ns))?;
            Some(NamespaceInfo {
                name: Cow::Owned(ns.name.to_string()),
                labels: Cow::Owned(ns.labels.as_ref().clone()),
                terminating: ns.terminating,
            })
        };
        let name = policy.meta().name.as_deref().unwrap_or_default();
        select::handed_over(name, key, candidates, namespace, &classes)
    }
}

/// Every live policy of `all` as a selection candidate, `policy` (as reconciled) last.
fn candidates_with<'a>(policy: &'a TenantPolicy, all: &'a [Arc<Guarded>]) -> Vec<Candidate<'a>> {
    let name = policy.meta().name.as_deref().unwrap_or_default();
    let mut candidates: Vec<Candidate> = all
        .iter()
        .filter_map(|g| g.0.as_ref().ok())
        .filter(|p| p.meta().deletion_timestamp.is_none() && p.name_any() != name)
        .filter_map(|p| Candidate::new(p.meta().name.as_deref().unwrap_or_default(), &p.spec).ok())
        .collect();
    candidates.push(Candidate::new(name, &policy.spec).expect("validated"));
    candidates
}

/// How the writer treats existing objects of declared names that Tenantry does not own.
fn taking<'a>(policy: &TenantPolicy, memory: &'a NotOwned) -> Taking<'a> {
    Taking {
        adoption: policy.spec.adoption_policy,
        memory,
    }
}

fn declared_classes(policy: &TenantPolicy) -> Vec<String> {
    policy
        .spec
        .storage
        .iter()
        .flat_map(|s| s.classes.iter().map(|c| c.name.clone()))
        .collect()
}

async fn publish(ctx: &Context, policy: &TenantPolicy, events: &[EventNote]) {
    let regarding = policy.object_ref(&());
    for event in events {
        ctx.writer.publish(&regarding, event).await;
    }
}

/// The stored policy does not deserialize into this version's types: report it on the policy
/// (status and one Warning Event per distinct problem) and leave everything as it is.
async fn unreadable(
    guard: &Guarded,
    invalid: &kube::core::error_boundary::InvalidObject,
    ctx: &Context,
) -> Result<Requeue, Error> {
    let name = guard.name_any();
    let problem = format!(
        "the stored policy cannot be read by this version of Tenantry: {}",
        invalid.error
    );
    if ctx.memory.of(&name).reported(|r| r.invalid_spec(&problem)) {
        warn!(policy = %name, error = %invalid.error, "policy cannot be read");
        let event = EventNote::new(Severity::Warning, "InvalidSpec", problem.clone());
        ctx.writer.publish(&guard.object_ref(&()), &event).await;
        let summary = Summary {
            generation: invalid.metadata.generation,
            invalid_spec: Some(problem),
            ..Default::default()
        };
        let status = status::compute(&summary, None, now());
        ctx.writer
            .patch_status(&name, &status)
            .await
            .map_err(Error::Status)?;
    }
    Ok(Requeue::await_change())
}

/// The spec cannot be applied: say so (status Stalled/InvalidSpec, one Warning Event per distinct
/// problem) and touch nothing until the spec changes.
async fn stall_invalid(
    policy: &TenantPolicy,
    ctx: &Context,
    problem: String,
) -> Result<Requeue, Error> {
    if ctx
        .memory
        .of(&policy.name_any())
        .reported(|r| r.invalid_spec(&problem))
    {
        let event = EventNote::new(Severity::Warning, "InvalidSpec", problem.clone());
        publish(ctx, policy, &[event]).await;
    }
    let summary = Summary {
        generation: policy.meta().generation,
        invalid_spec: Some(problem),
        ..Default::default()
    };
    write_status(policy, &summary, ctx).await?;
    Ok(Requeue::await_change())
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// Writes status only when it changed.
async fn write_status(
    policy: &TenantPolicy,
    summary: &Summary,
    ctx: &Context,
) -> Result<(), Error> {
    let status = status::compute(summary, policy.status.as_ref(), now());
    if policy.status.as_ref() != Some(&status) {
        ctx.writer
            .patch_status(&policy.name_any(), &status)
            .await
            .map_err(Error::Status)?;
    }
    Ok(())
}

/// The policy is being deleted: Retain releases every object it owns; Delete leaves them to the
/// garbage collector (they carry its controller ownerReference).
async fn cleanup_policy(policy: Arc<TenantPolicy>, ctx: &Context) -> Result<Requeue, Error> {
    let owner = owner_of(&policy);
    let owned = ctx.stores.labelled_for(&owner.name, &|_, _, _| true).len();
    let note = match policy.spec.deletion_policy {
        DeletionPolicy::Retain => {
            let actions = diff::release_all(&owner, &ctx.stores);
            let memory = ctx.memory.of(&owner.name);
            let outcomes = ctx
                .writer
                .execute(&owner, actions, taking(&policy, &memory.not_owned))
                .await;
            let left = outcomes
                .iter()
                .filter(|o| !matches!(o, Outcome::Released(_)))
                .count();
            if left > 0 {
                return Err(Error::ReleaseIncomplete(left));
            }
            (
                "Released",
                format!("policy deleted: released {owned} objects (deletionPolicy Retain)"),
            )
        }
        DeletionPolicy::Delete => (
            "Deleting",
            format!(
                "policy deleted: {owned} objects are removed by the garbage collector (deletionPolicy Delete)"
            ),
        ),
    };
    publish(
        ctx,
        &policy,
        &[EventNote::new(Severity::Normal, note.0, note.1)],
    )
    .await;
    ctx.memory.forget(&owner.name);
    info!(policy = %owner.name, "policy cleaned up");
    Ok(Requeue::await_change())
}

pub fn owner_of(policy: &TenantPolicy) -> Owner {
    Owner {
        name: policy.name_any(),
        uid: policy.uid().unwrap_or_default(),
    }
}
