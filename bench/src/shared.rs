//! `make bench`'s shared-quota case (`tenantry-bench-shared`): one budget over N namespaces, on
//! the local control plane.
//!
//! Measures, from outside the controller: the writes of a rebalance (parts whose spec changed,
//! which must not grow with N), how long a namespace that used up its part waits for headroom
//! (from the API server refusing its next pod to its part's `status.hard` rising, so including
//! kube-controller-manager's copy), the writes at steady state (Tenantry's managedFields
//! entries and specs of every part, and the policy's resourceVersion, before and after 10 s),
//! and the quota write requests the API server served meanwhile (its own counter: a no-op
//! apply changes no resourceVersion, so only the requests show one).
//! Prints figures and writes JSON; exits non-zero when a target is missed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Parser;
use k8s_openapi::api::core::v1::{Pod, ResourceQuota, ServiceAccount};
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tenantry::api::{SHARED_QUOTA_LABEL, TenantPolicy};
use tenantry_testkit::{Launch, Operator, free_port, nearest_rank, poll};

use crate::apiserver::requests_served;

#[derive(Parser, Debug)]
#[command(
    name = "tenantry-bench-shared",
    about = "Benchmark a shared quota over many namespaces"
)]
pub struct Args {
    /// Namespaces in the budget.
    #[arg(long, default_value_t = 1000)]
    pub namespaces: usize,
    /// Starvation trials (each exhausts one namespace's part and waits for more).
    #[arg(long, default_value_t = 100)]
    pub trials: usize,
    /// The tenantry binary to measure (a release build).
    #[arg(long, default_value = "target/release/tenantry")]
    pub tenantry: PathBuf,
    /// Where to write bench-shared-N.json.
    #[arg(long, default_value = "target/bench")]
    pub out: PathBuf,
    /// Fail when the p99 wait for headroom exceeds this many milliseconds (0: report only).
    #[arg(long, default_value_t = 1000)]
    pub max_p99_ms: u64,
}

/// The figures (bench-shared-N.json).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SharedResult {
    pub namespaces: usize,
    pub convergence_s: f64,
    pub steady_state_writes: usize,
    pub trials: usize,
    pub headroom_p50_ms: u64,
    pub headroom_p99_ms: u64,
    pub parts_written_per_rebalance_mean: f64,
    pub parts_written_per_rebalance_max: usize,
    pub quota_write_requests_per_rebalance_mean: f64,
    pub quota_write_requests_per_rebalance_max: u64,
    pub quota_write_requests_at_steady_state: u64,
}

pub const RUN_LABEL: &str = "bench.tenantry.io/shared";
/// The value of [`RUN_LABEL`] on the namespaces and the policy of the run.
pub const RUN: &str = "run";
const POLICY: &str = "bench-shared";
const BUDGET: &str = "team-budget";
/// The most quota write requests one rebalance may take, whatever N.
const MAX_REQUESTS_PER_REBALANCE: u64 = 10;

/// The `i`th namespace of the budget.
pub fn namespace_name(i: usize) -> String {
    format!("bsq-{i:05}")
}

/// Starts the controller on the run's policy (log: `<out>/bench-shared-controller.log`),
/// without waiting for it: convergence is timed from here.
pub async fn start_controller(args: &Args) -> anyhow::Result<Operator> {
    Operator::launch(Launch {
        binary: args.tenantry.clone(),
        port: free_port(),
        label: RUN_LABEL.into(),
        shard: RUN.into(),
        args: Vec::new(),
        env: vec![("RUST_LOG".into(), "info,kube=warn".into())],
        log: args.out.join("bench-shared-controller.log"),
        ready_within: None,
    })
    .await
}

/// The parts of the budget, by namespace.
async fn parts(client: &Client) -> anyhow::Result<BTreeMap<String, ResourceQuota>> {
    let params = ListParams::default().labels(&format!("{SHARED_QUOTA_LABEL}={BUDGET}"));
    Ok(Api::<ResourceQuota>::all(client.clone())
        .list(&params)
        .await?
        .items
        .into_iter()
        .map(|q| (q.namespace().unwrap_or_default(), q))
        .collect())
}

/// Which pods figure of a part.
#[derive(Clone, Copy)]
enum Pods {
    Spec,
    Status,
    Used,
}

fn pods_of(q: &ResourceQuota, field: Pods) -> Option<i64> {
    let map = match field {
        Pods::Spec => q.spec.as_ref()?.hard.as_ref()?,
        Pods::Status => q.status.as_ref()?.hard.as_ref()?,
        Pods::Used => q.status.as_ref()?.used.as_ref()?,
    };
    map.get("pods")?.0.parse().ok()
}

/// What Tenantry wrote of a part: its spec and its own managedFields entry.
fn tenantry_view(q: &ResourceQuota) -> String {
    let entry = q
        .managed_fields()
        .iter()
        .find(|m| m.manager.as_deref() == Some("tenantry") && m.subresource.is_none())
        .map(|m| json!({"time": m.time, "operation": m.operation}));
    json!({"spec": q.spec, "labels": q.labels(), "entry": entry}).to_string()
}

/// Polls `check` every 10 ms until it holds.
async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    poll(what, limit, Duration::from_millis(10), || {
        let holds = check();
        async move { Ok(holds.await?.then_some(())) }
    })
    .await
}

/// Creates pods in `namespace` until the API server refuses one; the instant of the refusal.
async fn exhaust(client: &Client, namespace: &str, trial: usize) -> anyhow::Result<Instant> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    for k in 0.. {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": format!("p-{trial}-{k}"), "labels": {RUN_LABEL: RUN}},
            "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]},
        }))?;
        match api.create(&PostParams::default(), &pod).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("exceeded quota") => {
                return Ok(Instant::now());
            }
            // The window policy refusing while the part's status is being written: try again.
            Err(kube::Error::Api(s)) if s.code == 403 || s.code == 422 => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => return Err(e.into()),
        }
        if k > 1000 {
            bail!("{namespace}: no quota refused 1,000 pods");
        }
    }
    unreachable!()
}

/// One trial: the namespace uses up its part; how long until its part grows, how many parts'
/// specs changed meanwhile, and how many quota write requests that took.
async fn trial(
    client: &Client,
    namespace: &str,
    trial: usize,
) -> anyhow::Result<(Duration, usize, u64)> {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    wait_until(
        "the default service account",
        Duration::from_secs(60),
        || async { Ok(accounts.get_opt("default").await?.is_some()) },
    )
    .await?;
    let before = parts(client).await?;
    let requests = quota_write_requests(client).await?;
    let refused_at = exhaust(client, namespace, trial).await?;
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), namespace);
    wait_until("headroom", Duration::from_secs(60), || async {
        let q = quotas.get(BUDGET).await?;
        Ok(pods_of(&q, Pods::Status).unwrap_or(0) > pods_of(&q, Pods::Used).unwrap_or(0))
    })
    .await?;
    let waited = refused_at.elapsed();
    // Let the rebalance settle (spec copied to status everywhere) before counting its writes.
    let mut after = parts(client).await?;
    let settle = Instant::now();
    while after
        .values()
        .any(|q| pods_of(q, Pods::Spec) != pods_of(q, Pods::Status))
        && settle.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
        after = parts(client).await?;
    }
    let spec = |q: &ResourceQuota| pods_of(q, Pods::Spec);
    let moved = after
        .iter()
        .filter(|(ns, q)| before.get(*ns).map(spec) != Some(spec(q)))
        .count();
    let requests = quota_write_requests(client).await? - requests;
    Ok((waited, moved, requests))
}

/// The ResourceQuota applies and patches the API server has served (`apiserver_request_total`).
/// Every client's, but here only Tenantry patches quotas: kube-controller-manager writes their
/// status with PUT, and the bench only creates pods and reads.
async fn quota_write_requests(client: &Client) -> anyhow::Result<u64> {
    let quota_writes = |l: &str| {
        l.contains("resource=\"resourcequotas\"")
            && (l.contains("verb=\"APPLY\"") || l.contains("verb=\"PATCH\""))
    };
    Ok(requests_served(client, quota_writes).await? as u64)
}

/// Creates the policy with the budget (2 pods per namespace) and waits until every part is
/// sized and enforced.
async fn converge(client: &Client, n: usize) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let labels = BTreeMap::from([(RUN_LABEL.to_string(), RUN.to_string())]);
    let spec = json!({
        "namespaceSelector": {"matchLabels": {RUN_LABEL: RUN}},
        "sharedQuotas": [{"name": BUDGET, "hard": {"pods": (2 * n).to_string()}}],
    });
    let policy = tenantry_testkit::policy(POLICY, labels, spec)?;
    Api::<TenantPolicy>::all(client.clone())
        .create(&PostParams::default(), &policy)
        .await?;
    wait_until(
        "every part sized and enforced",
        Duration::from_secs(600),
        || async {
            let parts = parts(client).await?;
            Ok(parts.len() == n
                && parts.values().all(|q| {
                    let spec = pods_of(q, Pods::Spec);
                    spec.unwrap_or(0) > 0 && spec == pods_of(q, Pods::Status)
                }))
        },
    )
    .await?;
    Ok(started.elapsed())
}

/// Tenantry's writes over 10 s with nothing changing: parts whose spec or Tenantry entry
/// changed, plus 1 if the policy's resourceVersion moved; and the quota write requests served.
async fn steady_writes(client: &Client) -> anyhow::Result<(usize, u64)> {
    let policies: Api<TenantPolicy> = Api::all(client.clone());
    let view = |p: &BTreeMap<String, ResourceQuota>| -> BTreeMap<String, String> {
        p.iter()
            .map(|(ns, q)| (ns.clone(), tenantry_view(q)))
            .collect()
    };
    let before = view(&parts(client).await?);
    let version = policies.get(POLICY).await?.resource_version();
    let requests = quota_write_requests(client).await?;
    tokio::time::sleep(Duration::from_secs(10)).await; // a measured period, not a wait for a condition
    let after = view(&parts(client).await?);
    let changed = before
        .iter()
        .filter(|(ns, v)| after.get(*ns) != Some(v))
        .count();
    let policy_moved = policies.get(POLICY).await?.resource_version() != version;
    let requests = quota_write_requests(client).await? - requests;
    let writes = changed + usize::from(policy_moved) + before.len().abs_diff(after.len());
    Ok((writes, requests))
}

/// Converges, measures steady state and the trials; the figures and the targets missed.
pub async fn run(args: &Args, client: &Client) -> anyhow::Result<(SharedResult, Vec<String>)> {
    let n = args.namespaces;
    let converged = converge(client, n).await?;
    let (steady, steady_requests) = steady_writes(client).await?;
    let mut waits = Vec::new();
    let mut moved = Vec::new();
    let mut requests = Vec::new();
    for t in 0..args.trials {
        // Spread over the namespaces, so each trial starts from a namespace at its chunk.
        let ns = namespace_name((t * 7919) % n);
        let (waited, writes, sent) = trial(client, &ns, t).await?;
        waits.push(waited);
        moved.push(writes);
        requests.push(sent);
    }
    waits.sort();
    let (p50, p99) = (nearest_rank(&waits, 0.5), nearest_rank(&waits, 0.99));
    let max_moved = moved.iter().copied().max().unwrap_or(0);
    let mean_moved = moved.iter().sum::<usize>() as f64 / moved.len().max(1) as f64;
    let max_requests = requests.iter().copied().max().unwrap_or(0);
    let mean_requests = requests.iter().sum::<u64>() as f64 / requests.len().max(1) as f64;
    println!(
        "shared quota over {n} namespaces: converged in {:.1} s; {steady} writes at steady state; \
         headroom after a refusal p50 {} ms, p99 {} ms ({} trials); parts written per rebalance \
         mean {mean_moved:.2}, max {max_moved}; quota write requests per rebalance mean \
         {mean_requests:.2}, max {max_requests} ({steady_requests} at steady state)",
        converged.as_secs_f64(),
        p50.as_millis(),
        p99.as_millis(),
        waits.len()
    );
    let mut failures = Vec::new();
    if steady != 0 {
        failures.push(format!("{steady} writes at steady state (target 0)"));
    }
    if steady_requests != 0 {
        failures.push(format!(
            "{steady_requests} quota write requests at steady state (target 0)"
        ));
    }
    // A rebalance lowers and raises a few parts: requests that grow with N are a write storm.
    if max_requests > MAX_REQUESTS_PER_REBALANCE {
        failures.push(format!(
            "{max_requests} quota write requests in a rebalance (at most {MAX_REQUESTS_PER_REBALANCE})"
        ));
    }
    if args.max_p99_ms > 0 && p99 > Duration::from_millis(args.max_p99_ms) {
        failures.push(format!(
            "p99 {} ms > {} ms",
            p99.as_millis(),
            args.max_p99_ms
        ));
    }
    let figures = SharedResult {
        namespaces: n,
        convergence_s: converged.as_secs_f64(),
        steady_state_writes: steady,
        trials: waits.len(),
        headroom_p50_ms: p50.as_millis() as u64,
        headroom_p99_ms: p99.as_millis() as u64,
        parts_written_per_rebalance_mean: mean_moved,
        parts_written_per_rebalance_max: max_moved,
        quota_write_requests_per_rebalance_mean: mean_requests,
        quota_write_requests_per_rebalance_max: max_requests,
        quota_write_requests_at_steady_state: steady_requests,
    };
    Ok((figures, failures))
}
