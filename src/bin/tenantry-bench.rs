//! `make bench`: Tenantry against the API server's own floor, on the local control plane.
//!
//! For each N: N namespaces; the floor (the same 4·N objects written by a tight concurrent
//! server-side-apply loop with the controller's client settings); convergence of a policy over
//! them, and propagation of one edit, as ratios to the floor; a restart with everything converged
//! (writes made, time to Ready); peak RSS of the controller; and p50/p99 latency of a namespace
//! label flip and of drift repair. Prints a table and writes JSON. Figures, not assertions.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{LimitRange, Namespace};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::ApiResource;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tenantry::api::TenantPolicy;

#[derive(Parser, Debug)]
#[command(about = "Benchmark Tenantry against the API server's own floor")]
struct Args {
    /// Namespace counts to run, e.g. 1000,10000.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    namespaces: Vec<usize>,
    /// Repetitions of each latency measurement.
    #[arg(long, default_value_t = 100)]
    repetitions: usize,
    /// The tenantry binary to measure (a release build).
    #[arg(long, default_value = "target/release/tenantry")]
    tenantry: PathBuf,
    /// Writes in flight, for the floor and for the controller alike.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Where to write the JSON results (bench-N.json).
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// Leave the namespaces in place (make bench throws the whole control plane away instead).
    #[arg(long)]
    no_cleanup: bool,
    /// Print the table of earlier runs' JSON files instead of running.
    #[arg(long, num_args = 1..)]
    summarize: Vec<PathBuf>,
}

const BENCH_LABEL: &str = "bench.tenantry.io/run";

/// Floor objects per namespace: 1 LimitRange, 2 ResourceQuotas, 1 PDB (as the policy builds).
fn objects(namespace: &str, prefix: &str, pods: &str) -> Vec<(ApiResource, Value)> {
    let lr = ApiResource::erase::<LimitRange>(&());
    let rq = ApiResource::erase::<k8s_openapi::api::core::v1::ResourceQuota>(&());
    let pdb = ApiResource::erase::<k8s_openapi::api::policy::v1::PodDisruptionBudget>(&());
    let meta = |name: &str| json!({"name": format!("{prefix}{name}"), "namespace": namespace});
    vec![
        (
            lr,
            json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": meta("defaults"), "spec": {"limits": [{"type": "Container",
            "default": {"cpu": "300m", "memory": "200Mi"}, "defaultRequest": {"cpu": "200m", "memory": "100Mi"}}]}}),
        ),
        (
            rq.clone(),
            json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": meta("compute"), "spec": {"hard": {"pods": pods, "requests.cpu": "4", "requests.memory": "8Gi"}}}),
        ),
        (
            rq,
            json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": meta("objects"), "spec": {"hard": {"services": "10", "configmaps": "100"}}}),
        ),
        (
            pdb,
            json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": meta("web"), "spec": {"selector": {"matchLabels": {"app": "web"}}, "minAvailable": 1}}),
        ),
    ]
}

fn policy_spec(run: &str, pods: &str) -> Value {
    json!({
        "namespaceSelector": {"matchLabels": {BENCH_LABEL: run}},
        "limitRanges": [{"name": "defaults", "limits": [{"type": "Container",
            "default": {"cpu": "300m", "memory": "200Mi"}, "defaultRequest": {"cpu": "200m", "memory": "100Mi"}}]}],
        "resourceQuotas": [
            {"name": "compute", "hard": {"pods": pods, "requests.cpu": "4", "requests.memory": "8Gi"}},
            {"name": "objects", "hard": {"services": "10", "configmaps": "100"}}
        ],
        "podDisruptionBudgets": [{"name": "web", "selector": {"matchLabels": {"app": "web"}}, "minAvailable": 1}],
    })
}

/// The controller under test, as a process, so its RSS and restarts are real.
struct Operator {
    child: Child,
    port: u16,
}

impl Operator {
    async fn start(binary: &PathBuf, concurrency: usize) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = std::fs::File::create(format!("target/bench/tenantry-{port}.log"))?;
        let child = Command::new(binary)
            .args([
                "run",
                "--metrics-addr",
                &format!("127.0.0.1:{port}"),
                "--write-concurrency",
                &concurrency.to_string(),
            ])
            .args(["--policy-selector", &format!("{BENCH_LABEL}=policy")])
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let operator = Self { child, port };
        let started = Instant::now();
        while operator.get("/readyz").map(|(c, _)| c) != Some(200) {
            if started.elapsed() > Duration::from_secs(120) {
                bail!("tenantry did not become ready");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(operator)
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        write!(stream, "GET {path} HTTP/1.0\r\n\r\n").ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let code = response.split_whitespace().nth(1)?.parse().ok()?;
        Some((
            code,
            response
                .split_once("\r\n\r\n")
                .map(|(_, b)| b.to_owned())
                .unwrap_or_default(),
        ))
    }

    fn metric(&self, name: &str, filter: &str) -> f64 {
        let body = self.get("/metrics").map(|(_, b)| b).unwrap_or_default();
        body.lines()
            .filter(|l| l.split(['{', ' ']).next() == Some(name) && l.contains(filter))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    fn writes(&self) -> f64 {
        ["create", "apply", "patch", "delete", "status"]
            .iter()
            .map(|v| self.metric("tenantry_api_writes_total", &format!("verb=\"{v}\"")))
            .sum()
    }

    /// Peak resident set size (VmHWM), MiB.
    fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map(|kib| kib / 1024.0)
            .unwrap_or(f64::NAN)
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
}

async fn wait_for<F, Fut>(what: &str, limit: Duration, mut check: F) -> anyhow::Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        if started.elapsed() > limit {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(started.elapsed())
}

async fn ready_namespaces(policies: &Api<TenantPolicy>, name: &str, generation: i64) -> i32 {
    match policies.get(name).await {
        Ok(p) => p
            .status
            .filter(|s| s.observed_generation == Some(generation))
            .map(|s| s.ready_namespaces)
            .unwrap_or(0),
        Err(_) => 0,
    }
}

async fn run_one(client: &Client, args: &Args, n: usize) -> anyhow::Result<Value> {
    let run = format!("n{n}-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let names: Vec<String> = (0..n).map(|i| format!("bench-{run}-{i}")).collect();
    eprintln!("[bench N={n}] creating {n} namespaces");
    let started = Instant::now();
    futures::stream::iter(names.iter().cloned())
        .map(|name| {
            let namespaces = namespaces.clone();
            let run = run.clone();
            async move {
                let ns: Namespace = serde_json::from_value(
                    json!({"metadata": {"name": name, "labels": {BENCH_LABEL: run}}}),
                )?;
                namespaces.create(&PostParams::default(), &ns).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(args.concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    eprintln!(
        "[bench N={n}] namespaces created in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    // 1. Floor: 4·N server-side applies, as tight as the client allows.
    eprintln!("[bench N={n}] floor: {} server-side applies", 4 * n);
    let writes: Vec<(ApiResource, Value)> = names
        .iter()
        .flat_map(|ns| objects(ns, "floor-", "20"))
        .collect();
    let started = Instant::now();
    futures::stream::iter(writes)
        .map(|(resource, object)| {
            let api: Api<DynamicObject> = Api::namespaced_with(
                client.clone(),
                object["metadata"]["namespace"].as_str().unwrap(),
                &resource,
            );
            async move {
                let name = object["metadata"]["name"].as_str().unwrap().to_owned();
                api.patch(
                    &name,
                    &PatchParams::apply("bench-floor").force(),
                    &Patch::Apply(object),
                )
                .await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(args.concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    let floor = started.elapsed();
    eprintln!("[bench N={n}] floor {:.2}s", floor.as_secs_f64());

    // 2. Convergence.
    let operator = Operator::start(&args.tenantry, args.concurrency).await?;
    let policies: Api<TenantPolicy> = Api::all(client.clone());
    let name = format!("bench-{run}");
    let policy: TenantPolicy = serde_json::from_value(
        json!({"apiVersion": "tenantry.io/v1alpha1", "kind": "TenantPolicy",
        "metadata": {"name": name, "labels": {BENCH_LABEL: "policy"}}, "spec": policy_spec(&run, "20")}),
    )?;
    let started = Instant::now();
    policies.create(&PostParams::default(), &policy).await?;
    let limit = Duration::from_secs(60 + n as u64 / 5);
    wait_for("convergence", limit, || async {
        ready_namespaces(&policies, &name, 1).await as usize == n
    })
    .await?;
    let convergence = started.elapsed();
    eprintln!(
        "[bench N={n}] convergence {:.2}s",
        convergence.as_secs_f64()
    );

    // 3. Propagation of one quota value.
    let started = Instant::now();
    policies
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": policy_spec(&run, "25")})),
        )
        .await?;
    wait_for("propagation", limit, || async {
        ready_namespaces(&policies, &name, 2).await as usize == n
    })
    .await?;
    let propagation = started.elapsed();
    let quotas: Api<k8s_openapi::api::core::v1::ResourceQuota> = Api::all(client.clone());
    let carrying = quotas
        .list(&kube::api::ListParams::default().labels(&format!("tenantry.io/policy={name}")))
        .await?
        .items
        .iter()
        .filter(|q| {
            q.name_any() == "compute"
                && q.spec
                    .as_ref()
                    .and_then(|s| s.hard.as_ref())
                    .and_then(|h| h.get("pods"))
                    .map(|p| p.0.as_str())
                    == Some("25")
        })
        .count();
    if carrying != n {
        bail!("after propagation {carrying} of {n} namespaces carry the new value");
    }
    eprintln!(
        "[bench N={n}] propagation {:.2}s",
        propagation.as_secs_f64()
    );
    let rss_converged = operator.peak_rss_mib();

    // 4. Restart with everything converged.
    operator.stop();
    let started = Instant::now();
    let operator = Operator::start(&args.tenantry, args.concurrency).await?;
    wait_for("the restarted controller to reconcile", limit, || async {
        operator.metric("tenantry_reconciles_total", "") >= 1.0
    })
    .await?;
    let restart_ready = started.elapsed();
    let restart_writes = operator.writes() as u64;
    eprintln!(
        "[bench N={n}] restart: ready in {:.2}s, {restart_writes} writes",
        restart_ready.as_secs_f64()
    );

    // 6. Latency: one namespace unselected / selected, and one managed object deleted.
    let probe = &names[0];
    let ranges: Api<LimitRange> = Api::namespaced(client.clone(), probe);
    let (mut unselect, mut select, mut drift) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..args.repetitions {
        let started = Instant::now();
        namespaces
            .patch(
                probe,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {BENCH_LABEL: null}}})),
            )
            .await?;
        wait_for("unselection", limit, || async {
            ranges.get_opt("defaults").await.ok().flatten().is_none()
        })
        .await?;
        unselect.push(started.elapsed().as_secs_f64() * 1000.0);
        let started = Instant::now();
        namespaces
            .patch(
                probe,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {BENCH_LABEL: run}}})),
            )
            .await?;
        wait_for("selection", limit, || async {
            ranges.get_opt("defaults").await.ok().flatten().is_some()
        })
        .await?;
        select.push(started.elapsed().as_secs_f64() * 1000.0);
        let uid = ranges.get("defaults").await?.uid();
        let started = Instant::now();
        ranges.delete("defaults", &DeleteParams::default()).await?;
        wait_for("drift repair", limit, || async {
            ranges
                .get_opt("defaults")
                .await
                .ok()
                .flatten()
                .is_some_and(|r| r.uid() != uid)
        })
        .await?;
        drift.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let rss_peak = operator.peak_rss_mib().max(rss_converged);
    operator.stop();

    if !args.no_cleanup {
        eprintln!("[bench N={n}] cleaning up");
        policies.delete(&name, &DeleteParams::default()).await.ok();
        futures::stream::iter(names.iter().cloned())
            .map(|ns| {
                let namespaces = namespaces.clone();
                async move {
                    namespaces
                        .delete(&ns, &DeleteParams::background())
                        .await
                        .map(|_| ())
                }
            })
            .buffer_unordered(args.concurrency)
            .for_each(|_| async {})
            .await;
    }

    let floor_s = floor.as_secs_f64();
    Ok(json!({
        "namespaces": n,
        "objects": 4 * n,
        "floor_seconds": floor_s,
        "convergence_seconds": convergence.as_secs_f64(),
        "convergence_ratio": convergence.as_secs_f64() / floor_s,
        "propagation_seconds": propagation.as_secs_f64(),
        "propagation_ratio": propagation.as_secs_f64() / floor_s,
        "restart_writes": restart_writes,
        "restart_ready_seconds": restart_ready.as_secs_f64(),
        "peak_rss_mib": rss_peak,
        "label_unselect_ms": {"p50": percentile(&mut unselect, 0.5), "p99": percentile(&mut unselect, 0.99)},
        "label_select_ms": {"p50": percentile(&mut select, 0.5), "p99": percentile(&mut select, 0.99)},
        "drift_ms": {"p50": percentile(&mut drift, 0.5), "p99": percentile(&mut drift, 0.99)},
    }))
}

fn print_table(results: &[Value]) {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()?
                .split_whitespace()
                .nth(1)?
                .parse::<f64>()
                .ok()
        })
        .map(|kib| kib / 1048576.0)
        .unwrap_or(0.0);
    println!(
        "\nTenantry benchmark ({cores} cores, {memory:.0} GiB; control plane and controller on the same machine)\n"
    );
    println!(
        "| N | floor (4N SSA) | convergence | ratio | propagation | ratio | restart writes | restart to Ready | peak RSS | unselect p50/p99 | select p50/p99 | drift p50/p99 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in results {
        let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
        let ms = |k: &str| {
            format!(
                "{:.0}/{:.0} ms",
                r[k]["p50"].as_f64().unwrap_or(f64::NAN),
                r[k]["p99"].as_f64().unwrap_or(f64::NAN)
            )
        };
        println!(
            "| {} | {:.2} s | {:.2} s | {:.2}x | {:.2} s | {:.2}x | {} | {:.2} s | {:.1} MiB | {} | {} | {} |",
            r["namespaces"],
            f("floor_seconds"),
            f("convergence_seconds"),
            f("convergence_ratio"),
            f("propagation_seconds"),
            f("propagation_ratio"),
            r["restart_writes"],
            f("restart_ready_seconds"),
            f("peak_rss_mib"),
            ms("label_unselect_ms"),
            ms("label_select_ms"),
            ms("drift_ms"),
        );
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !args.summarize.is_empty() {
        let mut results = Vec::new();
        for path in &args.summarize {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            results.push(serde_json::from_str::<Value>(&text)?);
        }
        results.sort_by_key(|r| r["namespaces"].as_u64());
        print_table(&results);
        return Ok(());
    }
    std::fs::create_dir_all(&args.out)?;
    let client = Client::try_default().await?;
    for &n in &args.namespaces {
        let result = run_one(&client, &args, n).await?;
        let path = args.out.join(format!("bench-{n}.json"));
        std::fs::write(&path, serde_json::to_string_pretty(&result)?)?;
        print_table(std::slice::from_ref(&result));
        println!("\nJSON: {}", path.display());
    }
    Ok(())
}
