//! The reconcile of one policy, as a pipeline: validate and dry-run gate -> plan (select, shared
//! parts, hand-over, diff: [`crate::pipeline::plan`]) -> write (the writer executes, the pure
//! [`crate::pipeline::outcome`] judges what it found) -> report -> Events and status -> requeue.
//! Each step is a pure function or calls to the writer; this file only sequences them.

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller;
use kube::runtime::finalizer::Event as FinalizerEvent;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use tracing::{info, warn};

use super::{Context, Error, PolicyMemory};
use crate::api::{AdoptionPolicy, DeletionPolicy, TenantPolicy};
use crate::cache::{Guarded, Stores};
use crate::controller::writer::DRY_RUN_NAMESPACE;
use crate::model::action::{Action, Outcome};
use crate::model::event::{EventNote, Severity};
use crate::model::key::{Owner, owner_of};
use crate::model::live::LiveIndex;
use crate::model::namespace::NamespaceInfo;
use crate::pipeline::build::templates;
use crate::pipeline::diff;
use crate::pipeline::outcome::{self, Judging, NotOwned};
use crate::pipeline::plan::{self, Cluster, Plan};
use crate::pipeline::report::Facts;
use crate::pipeline::select::Candidate;
use crate::pipeline::status::{self, Summary};
use crate::pipeline::validate::{self, InvalidSpec};

/// How long a reconcile waits for the caches to show the writes made before it started.
const OWN_WRITES_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

pub async fn reconcile(
    guard: Arc<Guarded>,
    ctx: Arc<Context>,
) -> Result<controller::Action, Error> {
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
async fn apply_policy(
    policy: Arc<TenantPolicy>,
    ctx: &Context,
) -> Result<controller::Action, Error> {
    let owner = owner_of(&policy);
    let memory = ctx.memory.of(&owner.name);
    if let Err(invalid) = check_spec(&policy, &owner, ctx, &memory).await {
        return stall_invalid(&policy, ctx, invalid.to_string()).await;
    }
    let mut plan = plan_policy(&policy, &owner, &ctx.stores, &memory);
    let actions = std::mem::take(&mut plan.diff.actions);
    let outcomes = write(ctx, &owner, &policy, &memory, actions).await;
    let planned = std::mem::take(&mut plan.budgets.planned);
    memory.budgets(|m| m.written(planned, &outcomes, Instant::now()));
    let recheck_in = plan.budgets.recheck_in;
    let report = memory.report(policy.meta().generation, facts(&policy, plan, &outcomes));
    ctx.count_drift(&report.drift_corrected);
    ctx.count_budgets(&owner.name, &report.summary.shared_quotas);
    publish(ctx, &policy, &report.events).await;
    if !report.retry {
        write_status(&policy, &report.summary, ctx).await?;
    }
    let delay = memory.delay(report.next, report.transient_failures);
    // A resize held while a part settles is due sooner than the usual "soon".
    Ok(controller::Action::requeue(
        recheck_in.map_or(delay, |r| delay.min(r)),
    ))
}

/// What the CRD's rules cannot check, then the API server's dry run of what the policy builds.
async fn check_spec(
    policy: &TenantPolicy,
    owner: &Owner,
    ctx: &Context,
    memory: &PolicyMemory,
) -> Result<(), InvalidSpec> {
    validate::validate(&owner.name, &policy.spec)?;
    dry_run_gate(policy, owner, ctx, memory).await
}

/// What the report is made of: the plan (its actions executed) and what became of them.
fn facts<'o>(policy: &TenantPolicy, plan: Plan, outcomes: &'o [Outcome]) -> Facts<'o> {
    Facts {
        generation: policy.meta().generation,
        selected: plan.selected,
        shadowed: plan.shadowed,
        shadowed_classes: plan.shadowed_classes,
        declared_classes: declared_classes(policy),
        converged: plan.diff.converged,
        waiting: plan.diff.waiting,
        outcomes,
        budgets: plan.budgets.states,
        budgets_settled: plan.budgets.settled,
    }
}

/// Whatever the API server would refuse in the objects the policy builds, found before any
/// namespace is touched, whether or not one is selected: once per generation, one object of
/// each declared item, stopping at the first refusal.
async fn dry_run_gate(
    policy: &TenantPolicy,
    owner: &Owner,
    ctx: &Context,
    memory: &PolicyMemory,
) -> Result<(), InvalidSpec> {
    let generation = policy.meta().generation;
    if !memory.is_validated(generation, policy.status.as_ref()) {
        let classes = ctx.stores.cluster_classes();
        let templates = templates(&policy.spec, &classes, DRY_RUN_NAMESPACE);
        for desired in validate::dry_run_objects(templates) {
            let answer = ctx.writer.dry_run(owner, &desired).await;
            validate::dry_run_verdict(&desired, &answer)?;
        }
        memory.mark_validated(generation);
    }
    memory.reported(|r| r.spec_valid());
    Ok(())
}

/// What the policy should write, planned from the caches against every other live policy.
fn plan_policy(
    policy: &TenantPolicy,
    owner: &Owner,
    stores: &Stores,
    memory: &PolicyMemory,
) -> Plan {
    let all = stores.policies.state();
    let candidates = candidates_with(policy, &all);
    let me = candidates.last().expect("this policy was just added");
    let snapshot = stores.namespaces.state();
    let namespaces: Vec<NamespaceInfo> = snapshot.iter().map(|ns| ns.info()).collect();
    let namespace = |name: &str| {
        let ns = stores.namespaces.get(&ObjectRef::new(name))?;
        Some(ns.info().into_owned())
    };
    let classes = stores.cluster_classes();
    let cluster = Cluster {
        namespaces: &namespaces,
        namespace: &namespace,
        classes: &classes,
        live: stores,
    };
    let known_converged = memory.known_converged(policy.meta().generation);
    memory.budgets(|budgets| {
        let now = Instant::now();
        plan::plan(
            me,
            &candidates,
            owner,
            &cluster,
            budgets,
            &known_converged,
            now,
        )
    })
}

/// How many times the writer is asked in one reconcile: the actions, then what its answers call
/// for (an adoption patch after a creation found the name taken; the creation after a look at
/// an object once found not owned found it gone), then once more for a race between them.
const WRITE_ROUNDS: usize = 3;

/// Executes the actions and says what became of each: the writer executes, [`outcome`] judges
/// what it found (and remembers objects found not owned), follow-ups are executed in turn.
async fn write(
    ctx: &Context,
    owner: &Owner,
    policy: &TenantPolicy,
    memory: &PolicyMemory,
    actions: Vec<Action>,
) -> Vec<Outcome> {
    let (adoption, started) = (policy.spec.adoption_policy, Instant::now());
    let (mut pending, mut outcomes) =
        memory.not_owned(|m| outcome::recall(actions, &judging(adoption, owner, m)));
    for _ in 0..WRITE_ROUNDS {
        if pending.is_empty() {
            break;
        }
        let executed = ctx.writer.execute(owner, pending).await;
        let (settled, follow_ups) =
            memory.not_owned(|m| outcome::settle(executed, &mut judging(adoption, owner, m)));
        outcomes.extend(settled);
        pending = follow_ups;
    }
    outcomes.extend(outcome::give_up(pending));
    tracing::debug!(
        policy = %owner.name,
        retries = outcomes.iter().filter(|o| matches!(o, Outcome::Retry(_))).count(),
        writes_ms = started.elapsed().as_millis() as u64,
        "written"
    );
    outcomes
}

fn judging<'m>(
    adoption: AdoptionPolicy,
    owner: &'m Owner,
    memory: &'m mut NotOwned,
) -> Judging<'m> {
    Judging {
        adoption,
        owner,
        memory,
        now: Instant::now(),
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
) -> Result<controller::Action, Error> {
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
    Ok(controller::Action::await_change())
}

/// The spec cannot be applied: say so (status Stalled/InvalidSpec, one Warning Event per distinct
/// problem) and touch nothing until the spec changes.
async fn stall_invalid(
    policy: &TenantPolicy,
    ctx: &Context,
    problem: String,
) -> Result<controller::Action, Error> {
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
    Ok(controller::Action::await_change())
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
async fn cleanup_policy(
    policy: Arc<TenantPolicy>,
    ctx: &Context,
) -> Result<controller::Action, Error> {
    let owner = owner_of(&policy);
    let owned = ctx.stores.labelled_for(&owner.name, &|_, _, _| true).len();
    let note = match policy.spec.deletion_policy {
        DeletionPolicy::Retain => {
            let actions = diff::release_all(&owner, &ctx.stores);
            let memory = ctx.memory.of(&owner.name);
            let outcomes = write(ctx, &owner, &policy, &memory, actions).await;
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
    Ok(controller::Action::await_change())
}
