//! The measured controller phases: convergence (a new policy over all N namespaces) and
//! propagation (one quota value changed), each from a quiet start and each followed by a full
//! check of the end state; and the teardown between runs.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tenantry::api::{MANAGED_SELECTOR, POLICY_LABEL, TenantPolicy};
use tenantry_testkit::{Operator, managed_kinds, wait_for};

use crate::cli::Args;
use crate::controller::{await_ready, start};
use crate::fixtures::{BENCH_LABEL, declared, policy_object, policy_spec, subset};
use crate::probe::{Before, Phases};
use crate::quiet::quiet;

/// Every namespace holds exactly the declared objects of `policy` (and no other namespace any),
/// with the declared specs.
pub async fn verify_end_state(
    client: &Client,
    policy: &str,
    names: &[String],
    pods: &str,
) -> anyhow::Result<()> {
    let expected: BTreeMap<String, Value> = declared(pods)
        .into_iter()
        .map(|(r, name, spec)| (format!("{}/{name}", r.kind), spec))
        .collect();
    let lp = ListParams::default().labels(&format!("{POLICY_LABEL}={policy}"));
    let mut found: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for resource in managed_kinds() {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        for o in api.list(&lp).await? {
            let key = format!("{}/{}", resource.kind, o.name_any());
            let ns = o.namespace().unwrap_or_default();
            match expected.get(&key) {
                Some(spec) if subset(spec, &o.data["spec"]) => {}
                _ => bail!(
                    "end state: {ns}/{key} is not as declared: {}",
                    o.data["spec"]
                ),
            }
            found.entry(ns).or_default().insert(key);
        }
    }
    let want: BTreeSet<String> = expected.keys().cloned().collect();
    let wrong: Vec<&String> = names
        .iter()
        .filter(|n| found.get(*n) != Some(&want))
        .collect();
    if found.len() != names.len() || !wrong.is_empty() {
        bail!(
            "end state: {} namespaces hold objects of {policy}, {} expected; wrong: {:?}",
            found.len(),
            names.len(),
            wrong.iter().take(5).collect::<Vec<_>>()
        );
    }
    Ok(())
}

/// One measured convergence and propagation, with the controller that did them (still running)
/// and its policy.
pub struct Convergence {
    pub convergence: f64,
    pub propagation: f64,
    pub operator: Operator,
    pub policy: String,
}

/// One measured convergence (a new policy over all N namespaces) and propagation (one quota
/// value changed), each from a quiet start, each followed by a full check of the end state.
/// Convergence is recorded in `phases`.
pub async fn convergence(
    client: &Client,
    args: &Args,
    names: &[String],
    run: &str,
    index: usize,
    phases: &mut Phases,
) -> anyhow::Result<Convergence> {
    let n = names.len();
    let operator = start(args).await?;
    let policies: Api<TenantPolicy> = Api::all(client.clone());
    let name = format!("bench-{run}-{index}");
    let limit = Duration::from_secs(120 + n as u64 / 5);
    quiet(client, names, "convergence").await?;
    let before = Before::take(operator.pid());
    let started = Instant::now();
    let spec = policy_spec(json!({BENCH_LABEL: run}), "20");
    policies
        .create(&PostParams::default(), &policy_object(&name, spec)?)
        .await?;
    await_ready(&policies, &name, 1, n, limit).await?;
    let convergence = started.elapsed().as_secs_f64();
    eprintln!("[bench N={n}] convergence {convergence:.2}s");
    phases.record("convergence", convergence, operator.pid(), &before);
    verify_end_state(client, &name, names, "20").await?;

    quiet(client, names, "propagation").await?;
    let started = Instant::now();
    let patch = json!({"spec": policy_spec(json!({BENCH_LABEL: run}), "25")});
    policies
        .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    await_ready(&policies, &name, 2, n, limit).await?;
    let propagation = started.elapsed().as_secs_f64();
    eprintln!("[bench N={n}] propagation {propagation:.2}s");
    verify_end_state(client, &name, names, "25").await?;
    Ok(Convergence {
        convergence,
        propagation,
        operator,
        policy: name,
    })
}

/// Deletes the policy (its objects go with it) and stops the controller.
pub async fn teardown(
    client: &Client,
    mut operator: Operator,
    policy: &str,
    limit: Duration,
) -> anyhow::Result<()> {
    let policies: Api<TenantPolicy> = Api::all(client.clone());
    policies.delete(policy, &DeleteParams::default()).await?;
    tokio::time::timeout(
        limit,
        await_condition(policies, policy, |p: Option<&TenantPolicy>| p.is_none()),
    )
    .await
    .context("policy deletion")??;
    // Its objects go with it (the controller, or the garbage collector by ownerReferences).
    let lp = ListParams::default().labels(MANAGED_SELECTOR);
    wait_for("the policy's objects to be gone", limit, || async {
        let mut left = 0;
        for resource in managed_kinds() {
            let api = Api::<DynamicObject>::all_with(client.clone(), &resource);
            left += api.list_metadata(&lp).await.map_or(1, |l| l.items.len());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        left == 0
    })
    .await?;
    operator.stop();
    Ok(())
}
