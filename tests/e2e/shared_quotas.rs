//! Shared quotas against the real control plane: one budget across a team's namespaces that the
//! API server's own quota admission makes impossible to exceed, checked from outside by a
//! sampler that lists the pods and the parts every 50 ms for the whole run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, ResourceQuota};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tenantry::api::{POLICY_LABEL, SHARED_QUOTA_LABEL};
use tenantry::quantity;

use crate::harness::{
    Operator, TestNamespace, TestPolicy, client, eventually, kubectl_ok, repo_root, unique_name,
};
use crate::smoke::install_crd;

/// Label on every pod template of a test, so one cluster-wide list (one read, at one revision)
/// sees all its pods.
const RUN_LABEL: &str = "e2e.tenantry.io/shared-run";

async fn setup(prefix: &str) -> (Client, Operator) {
    let client = client().await;
    install_crd(&client).await;
    // The window admission policy (and the others) as installed; idempotent.
    kubectl_ok(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-k",
        repo_root().join("config/admission").to_str().unwrap(),
    ]);
    (client, Operator::start(&unique_name(prefix)).await)
}

fn milli(quota: &ResourceQuota, field: &str, resource: &str) -> Option<i128> {
    let map = match field {
        "spec" => quota.spec.as_ref()?.hard.as_ref()?,
        "status" => quota.status.as_ref()?.hard.as_ref()?,
        _ => quota.status.as_ref()?.used.as_ref()?,
    };
    quantity::milli(&map.get(resource)?.0)
}

/// Non-terminal pods of the run (what quota counts), per namespace.
async fn pods(client: &Client, run: &str) -> Vec<Pod> {
    let params = ListParams::default().labels(&format!("{RUN_LABEL}={run}"));
    Api::<Pod>::all(client.clone())
        .list(&params)
        .await
        .expect("list pods")
        .items
        .into_iter()
        .filter(|p| {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            !matches!(phase, Some("Succeeded" | "Failed"))
        })
        .collect()
}

async fn parts(client: &Client, policy: &str) -> Vec<ResourceQuota> {
    let params =
        ListParams::default().labels(&format!("{POLICY_LABEL}={policy},{SHARED_QUOTA_LABEL}"));
    Api::<ResourceQuota>::all(client.clone())
        .list(&params)
        .await
        .expect("list parts")
        .items
}

/// What the sampler saw: the most pods at once, and the largest sum of enforced parts
/// (max of spec.hard and status.hard, per part).
#[derive(Default, Debug)]
struct Maxima {
    samples: usize,
    pods: usize,
    enforced: i128,
}

/// Samples every 50 ms until `stop`.
fn sampler(
    client: Client,
    run: String,
    policy: String,
    resource: &'static str,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Maxima> {
    tokio::spawn(async move {
        let mut maxima = Maxima::default();
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            let pods = pods(&client, &run).await;
            let enforced: i128 = parts(&client, &policy)
                .await
                .iter()
                .map(|q| {
                    let spec = milli(q, "spec", resource).unwrap_or(0);
                    spec.max(milli(q, "status", resource).unwrap_or(0))
                })
                .sum();
            maxima.samples += 1;
            maxima.pods = maxima.pods.max(pods.len());
            maxima.enforced = maxima.enforced.max(enforced);
            let pause = Duration::from_millis(50).saturating_sub(started.elapsed());
            tokio::time::sleep(pause).await;
        }
        maxima
    })
}

fn deployment(
    name: &str,
    run: &str,
    replicas: i32,
    requests: Option<serde_json::Value>,
) -> Deployment {
    let mut container = json!({"name": "app", "image": "registry.invalid/app:1"});
    if let Some(requests) = requests {
        container["resources"] = json!({"requests": requests});
    }
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, RUN_LABEL: run}},
                "spec": {"containers": [container]},
            },
        },
    }))
    .unwrap()
}

async fn scale(client: &Client, namespace: &str, name: &str, replicas: i32) {
    Api::<Deployment>::namespaced(client.clone(), namespace)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": replicas}})),
        )
        .await
        .expect("scale");
}

/// Waits until the run has exactly `total` pods, `per_namespace` says how many each namespace
/// must hold (None: any), and returns how long it took.
async fn wait_pods(
    client: &Client,
    run: &str,
    what: &str,
    check: impl Fn(&[Pod]) -> bool,
) -> Duration {
    let started = Instant::now();
    eventually(what, || async {
        let pods = pods(client, run).await;
        check(&pods).then_some(())
    })
    .await;
    started.elapsed()
}

fn in_namespace(pods: &[Pod], namespace: &str) -> usize {
    pods.iter()
        .filter(|p| p.namespace().as_deref() == Some(namespace))
        .count()
}

#[tokio::test]
async fn the_total_is_never_exceeded_under_contention_and_freed_budget_moves_to_the_others() {
    let (client, operator) = setup("sq-pods").await;
    let team = unique_name("team");
    let mut namespaces = Vec::new();
    for _ in 0..4 {
        let ns = TestNamespace::create_labelled(&client, "sq", &[("e2e-team", &team)]).await;
        ns.wait_for_default_service_account(&client).await;
        namespaces.push(ns);
    }
    let policy = TestPolicy::create(
        &client,
        &operator,
        "sq-pods",
        json!({
            "namespaceSelector": {"matchLabels": {"e2e-team": team}},
            "sharedQuotas": [{"name": "team-budget", "hard": {"pods": "20"}}],
        }),
    )
    .await;
    policy.wait_ready(&client).await;
    eventually("a part with status in every namespace", || async {
        let parts = parts(&client, &policy.name).await;
        (parts.len() == 4 && parts.iter().all(|q| milli(q, "status", "pods").is_some()))
            .then_some(())
    })
    .await;

    let run = unique_name("run");
    let stop = Arc::new(AtomicBool::new(false));
    let sampling = sampler(
        client.clone(),
        run.clone(),
        policy.name.clone(),
        "pods",
        stop.clone(),
    );
    // Four Deployments of 10 replicas, all at the same moment: 40 pods wanted, 20 allowed.
    futures::future::join_all(namespaces.iter().map(|ns| {
        let api = Api::<Deployment>::namespaced(client.clone(), &ns.name);
        let d = deployment("web", &run, 10, None);
        async move {
            api.create(&PostParams::default(), &d)
                .await
                .expect("create deployment")
        }
    }))
    .await;
    let filled = wait_pods(&client, &run, "exactly 20 pods", |p| p.len() == 20).await;

    // One team scales to zero: the freed budget lets the others reach 20 again.
    scale(&client, &namespaces[0].name, "web", 0).await;
    let first = namespaces[0].name.clone();
    let refilled = wait_pods(
        &client,
        &run,
        "20 pods again, none in the scaled-down namespace",
        |p| p.len() == 20 && in_namespace(p, &first) == 0,
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let maxima = sampling.await.expect("sampler");
    println!(
        "shared pods budget 20 over 4 namespaces: {} samples, at most {} pods and {} enforced \
         parts at once; 20 pods after {:.1} s, 20 again {:.1} s after one scaled to zero",
        maxima.samples,
        maxima.pods,
        maxima.enforced / 1000,
        filled.as_secs_f64(),
        refilled.as_secs_f64()
    );
    assert!(maxima.samples > 20, "the sampler ran: {maxima:?}");
    assert!(maxima.pods <= 20, "pods exceeded the budget: {maxima:?}");
    assert!(
        maxima.enforced <= 20_000,
        "the parts exceeded the budget: {maxima:?}"
    );
    let status = policy.get(&client).await.status.unwrap();
    let budget = &status.shared_quotas[0];
    assert_eq!(budget.used["pods"].0, "20", "{budget:?}");
    assert_eq!(budget.exhausted, ["pods"], "{budget:?}");
    drop(policy);
}

#[tokio::test]
async fn a_namespace_joining_over_the_budget_keeps_its_pods_admits_nothing_and_recovers() {
    let (client, operator) = setup("sq-join").await;
    let team = unique_name("team");
    let member = TestNamespace::create_labelled(&client, "sq-member", &[("e2e-team", &team)]).await;
    let joiner = TestNamespace::create(&client, "sq-joiner").await;
    member.wait_for_default_service_account(&client).await;
    joiner.wait_for_default_service_account(&client).await;
    let run = unique_name("run");
    // Before it is governed, the joiner runs 8 pods.
    Api::<Deployment>::namespaced(client.clone(), &joiner.name)
        .create(&PostParams::default(), &deployment("legacy", &run, 8, None))
        .await
        .unwrap();
    wait_pods(&client, &run, "the joiner's 8 pods", |p| {
        in_namespace(p, &joiner.name) == 8
    })
    .await;
    let policy = TestPolicy::create(
        &client,
        &operator,
        "sq-join",
        json!({
            "namespaceSelector": {"matchLabels": {"e2e-team": team}},
            "sharedQuotas": [{"name": "team-budget", "hard": {"pods": "10"}}],
        }),
    )
    .await;
    policy.wait_ready(&client).await;
    Api::<Deployment>::namespaced(client.clone(), &member.name)
        .create(&PostParams::default(), &deployment("web", &run, 5, None))
        .await
        .unwrap();
    wait_pods(&client, &run, "the member's 5 pods", |p| {
        in_namespace(p, &member.name) == 5
    })
    .await;

    // The joiner joins with 8: 13 in a budget of 10.
    kubectl_ok(&[
        "label",
        "namespace",
        &joiner.name,
        &format!("e2e-team={team}"),
    ]);
    let over = eventually("status to say the budget is 3 pods over", || async {
        let status = policy.get(&client).await.status?;
        let budget = status.shared_quotas.first()?;
        (budget.namespaces == 2
            && budget.over_budget.get("pods").map(|q| q.0.as_str()) == Some("3"))
        .then(|| budget.clone())
    })
    .await;
    assert_eq!(over.used["pods"].0, "13");
    // Nothing evicted; nothing new admitted anywhere in the budget.
    let now = pods(&client, &run).await;
    assert_eq!(
        (
            in_namespace(&now, &joiner.name),
            in_namespace(&now, &member.name)
        ),
        (8, 5)
    );
    let extra: Pod = serde_json::from_value(json!({
        "metadata": {"name": "one-more", "labels": {RUN_LABEL: run}},
        "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]},
    }))
    .unwrap();
    let refused = Api::<Pod>::namespaced(client.clone(), &member.name)
        .create(&PostParams::default(), &extra)
        .await;
    assert!(
        refused.is_err(),
        "a pod was admitted in a budget over its total"
    );

    // Use falls below the budget: the member may grow again.
    scale(&client, &joiner.name, "legacy", 2).await;
    scale(&client, &member.name, "web", 7).await;
    wait_pods(
        &client,
        &run,
        "the member grows to 7 once the joiner shrank to 2",
        |p| in_namespace(p, &joiner.name) == 2 && in_namespace(p, &member.name) == 7,
    )
    .await;
    eventually("status to clear the overshoot", || async {
        let status = policy.get(&client).await.status?;
        status
            .shared_quotas
            .first()?
            .over_budget
            .is_empty()
            .then_some(())
    })
    .await;
    drop(policy);
}
