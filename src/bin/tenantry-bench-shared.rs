//! `make bench`'s shared-quota case: one budget over N namespaces, on the local control plane.
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
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod, ResourceQuota, ServiceAccount};
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tenantry::api::{SHARED_QUOTA_LABEL, TenantPolicy};

#[derive(Parser, Debug)]
#[command(about = "Benchmark a shared quota over many namespaces")]
struct Args {
    /// Namespaces in the budget.
    #[arg(long, default_value_t = 1000)]
    namespaces: usize,
    /// Starvation trials (each exhausts one namespace's part and waits for more).
    #[arg(long, default_value_t = 100)]
    trials: usize,
    /// The tenantry binary to measure (a release build).
    #[arg(long, default_value = "target/release/tenantry")]
    tenantry: PathBuf,
    /// Where to write bench-shared-N.json.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// Fail when the p99 wait for headroom exceeds this many milliseconds (0: report only).
    #[arg(long, default_value_t = 1000)]
    max_p99_ms: u64,
}

const RUN_LABEL: &str = "bench.tenantry.io/shared";
const POLICY: &str = "bench-shared";
const BUDGET: &str = "team-budget";
/// The most quota write requests one rebalance may take, whatever N.
const MAX_REQUESTS_PER_REBALANCE: u64 = 10;

fn namespace_name(i: usize) -> String {
    format!("bsq-{i:05}")
}

async fn create_namespaces(client: &Client, n: usize) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let ns: Namespace = serde_json::from_value(json!({
                    "metadata": {"name": namespace_name(i), "labels": {RUN_LABEL: "run"}}
                }))?;
                match api.create(&PostParams::default(), &ns).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
                    Err(e) => Err(anyhow::Error::from(e)),
                }
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
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

fn pods_of(q: &ResourceQuota, field: &str) -> Option<i64> {
    let map = match field {
        "spec" => q.spec.as_ref()?.hard.as_ref()?,
        "status" => q.status.as_ref()?.hard.as_ref()?,
        _ => q.status.as_ref()?.used.as_ref()?,
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

fn start_controller(args: &Args) -> anyhow::Result<Child> {
    let log = std::fs::File::create(args.out.join("bench-shared-controller.log"))?;
    Command::new(&args.tenantry)
        .args(["run", "--metrics-addr", "127.0.0.1:0"])
        .args(["--policy-selector", &format!("{RUN_LABEL}=run")])
        .env("RUST_LOG", "info,kube=warn")
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting tenantry")
}

async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let started = Instant::now();
    while !check().await? {
        if started.elapsed() > limit {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Creates pods in `namespace` until the API server refuses one; the instant of the refusal.
async fn exhaust(client: &Client, namespace: &str, trial: usize) -> anyhow::Result<Instant> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    for k in 0.. {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": format!("p-{trial}-{k}"), "labels": {RUN_LABEL: "run"}},
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
        Ok(pods_of(&q, "status").unwrap_or(0) > pods_of(&q, "used").unwrap_or(0))
    })
    .await?;
    let waited = refused_at.elapsed();
    // Let the rebalance settle (spec copied to status everywhere) before counting its writes.
    let mut after = parts(client).await?;
    let settle = Instant::now();
    while after
        .values()
        .any(|q| pods_of(q, "spec") != pods_of(q, "status"))
        && settle.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
        after = parts(client).await?;
    }
    let moved = after
        .iter()
        .filter(|(ns, q)| before.get(*ns).map(|b| pods_of(b, "spec")) != Some(pods_of(q, "spec")))
        .count();
    let requests = quota_write_requests(client).await? - requests;
    Ok((waited, moved, requests))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The ResourceQuota applies and patches the API server has served (`apiserver_request_total`).
/// Every client's, but here only Tenantry patches quotas: kube-controller-manager writes their
/// status with PUT, and the bench only creates pods and reads.
async fn quota_write_requests(client: &Client) -> anyhow::Result<u64> {
    let request = axum::http::Request::get("/metrics").body(Vec::new())?;
    let body = client.request_text(request).await?;
    let total: f64 = (body.lines())
        .filter(|l| l.starts_with("apiserver_request_total{"))
        .filter(|l| l.contains("resource=\"resourcequotas\""))
        .filter(|l| l.contains("verb=\"APPLY\"") || l.contains("verb=\"PATCH\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    Ok(total as u64)
}

async fn converge(client: &Client, n: usize) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let policy: TenantPolicy = serde_json::from_value(json!({
        "apiVersion": "tenantry.io/v1alpha1", "kind": "TenantPolicy",
        "metadata": {"name": POLICY, "labels": {RUN_LABEL: "run"}},
        "spec": {
            "namespaceSelector": {"matchLabels": {RUN_LABEL: "run"}},
            "sharedQuotas": [{"name": BUDGET, "hard": {"pods": (2 * n).to_string()}}],
        },
    }))?;
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
                    let spec = pods_of(q, "spec");
                    spec.unwrap_or(0) > 0 && spec == pods_of(q, "status")
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.out)?;
    let client = Client::try_default().await?;
    let n = args.namespaces;
    create_namespaces(&client, n).await?;
    let mut controller = start_controller(&args)?;
    let result = run(&args, &client).await;
    let _ = controller.kill();
    let _ = controller.wait();
    let (figures, failures) = result?;
    println!("{}", serde_json::to_string_pretty(&figures)?);
    std::fs::write(
        args.out.join(format!("bench-shared-{n}.json")),
        serde_json::to_string_pretty(&figures)?,
    )?;
    if !failures.is_empty() {
        bail!("targets missed: {}", failures.join("; "));
    }
    Ok(())
}

async fn run(args: &Args, client: &Client) -> anyhow::Result<(serde_json::Value, Vec<String>)> {
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
    let (p50, p99) = (percentile(&waits, 0.5), percentile(&waits, 0.99));
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
    let figures = json!({
        "namespaces": n,
        "convergence_s": converged.as_secs_f64(),
        "steady_state_writes": steady,
        "trials": waits.len(),
        "headroom_p50_ms": p50.as_millis() as u64,
        "headroom_p99_ms": p99.as_millis() as u64,
        "parts_written_per_rebalance_mean": mean_moved,
        "parts_written_per_rebalance_max": max_moved,
        "quota_write_requests_per_rebalance_mean": mean_requests,
        "quota_write_requests_per_rebalance_max": max_requests,
        "quota_write_requests_at_steady_state": steady_requests,
    });
    Ok((figures, failures))
}
