//! `make bench`: Tenantry against the API server's own floor, on the local control plane.
//!
//! For each N: N namespaces. The floor is the fastest honest way to write the same 4·N objects
//! with the controller's client settings: a tight loop of POSTs and one of forced server-side
//! applies, both measured, the faster counts; a third, the POSTs beside a controller's watches
//! of the managed kinds, is printed (never the floor) to show what watching costs any
//! controller. Every measured phase starts equal: the floor's objects are deleted after it, and a
//! quiet gate waits before each phase until kube-controller-manager has caught up (quota status,
//! PDB status, service accounts and root CA config maps of every namespace) and the API server's
//! write rate is back to idle. An unmeasured POST floor warms the control plane first, so no
//! measured phase runs on a cold one. The order alternates (floor then convergence, convergence
//! then floor, ...) and each figure is the median of the runs, with min and max. After
//! convergence and propagation the whole end state is checked (all 4·N objects, specs as
//! declared). A restart with everything converged is checked
//! from outside: resourceVersions and managedFields of every managed object, of the policy and of
//! Tenantry's Events, before the restart and after the restarted controller has reacted to a
//! canary namespace (so its first reconciles are done) and 10 s more. Then p50/p99 latency of a
//! namespace label flip (all four objects) and of drift repair, and peak RSS. `--fleet` measures
//! the shape real clusters have: one baseline policy over every namespace plus one team policy per
//! 20 namespaces overriding some kinds.
//!
//! Wrong results (writes on restart, a wrong end state) fail at once; `--summarize` prints the
//! table and fails when a target is missed (ratio to the floor, p99 latency, peak RSS).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, LimitRange, Namespace, ResourceQuota, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::ApiResource;
use kube::runtime::wait::await_condition;
use kube::runtime::{reflector, watcher};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tenantry::api::MANAGED_SELECTOR;
use tenantry::api::{POLICY_LABEL, TenantPolicy};
use tenantry::cache::protobuf_watch;
use tenantry::controller::WatchEncoding;
use tenantry::resources::{ManagedResource, Owner};

#[derive(Parser, Debug)]
#[command(about = "Benchmark Tenantry against the API server's own floor")]
struct Args {
    /// Namespace counts to run, e.g. 1000,3000.
    #[arg(long, value_delimiter = ',', default_value = "1000,3000")]
    namespaces: Vec<usize>,
    /// Measured runs of the floor and of convergence/propagation (the table shows the median).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Repetitions of each latency measurement.
    #[arg(long, default_value_t = 100)]
    repetitions: usize,
    /// The tenantry binary to measure (a release build).
    #[arg(long, default_value = "target/release/tenantry")]
    tenantry: PathBuf,
    /// How the controller's watches of managed objects are encoded (its `--watch-encoding`), and
    /// the watched floor's.
    #[arg(long, value_enum, default_value = "protobuf")]
    watch_encoding: WatchEncoding,
    /// Writes in flight, for the floor and for the controller alike.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Where to write the JSON results (bench-N.json, fleet-N.json).
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// The fleet shape instead: a baseline policy over all N namespaces and N/20 team policies.
    #[arg(long)]
    fleet: bool,
    /// Target: convergence and propagation at most this many times the floor (N >= 1,000).
    #[arg(long, default_value_t = 1.10)]
    target_ratio: f64,
    /// Target: p99 of every latency at most this (N >= 1,000).
    #[arg(long, default_value_t = 1000.0)]
    target_p99_ms: f64,
    /// Target: peak RSS of the controller at N >= 10,000.
    #[arg(long, default_value_t = 64.0)]
    target_rss_mib: f64,
    /// Profiling aid: only one POST floor over the namespaces labelled bench.tenantry.io/run=VALUE
    /// (e.g. under the controller's service account, to compare both in the audit log); its
    /// objects are left in place (labelled bench.tenantry.io/floor=true).
    #[arg(long, hide = true)]
    floor_only: Option<String>,
    /// Profiling aid: delete what --floor-only left.
    #[arg(long, hide = true)]
    floor_cleanup: bool,
    /// Profiling aid for --floor-only: write the namespaces in hashed order (as the controller's
    /// cache yields them) instead of by name.
    #[arg(long, hide = true)]
    floor_hashed: bool,
    /// Print the table of earlier runs' JSON files and check the targets instead of running.
    #[arg(long, num_args = 1..)]
    summarize: Vec<PathBuf>,
}

const BENCH_LABEL: &str = "bench.tenantry.io/run";
const FLOOR_LABEL: &str = "bench.tenantry.io/floor";
/// The owner of what `--floor-only` leaves (removed by `--floor-cleanup`).
const PROFILE_OWNER: &str = "floor-owner-profile";
const CANARY_LABEL: &str = "bench.tenantry.io/canary";
const TEAM_LABEL: &str = "bench.tenantry.io/team";
/// Figures below this N are a smoke run: correctness is checked, targets are not.
const GATE_FROM: u64 = 1000;

fn kinds() -> [ApiResource; 3] {
    [
        ApiResource::erase::<LimitRange>(&()),
        ApiResource::erase::<ResourceQuota>(&()),
        ApiResource::erase::<PodDisruptionBudget>(&()),
    ]
}

fn lr_limits(cpu: &str) -> Value {
    json!([{"type": "Container", "default": {"cpu": cpu, "memory": "200Mi"}, "defaultRequest": {"cpu": "200m", "memory": "100Mi"}}])
}

fn compute_hard(pods: &str) -> Value {
    json!({"pods": pods, "requests.cpu": "4", "requests.memory": "8Gi"})
}

/// The 4 objects per namespace the policy declares (and the floor writes, with its prefix):
/// 1 LimitRange, 2 ResourceQuotas, 1 PDB. (kind, name, spec).
fn declared(pods: &str) -> Vec<(ApiResource, String, Value)> {
    let [lr, rq, pdb] = kinds();
    vec![
        (lr, "defaults".into(), json!({"limits": lr_limits("300m")})),
        (
            rq.clone(),
            "compute".into(),
            json!({"hard": compute_hard(pods)}),
        ),
        (
            rq,
            "objects".into(),
            json!({"hard": {"services": "10", "configmaps": "100"}}),
        ),
        (
            pdb,
            "web".into(),
            json!({"selector": {"matchLabels": {"app": "web"}}, "minAvailable": 1}),
        ),
    ]
}

fn policy_spec(selector: Value, pods: &str) -> Value {
    json!({
        "namespaceSelector": {"matchLabels": selector},
        "limitRanges": [{"name": "defaults", "limits": lr_limits("300m")}],
        "resourceQuotas": [
            {"name": "compute", "hard": compute_hard(pods)},
            {"name": "objects", "hard": {"services": "10", "configmaps": "100"}}
        ],
        "podDisruptionBudgets": [{"name": "web", "selector": {"matchLabels": {"app": "web"}}, "minAvailable": 1}],
    })
}

fn policy_object(name: &str, spec: Value) -> anyhow::Result<TenantPolicy> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "tenantry.io/v1alpha1", "kind": "TenantPolicy",
        "metadata": {"name": name, "labels": {BENCH_LABEL: "policy"}}, "spec": spec,
    }))?)
}

/// `expected` is contained in `live`: every field declared has the declared value (the API
/// server may add defaults).
fn subset(expected: &Value, live: &Value) -> bool {
    match (expected, live) {
        (Value::Object(e), Value::Object(l)) => e
            .iter()
            .all(|(k, v)| l.get(k).is_some_and(|lv| subset(v, lv))),
        (Value::Array(e), Value::Array(l)) => {
            e.len() == l.len() && e.iter().zip(l).all(|(a, b)| subset(a, b))
        }
        _ => expected == live,
    }
}

/// CPU-seconds each process of the control plane (pid files in `$TENANTRY_STATE`, as
/// `hack/cluster.sh` writes them) and `client` have used so far, by the kernel's accounting
/// (/proc), not by anything the processes report: where a phase's work went.
fn cpu_seconds(client: u32) -> BTreeMap<String, f64> {
    static TICKS: std::sync::LazyLock<f64> = std::sync::LazyLock::new(|| {
        let out = Command::new("getconf").arg("CLK_TCK").output();
        out.ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    });
    let state = std::env::var("TENANTRY_STATE").unwrap_or_else(|_| ".tenantry".into());
    let of = |pid: u32| -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command (which may hold spaces): utime and stime are 14 and 15.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 =
            fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        Some(ticks / *TICKS)
    };
    let mut used = BTreeMap::new();
    for process in ["etcd", "kube-apiserver", "kube-controller-manager"] {
        let pid = std::fs::read_to_string(format!("{state}/{process}.pid")).ok();
        if let Some(cpu) = pid.and_then(|p| p.trim().parse().ok()).and_then(of) {
            used.insert(process.to_string(), cpu);
        }
    }
    if let Some(cpu) = of(client) {
        used.insert("client".to_string(), cpu);
    }
    // The whole machine's idle time, and its steal: time the hypervisor ran something else while
    // this machine had work (the 8th figure of /proc/stat's cpu line). A phase with steal was
    // slowed by a neighbour, not by anything measured here.
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    for (key, field) in [("machine idle", 3), ("machine steal", 7)] {
        if let Some(ticks) = cpu.get(field) {
            used.insert(key.to_string(), ticks / *TICKS);
        }
    }
    used
}

/// Seconds this machine takes for a fixed piece of work (hashing the same 32 MiB three times,
/// on one thread, with nothing else of the bench running): its speed just then. Taken right
/// before and right after each measured phase, to tell a phase slowed by the machine (a
/// neighbour on the host, which need not show as steal) from one slowed by what it measures.
fn speed_probe() -> f64 {
    use std::hash::Hasher as _;
    static BUFFER: std::sync::LazyLock<Vec<u8>> =
        std::sync::LazyLock::new(|| (0..32usize << 20).map(|i| (i % 251) as u8).collect());
    let started = Instant::now();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for _ in 0..3 {
        hasher.write(&BUFFER);
    }
    std::hint::black_box(hasher.finish());
    started.elapsed().as_secs_f64()
}

/// What each of [`cpu_seconds`]'s figures grew by from `before` to `after`, to 0.01 s.
fn cpu_used(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
) -> BTreeMap<String, f64> {
    (after.iter())
        .map(|(k, v)| {
            let grew = v - before.get(k).copied().unwrap_or(0.0);
            (k.clone(), (grew * 100.0).round() / 100.0)
        })
        .collect()
}

/// The CPU-seconds of each measured phase (see [`cpu_seconds`]), for the results.
static PHASE_CPU: std::sync::Mutex<Vec<Value>> = std::sync::Mutex::new(Vec::new());

/// Records what the processes used between `before` (a [`cpu_seconds`] sample) and now.
fn record_cpu(phase: &str, took: f64, client: u32, before: &(f64, BTreeMap<String, f64>)) {
    let (probe_before, before) = before;
    let used = cpu_used(before, &cpu_seconds(client));
    let probe = [*probe_before, speed_probe()];
    eprintln!("[bench] {phase}: {took:.2}s, CPU-seconds {used:?}, speed probe {probe:.3?} s");
    PHASE_CPU.lock().expect("not poisoned").push(
        json!({"phase": phase, "seconds": took, "cpu_seconds": used, "speed_probe_seconds": probe}),
    );
}

/// The controller under test, as a process, so its RSS and restarts are real.
struct Operator {
    child: Child,
    port: u16,
}

impl Operator {
    async fn start(args: &Args) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = std::fs::File::create(args.out.join(format!("tenantry-{port}.log")))?;
        let child = Command::new(&args.tenantry)
            .args(["run", "--metrics-addr", &format!("127.0.0.1:{port}")])
            .args(["--write-concurrency", &args.concurrency.to_string()])
            .args(["--watch-encoding", args.watch_encoding.as_str()])
            .args(["--policy-selector", &format!("{BENCH_LABEL}=policy")])
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", args.tenantry.display()))?;
        let operator = Self { child, port };
        let started = Instant::now();
        while operator.get("/readyz").map(|(c, _)| c) != Some(200) {
            if started.elapsed() > Duration::from_secs(300) {
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
        let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned());
        Some((code, body.unwrap_or_default()))
    }

    /// Reconciles finished (the duration histogram is observed at the end of one). Only a hint
    /// for when to look: what was written is read from the API server.
    fn reconciles_finished(&self) -> f64 {
        let body = self.get("/metrics").map(|(_, b)| b).unwrap_or_default();
        body.lines()
            .filter_map(|l| l.strip_prefix("tenantry_reconcile_duration_seconds_count "))
            .filter_map(|v| v.trim().parse::<f64>().ok())
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

    fn stop(self) {
        drop(self);
    }
}

/// A run that fails part-way leaves no controller behind.
impl Drop for Operator {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

async fn wait_for<F, Fut>(what: &str, limit: Duration, mut check: F) -> anyhow::Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        if started.elapsed() > limit {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(started.elapsed())
}

/// Waits (by watching, no polling load) until the policy's status describes `generation` with
/// `ready` namespaces ready.
async fn await_ready(
    policies: &Api<TenantPolicy>,
    name: &str,
    generation: i64,
    ready: usize,
    limit: Duration,
) -> anyhow::Result<()> {
    let cond = move |p: Option<&TenantPolicy>| {
        p.and_then(|p| p.status.as_ref()).is_some_and(|s| {
            s.observed_generation == Some(generation) && s.ready_namespaces as usize == ready
        })
    };
    tokio::time::timeout(limit, await_condition(policies.clone(), name, cond))
        .await
        .with_context(|| {
            format!("policy {name}: generation {generation} not ready in {limit:?}")
        })??;
    Ok(())
}

/// Write requests the API server has served (apiserver_request_total, all write verbs).
async fn api_writes(client: &Client) -> anyhow::Result<f64> {
    let request = axum::http::Request::get("/metrics").body(Vec::new())?;
    let body = client.request_text(request).await?;
    let writes = [
        "POST",
        "PUT",
        "PATCH",
        "APPLY",
        "DELETE",
        "DELETECOLLECTION",
    ];
    Ok(body
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
        .filter(|l| writes.iter().any(|v| l.contains(&format!("verb=\"{v}\""))))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// Why the control plane is not quiet yet, if it is not.
async fn not_quiet(client: &Client, names: &[String]) -> anyhow::Result<Option<String>> {
    let lp = ListParams::default();
    let quotas = Api::<ResourceQuota>::all(client.clone()).list(&lp).await?;
    let behind = quotas
        .iter()
        .filter(|q| {
            q.status.as_ref().and_then(|s| s.hard.as_ref())
                != q.spec.as_ref().and_then(|s| s.hard.as_ref())
        })
        .count();
    if behind > 0 {
        return Ok(Some(format!("{behind} quotas without status.hard")));
    }
    let pdbs = Api::<PodDisruptionBudget>::all(client.clone())
        .list(&lp)
        .await?;
    let behind = pdbs
        .iter()
        .filter(|p| p.status.as_ref().map(|s| s.observed_generation) != Some(p.metadata.generation))
        .count();
    if behind > 0 {
        return Ok(Some(format!("{behind} PDBs not observed")));
    }
    let accounts = Api::<ServiceAccount>::all(client.clone())
        .list_metadata(&ListParams::default().fields("metadata.name=default"))
        .await?;
    let maps = Api::<ConfigMap>::all(client.clone())
        .list_metadata(&ListParams::default().fields("metadata.name=kube-root-ca.crt"))
        .await?;
    let in_namespaces =
        |items: Vec<Option<String>>| -> BTreeSet<String> { items.into_iter().flatten().collect() };
    let accounts = in_namespaces(accounts.items.iter().map(|o| o.namespace()).collect());
    let maps = in_namespaces(maps.items.iter().map(|o| o.namespace()).collect());
    for (what, present) in [
        ("service account default", accounts),
        ("kube-root-ca.crt", maps),
    ] {
        let missing = names.iter().filter(|n| !present.contains(*n)).count();
        if missing > 0 {
            return Ok(Some(format!("{missing} namespaces without {what}")));
        }
    }
    // Idle: the API server's own background writes (leases) only, over a window.
    let before = api_writes(client).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let writes = api_writes(client).await? - before;
    if writes > 6.0 {
        return Ok(Some(format!("{writes} API writes in 3 s")));
    }
    Ok(None)
}

/// The quiet gate before each measured phase; returns how long it took.
async fn quiet(client: &Client, names: &[String], before: &str) -> anyhow::Result<f64> {
    let started = Instant::now();
    let limit = Duration::from_secs(180 + names.len() as u64 / 10);
    loop {
        match not_quiet(client, names).await? {
            None => break,
            Some(why) if started.elapsed() > limit => bail!("not quiet in {limit:?}: {why}"),
            Some(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    let took = started.elapsed().as_secs_f64();
    eprintln!("[bench] quiet before {before} after {took:.1}s");
    Ok(took)
}

async fn create_namespaces(
    client: &Client,
    names: &[String],
    labels: impl Fn(usize) -> Value,
    concurrency: usize,
) -> anyhow::Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    futures::stream::iter(names.iter().enumerate())
        .map(|(i, name)| {
            let namespaces = namespaces.clone();
            let ns = json!({"metadata": {"name": name, "labels": labels(i)}});
            async move {
                let ns: Namespace = serde_json::from_value(ns)?;
                namespaces.create(&PostParams::default(), &ns).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

#[derive(Clone, Copy, Debug)]
enum Verb {
    Post,
    Apply,
    /// POST with [`watch_like_a_controller`]'s watches open.
    PostWatched,
}

/// The floor: 4·N writes of the declared objects (prefixed `floor-`) as tight as the client
/// allows. Returns seconds; the caller deletes the objects (not measured).
/// The floor: the same objects the controller writes (its labels and its controller
/// ownerReference, with blockOwnerDeletion, to an existing TenantPolicy `owner`, so that
/// admission's owner checks and kube-controller-manager's garbage collector do for them what
/// they do for Tenantry's), plus the floor's label, written in a tight loop.
async fn floor(
    client: &Client,
    names: &[String],
    verb: Verb,
    concurrency: usize,
    owner: &Owner,
) -> anyhow::Result<f64> {
    let mut labels = tenantry::resources::managed_labels(&owner.name);
    labels.insert(FLOOR_LABEL.into(), "true".into());
    let owners = [owner.owner_reference()];
    let writes: Vec<(String, ApiResource, Value)> = names
        .iter()
        .flat_map(|ns| {
            let (labels, owners) = (&labels, &owners);
            declared("20")
                .into_iter()
                .map(move |(resource, name, spec)| {
                    let object = json!({
                        "apiVersion": resource.api_version, "kind": resource.kind,
                        "metadata": {"name": format!("floor-{name}"), "namespace": ns,
                            "labels": labels, "ownerReferences": owners},
                        "spec": spec,
                    });
                    (ns.clone(), resource, object)
                })
        })
        .collect();
    let cpu = (speed_probe(), cpu_seconds(std::process::id()));
    let started = Instant::now();
    futures::stream::iter(writes)
        .map(|(ns, resource, object)| {
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &resource);
            async move {
                let name = object["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                match verb {
                    Verb::Post | Verb::PostWatched => {
                        let params = PostParams {
                            field_manager: Some("bench-floor".into()),
                            ..Default::default()
                        };
                        api.create(&params, &serde_json::from_value(object)?)
                            .await?;
                    }
                    Verb::Apply => {
                        let params = PatchParams::apply("bench-floor").force();
                        api.patch(&name, &params, &Patch::Apply(object)).await?;
                    }
                }
                anyhow::Ok(())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    let took = started.elapsed().as_secs_f64();
    eprintln!("[bench N={}] floor {verb:?}: {took:.2}s", names.len());
    record_cpu(&format!("floor {verb:?}"), took, std::process::id(), &cpu);
    Ok(took)
}

async fn delete_floor(client: &Client, concurrency: usize) -> anyhow::Result<()> {
    let lp = ListParams::default().labels(&format!("{FLOOR_LABEL}=true"));
    let mut doomed = Vec::new();
    for resource in kinds() {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        for o in api.list_metadata(&lp).await? {
            doomed.push((
                resource.clone(),
                o.namespace().unwrap_or_default(),
                o.name_any(),
            ));
        }
    }
    futures::stream::iter(doomed)
        .map(|(resource, ns, name)| {
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &resource);
            async move {
                api.delete(&name, &DeleteParams::default()).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// Every namespace holds exactly the declared objects of `policy` (and no other namespace any),
/// with the declared specs.
async fn verify_end_state(
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
    for resource in kinds() {
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

/// uid, resourceVersion and managedFields of every managed object (except those of `skip`), of
/// every bench policy but `skip`, and of every Event Tenantry reported.
async fn snapshot(client: &Client, skip: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut seen = BTreeMap::new();
    let mut record = |key: String, meta: &kube::core::ObjectMeta| {
        let fields = serde_json::to_string(&meta.managed_fields).unwrap_or_default();
        let state = format!("{:?} {:?} {fields}", meta.uid, meta.resource_version);
        seen.insert(key, state);
    };
    let lp = ListParams::default().labels(MANAGED_SELECTOR);
    for resource in kinds() {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        for o in api.list(&lp).await? {
            if o.labels().get(POLICY_LABEL).map(String::as_str) != Some(skip) {
                let key = format!(
                    "{} {}/{}",
                    resource.kind,
                    o.namespace().unwrap_or_default(),
                    o.name_any()
                );
                record(key, &o.metadata);
            }
        }
    }
    let policies: Api<TenantPolicy> = Api::all(client.clone());
    for p in policies.list(&ListParams::default()).await? {
        if p.name_any() != skip {
            record(format!("TenantPolicy {}", p.name_any()), &p.metadata);
        }
    }
    for e in Api::<Event>::all(client.clone())
        .list(&ListParams::default())
        .await?
    {
        let about_skip = e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(skip);
        if e.reporting_controller.as_deref() == Some("tenantry") && !about_skip {
            record(
                format!(
                    "Event {}/{}",
                    e.namespace().unwrap_or_default(),
                    e.name_any()
                ),
                &e.metadata,
            );
        }
    }
    Ok(seen)
}

fn changes(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> Vec<String> {
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    keys.into_iter()
        .filter(|k| before.get(*k) != after.get(*k))
        .cloned()
        .collect()
}

struct Restart {
    writes: usize,
    checked: usize,
    ready_seconds: f64,
    reacted_seconds: f64,
    operator: Operator,
}

/// Restarts the controller with everything converged and counts, from the API server, what the
/// restarted one wrote: nothing may change. A canary policy (selecting nothing yet) exists before
/// the restart; afterwards a canary namespace it selects appears, and its objects prove the
/// restarted controller is reconciling; 10 s more give any late write time to show.
async fn restart(
    client: &Client,
    args: &Args,
    operator: Operator,
    run: &str,
    names: &[String],
) -> anyhow::Result<Restart> {
    let n = names.len();
    let api: Api<TenantPolicy> = Api::all(client.clone());
    let canary = format!("canary-{run}");
    let spec = json!({"namespaceSelector": {"matchLabels": {CANARY_LABEL: run}},
        "limitRanges": [{"name": "canary", "limits": lr_limits("250m")}]});
    api.create(&PostParams::default(), &policy_object(&canary, spec)?)
        .await?;
    await_ready(&api, &canary, 1, 0, Duration::from_secs(60)).await?;
    // kube-controller-manager first finishes its status writes (quotas after propagation).
    quiet(client, names, "the restart").await?;
    let before = snapshot(client, &canary).await?;
    operator.stop();
    let started = Instant::now();
    let operator = Operator::start(args).await?;
    let ready_seconds = started.elapsed().as_secs_f64();
    let limit = Duration::from_secs(120 + n as u64 / 10);
    wait_for(
        "the restarted controller's first reconciles",
        limit,
        || async {
            operator.reconciles_finished() >= 2.0 // the policy and the canary
        },
    )
    .await?;
    // A label no policy selects on, on a namespace the policy selects: a namespace change
    // triggers the policies selecting it, so the policy is reconciled once more.
    let finished = operator.reconciles_finished();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let poke = json!({"metadata": {"labels": {"bench.tenantry.io/poke": format!("{ready_seconds:.6}").replace('.', "-")}}});
    namespaces
        .patch(&names[0], &PatchParams::default(), &Patch::Merge(poke))
        .await?;
    wait_for(
        "a reconcile of the policy after the label change",
        limit,
        || async { operator.reconciles_finished() >= finished + 1.0 },
    )
    .await?;
    let canary_ns = format!("{canary}-ns");
    create_namespaces(
        client,
        std::slice::from_ref(&canary_ns),
        |_| json!({CANARY_LABEL: run}),
        1,
    )
    .await?;
    await_ready(&api, &canary, 1, 1, limit).await?;
    let ranges: Api<LimitRange> = Api::namespaced(client.clone(), &canary_ns);
    wait_for("the canary's LimitRange", limit, || async {
        ranges.get_opt("canary").await.ok().flatten().is_some()
    })
    .await?;
    let reacted_seconds = started.elapsed().as_secs_f64();
    // An observation window, not a stand-in for a condition: writes would show within it.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = snapshot(client, &canary).await?;
    let changed = changes(&before, &after);
    if !changed.is_empty() {
        bail!(
            "the restarted controller wrote {} objects (of {} watched), e.g. {:?}",
            changed.len(),
            before.len(),
            changed.iter().take(5).collect::<Vec<_>>()
        );
    }
    eprintln!(
        "[bench] restart: Ready in {ready_seconds:.2}s, canary reconciled at {reacted_seconds:.2}s, 0 of {} objects written",
        before.len()
    );
    api.delete(&canary, &DeleteParams::default()).await?;
    namespaces
        .delete(&canary_ns, &DeleteParams::background())
        .await?;
    Ok(Restart {
        writes: changed.len(),
        checked: before.len(),
        ready_seconds,
        reacted_seconds,
        operator,
    })
}

/// How many of the policy's objects the namespace holds, over the three kinds.
async fn held(client: &Client, ns: &str, policy: &str) -> usize {
    let lp = ListParams::default().labels(&format!("{POLICY_LABEL}={policy}"));
    let mut count = 0;
    for resource in kinds() {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
        match api.list_metadata(&lp).await {
            Ok(list) => count += list.items.len(),
            Err(_) => return usize::MAX,
        }
    }
    count
}

fn ms(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
}

/// Latency of one namespace unselected (all four objects gone), selected again (all four
/// present), and one managed object deleted (a new one in its place).
async fn latencies(
    client: &Client,
    args: &Args,
    probe: &str,
    run: &str,
    policy: &str,
) -> anyhow::Result<Value> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ranges: Api<LimitRange> = Api::namespaced(client.clone(), probe);
    let limit = Duration::from_secs(60);
    let label = |value: Value| Patch::Merge(json!({"metadata": {"labels": {BENCH_LABEL: value}}}));
    let (mut unselect, mut select, mut drift) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..args.repetitions {
        let started = Instant::now();
        namespaces
            .patch(probe, &PatchParams::default(), &label(Value::Null))
            .await?;
        wait_for("unselection", limit, || async {
            held(client, probe, policy).await == 0
        })
        .await?;
        unselect.push(ms(started));
        let started = Instant::now();
        namespaces
            .patch(probe, &PatchParams::default(), &label(json!(run)))
            .await?;
        wait_for("selection", limit, || async {
            held(client, probe, policy).await == 4
        })
        .await?;
        select.push(ms(started));
        let uid = ranges.get("defaults").await?.uid();
        let started = Instant::now();
        ranges.delete("defaults", &DeleteParams::default()).await?;
        wait_for("drift repair", limit, || async {
            let repaired = ranges.get_opt("defaults").await.ok().flatten();
            repaired.is_some_and(|r| r.uid() != uid)
        })
        .await?;
        drift.push(ms(started));
    }
    Ok(json!({
        "label_unselect_ms": stats(&unselect),
        "label_select_ms": stats(&select),
        "drift_ms": stats(&drift),
    }))
}

fn percentile(samples: &[f64], p: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn stats(samples: &[f64]) -> Value {
    json!({
        "p50": percentile(samples, 0.5), "p99": percentile(samples, 0.99),
        "median": percentile(samples, 0.5),
        "min": percentile(samples, 0.0), "max": percentile(samples, 1.0),
        "samples": samples,
    })
}

/// The floors measured in one run: POST and apply (the faster is the floor), and POST with a
/// controller's watches open (not a floor: what watching its own writes costs any controller).
#[derive(Default)]
struct Floors {
    post: Vec<f64>,
    apply: Vec<f64>,
    watched: Vec<f64>,
}

/// One measured floor phase: POST, apply and watched POST, in an order that rotates with the run.
async fn floor_phase(
    client: &Client,
    names: &[String],
    args: &Args,
    run: usize,
    floors: &mut Floors,
) -> anyhow::Result<()> {
    let mut order = [Verb::Post, Verb::Apply, Verb::PostWatched];
    let turns = run % order.len();
    order.rotate_left(turns);
    let owner = floor_owner(client, &format!("floor-owner-{}-{run}", std::process::id())).await?;
    for verb in order {
        let watching = match verb {
            Verb::PostWatched => Some(watch_like_a_controller(client, args.watch_encoding).await?),
            Verb::Post | Verb::Apply => None,
        };
        quiet(client, names, &format!("floor {verb:?}")).await?;
        let took = floor(client, names, verb, args.concurrency, &owner).await?;
        if let Some(watching) = watching {
            watching.saw(4 * names.len()).await?;
        }
        delete_floor(client, args.concurrency).await?;
        match verb {
            Verb::Post => floors.post.push(took),
            Verb::Apply => floors.apply.push(took),
            Verb::PostWatched => floors.watched.push(took),
        }
    }
    Api::<TenantPolicy>::all(client.clone())
        .delete(&owner.name, &DeleteParams::default())
        .await?;
    Ok(())
}

/// Watches open in this process until dropped, each with the size of its cache.
struct Watching {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    cached: Vec<Box<dyn Fn() -> usize + Send + Sync>>,
}

impl Watching {
    /// Waits until the caches hold `objects` in all: the watches saw every write beside them.
    async fn saw(&self, objects: usize) -> anyhow::Result<()> {
        let held = || self.cached.iter().map(|len| len()).sum::<usize>();
        wait_for(
            "the watches to see every floor object",
            Duration::from_secs(60),
            || std::future::ready(held() >= objects),
        )
        .await?;
        Ok(())
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// What any controller that repairs drift holds while it writes: a watch of each managed kind
/// by Tenantry's label (the watcher Tenantry uses for `encoding`, typed objects into a
/// reflector store). Returns once every watch has listed, so the floor beside them measures the
/// events, not the lists.
async fn watch_like_a_controller(
    client: &Client,
    encoding: WatchEncoding,
) -> anyhow::Result<Watching> {
    let (listed, mut lists) = tokio::sync::mpsc::channel::<()>(3);
    let mut watching = Watching {
        tasks: Vec::new(),
        cached: Vec::new(),
    };
    watch_kind::<LimitRange>(client, encoding, listed.clone(), &mut watching);
    watch_kind::<ResourceQuota>(client, encoding, listed.clone(), &mut watching);
    watch_kind::<PodDisruptionBudget>(client, encoding, listed, &mut watching);
    for _ in 0..watching.tasks.len() {
        tokio::time::timeout(Duration::from_secs(60), lists.recv())
            .await
            .context("a managed kind's watch did not list in 60 s")?
            .context("a managed kind's watch ended")?;
    }
    Ok(watching)
}

fn watch_kind<K: ManagedResource>(
    client: &Client,
    encoding: WatchEncoding,
    listed: tokio::sync::mpsc::Sender<()>,
    watching: &mut Watching,
) {
    let (store, writer) = reflector::store::<K>();
    let config = watcher::Config::default().labels(MANAGED_SELECTOR);
    let events = match encoding {
        WatchEncoding::Protobuf => protobuf_watch::watcher(client.clone(), config).boxed(),
        WatchEncoding::Json => watcher(Api::<K>::all(client.clone()), config).boxed(),
    };
    let events = reflector::reflector(writer, events);
    watching.tasks.push(tokio::spawn(async move {
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            if let Ok(watcher::Event::InitDone) = event {
                let _ = listed.try_send(());
            }
        }
    }));
    watching.cached.push(Box::new(move || store.len()));
}

/// One unmeasured POST floor, so that no measured phase runs on a cold control plane: the
/// first writes after the namespaces' creation are the slowest (caches filling, heaps growing),
/// and the first measured phase would otherwise always be a floor.
async fn warm_up(client: &Client, names: &[String], concurrency: usize) -> anyhow::Result<()> {
    quiet(client, names, "warm-up").await?;
    eprintln!("[bench N={}] warm-up (not measured)", names.len());
    let owner = floor_owner(
        client,
        &format!("floor-owner-{}-warm-up", std::process::id()),
    )
    .await?;
    floor(client, names, Verb::Post, concurrency, &owner).await?;
    delete_floor(client, concurrency).await?;
    Api::<TenantPolicy>::all(client.clone())
        .delete(&owner.name, &DeleteParams::default())
        .await?;
    PHASE_CPU.lock().expect("not poisoned").clear();
    Ok(())
}

/// The owner of the floor's objects: a policy named `name` that no controller handles (it has
/// no bench label).
async fn floor_owner(client: &Client, name: &str) -> anyhow::Result<Owner> {
    let mut policy = policy_object(name, json!({}))?;
    policy.metadata.labels = None;
    let api: Api<TenantPolicy> = Api::all(client.clone());
    let created = api.create(&PostParams::default(), &policy).await?;
    Ok(Owner {
        name: name.to_owned(),
        uid: created.metadata.uid.context("a created policy has a uid")?,
    })
}

struct Convergence {
    convergence: f64,
    propagation: f64,
    operator: Operator,
    policy: String,
}

/// One measured convergence (a new policy over all N namespaces) and propagation (one quota
/// value changed), each from a quiet start, each followed by a full check of the end state.
async fn convergence(
    client: &Client,
    args: &Args,
    names: &[String],
    run: &str,
    index: usize,
) -> anyhow::Result<Convergence> {
    let n = names.len();
    let operator = Operator::start(args).await?;
    let policies: Api<TenantPolicy> = Api::all(client.clone());
    let name = format!("bench-{run}-{index}");
    let limit = Duration::from_secs(120 + n as u64 / 5);
    quiet(client, names, "convergence").await?;
    let cpu = (speed_probe(), cpu_seconds(operator.child.id()));
    let started = Instant::now();
    let spec = policy_spec(json!({BENCH_LABEL: run}), "20");
    policies
        .create(&PostParams::default(), &policy_object(&name, spec)?)
        .await?;
    await_ready(&policies, &name, 1, n, limit).await?;
    let convergence = started.elapsed().as_secs_f64();
    eprintln!("[bench N={n}] convergence {convergence:.2}s");
    record_cpu("convergence", convergence, operator.child.id(), &cpu);
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
async fn teardown(
    client: &Client,
    operator: Operator,
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
        for resource in kinds() {
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

async fn run_one(client: &Client, args: &Args, n: usize) -> anyhow::Result<Value> {
    let run = format!("n{n}-{}", std::process::id());
    let names: Vec<String> = (0..n).map(|i| format!("bench-{run}-{i}")).collect();
    eprintln!("[bench N={n}] creating {n} namespaces");
    create_namespaces(
        client,
        &names,
        |_| json!({BENCH_LABEL: run}),
        args.concurrency,
    )
    .await?;
    warm_up(client, &names, args.concurrency).await?;
    let mut floors = Floors::default();
    let (mut conv, mut prop) = (Vec::new(), Vec::new());
    let mut rss = 0.0f64;
    let limit = Duration::from_secs(120 + n as u64 / 5);
    let mut last = None;
    // Alternating order: floor first in even runs, convergence first in odd ones (F C | C F | F C).
    for index in 0..args.runs {
        if index % 2 == 0 {
            floor_phase(client, &names, args, index, &mut floors).await?;
        }
        let c = convergence(client, args, &names, &run, index).await?;
        conv.push(c.convergence);
        prop.push(c.propagation);
        rss = rss.max(c.operator.peak_rss_mib());
        if index + 1 == args.runs {
            last = Some(c);
            break;
        }
        teardown(client, c.operator, &c.policy, limit).await?;
        if index % 2 == 1 {
            floor_phase(client, &names, args, index, &mut floors).await?;
        }
    }
    let Convergence {
        operator, policy, ..
    } = last.context("at least one run")?;
    let restarted = restart(client, args, operator, &run, &names).await?;
    let latency = latencies(client, args, &names[0], &run, &policy).await?;
    verify_end_state(client, &policy, &names, "25").await?;
    rss = rss.max(restarted.operator.peak_rss_mib());
    restarted.operator.stop();
    let Floors {
        post,
        apply,
        watched,
    } = floors;
    let (post_m, apply_m) = (percentile(&post, 0.5), percentile(&apply, 0.5));
    let floor_m = post_m.min(apply_m);
    let mut result = json!({
        "namespaces": n, "objects": 4 * n, "runs": args.runs,
        "order": "an unmeasured POST floor first (warm-up); then floor (POST, apply and watched POST, in an order rotating with the run) and convergence alternate: F C | C F | F C ...",
        "floor_post_seconds": stats(&post), "floor_apply_seconds": stats(&apply),
        "floor_verb": if post_m <= apply_m { "POST" } else { "APPLY" }, "floor_seconds": floor_m,
        "floor_post_watched_seconds": stats(&watched),
        "convergence_seconds": stats(&conv), "convergence_ratio": percentile(&conv, 0.5) / floor_m,
        "convergence_vs_watched": percentile(&conv, 0.5) / percentile(&watched, 0.5),
        // Not gated: each convergence against the POST floor of its own run (next to it).
        "convergence_paired_ratio": percentile(&conv.iter().zip(&post).map(|(c, f)| c / f).collect::<Vec<_>>(), 0.5),
        "propagation_seconds": stats(&prop), "propagation_ratio": percentile(&prop, 0.5) / floor_m,
        "restart_writes": restarted.writes, "restart_objects_checked": restarted.checked, "restart_ready_seconds": restarted.ready_seconds,
        "restart_reacted_seconds": restarted.reacted_seconds,
        "peak_rss_mib": rss, "end_state_verified": true,
        "phase_cpu": std::mem::take(&mut *PHASE_CPU.lock().expect("not poisoned")),
    });
    merge(&mut result, latency);
    Ok(result)
}

fn merge(into: &mut Value, from: Value) {
    if let (Value::Object(a), Value::Object(b)) = (into, from) {
        a.extend(b);
    }
}

/// The fleet: expected (kind/name -> winning policy) in a namespace of `team`. Team policies win
/// the ResourceQuota kind everywhere and the LimitRange kind in even teams; the PDB is the
/// baseline's.
fn fleet_expected(baseline: &str, team: usize, run: &str) -> BTreeSet<(String, String)> {
    let team_policy = format!("team-{run}-{team}");
    let mut want = BTreeSet::from([
        (
            "ResourceQuota/team-compute".to_string(),
            team_policy.clone(),
        ),
        ("PodDisruptionBudget/web".to_string(), baseline.to_string()),
    ]);
    if team.is_multiple_of(2) {
        want.insert(("LimitRange/team-defaults".into(), team_policy));
    } else {
        want.insert(("LimitRange/defaults".into(), baseline.into()));
    }
    want
}

fn team_spec(run: &str, team: usize) -> Value {
    let mut spec = json!({
        "priority": 10,
        "namespaceSelector": {"matchLabels": {TEAM_LABEL: format!("{run}-{team}")}},
        "resourceQuotas": [{"name": "team-compute", "hard": compute_hard("30")}],
    });
    if team.is_multiple_of(2) {
        spec["limitRanges"] = json!([{"name": "team-defaults", "limits": lr_limits("500m")}]);
    }
    spec
}

/// What the namespaces hold: ns -> {(kind/name, policy)}.
async fn holdings(
    client: &Client,
    lp: &ListParams,
) -> anyhow::Result<BTreeMap<String, BTreeSet<(String, String)>>> {
    let mut found: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    for resource in kinds() {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        for o in api.list_metadata(lp).await? {
            let policy = o.labels().get(POLICY_LABEL).cloned().unwrap_or_default();
            let key = format!("{}/{}", resource.kind, o.name_any());
            found
                .entry(o.namespace().unwrap_or_default())
                .or_default()
                .insert((key, policy));
        }
    }
    Ok(found)
}

async fn fleet_converged(policies: &Api<TenantPolicy>, run: &str, teams: usize, n: usize) -> bool {
    let Ok(list) = policies
        .list(&ListParams::default().labels(&format!("{BENCH_LABEL}=policy")))
        .await
    else {
        return false;
    };
    let mine: Vec<&TenantPolicy> = list
        .items
        .iter()
        .filter(|p| p.name_any().contains(run))
        .collect();
    mine.len() == teams + 1
        && mine.iter().all(|p| {
            let want = if p.name_any().starts_with("baseline") {
                n
            } else {
                20
            };
            p.status.as_ref().is_some_and(|s| {
                s.observed_generation == p.metadata.generation
                    && s.ready_namespaces as usize == want
                    && s.selected_namespaces as usize == want
            })
        })
}

/// The fleet shape: a baseline over all N namespaces, N/20 team policies over 20 each.
async fn run_fleet(client: &Client, args: &Args, n: usize) -> anyhow::Result<Value> {
    let run = format!("f{n}-{}", std::process::id());
    let teams = n / 20;
    let names: Vec<String> = (0..teams * 20)
        .map(|i| format!("fleet-{run}-{i}"))
        .collect();
    eprintln!(
        "[fleet N={n}] creating {} namespaces, {teams} teams",
        names.len()
    );
    create_namespaces(
        client,
        &names,
        |i| json!({BENCH_LABEL: run, TEAM_LABEL: format!("{run}-{}", i / 20)}),
        args.concurrency,
    )
    .await?;
    let operator = Operator::start(args).await?;
    let policies: Api<TenantPolicy> = Api::all(client.clone());
    let baseline = format!("baseline-{run}");
    quiet(client, &names, "fleet convergence").await?;
    let started = Instant::now();
    let mut all = vec![policy_object(
        &baseline,
        policy_spec(json!({BENCH_LABEL: run}), "20"),
    )?];
    for team in 0..teams {
        all.push(policy_object(
            &format!("team-{run}-{team}"),
            team_spec(&run, team),
        )?);
    }
    futures::stream::iter(all)
        .map(|p| {
            let policies = policies.clone();
            async move {
                policies
                    .create(&PostParams::default(), &p)
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(args.concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    let limit = Duration::from_secs(300 + n as u64 / 2);
    let n_sel = names.len();
    let poll = || async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        fleet_converged(&policies, &run, teams, n_sel).await
    };
    wait_for("fleet convergence", limit, poll).await?;
    let convergence = started.elapsed().as_secs_f64();
    eprintln!("[fleet N={n}] convergence {convergence:.2}s");
    let found = holdings(client, &ListParams::default().labels(MANAGED_SELECTOR)).await?;
    for (i, ns) in names.iter().enumerate() {
        if found.get(ns) != Some(&fleet_expected(&baseline, i / 20, &run)) {
            bail!("fleet end state: {ns} holds {:?}", found.get(ns));
        }
    }
    let (flips, traces) = fleet_flips(client, args, &names[0], &run, &baseline).await?;
    let rss = operator.peak_rss_mib();
    operator.stop();
    Ok(json!({
        "fleet": true, "namespaces": names.len(), "policies": teams + 1,
        "convergence_seconds": convergence, "label_flip_ms": stats(&flips),
        "label_flip_traces": traces, "peak_rss_mib": rss, "end_state_verified": true,
    }))
}

/// A namespace moved between team 0 and team 1 and back: until it holds exactly what the new
/// team's policies win there. Each flip's trace says when it started (UTC, to find it in the
/// controller's log), when each object it waited for came or went, and what every process and
/// the machine's steal used meanwhile: where a slow one's time went.
async fn fleet_flips(
    client: &Client,
    args: &Args,
    probe: &str,
    run: &str,
    baseline: &str,
) -> anyhow::Result<(Vec<f64>, Vec<Value>)> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let (mut flips, mut traces) = (Vec::new(), Vec::new());
    for i in 0..args.repetitions {
        let team = (i + 1) % 2;
        // Changes are traced against what the namespace held before the flip.
        let mut before = held_in(client, probe).await;
        let utc = k8s_openapi::jiff::Timestamp::now().to_string();
        let cpu_before = cpu_seconds(std::process::id());
        let started = Instant::now();
        let patch = json!({"metadata": {"labels": {TEAM_LABEL: format!("{run}-{team}")}}});
        namespaces
            .patch(probe, &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        let want = fleet_expected(baseline, team, run);
        let mut changes = Vec::new();
        loop {
            if let Some(have) = held_in(client, probe).await {
                let at = ms(started).round();
                for (object, policy) in before.as_ref().unwrap_or(&have).symmetric_difference(&have)
                {
                    let came = have.contains(&(object.clone(), policy.clone()));
                    changes
                        .push(json!({"ms": at, "came": came, "object": object, "policy": policy}));
                }
                if have == want {
                    break;
                }
                before = Some(have);
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("timed out after 60 s waiting for the flipped namespace: {changes:?}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let took = ms(started);
        let used = cpu_used(&cpu_before, &cpu_seconds(std::process::id()));
        traces
            .push(json!({"started_utc": utc, "ms": took, "changes": changes, "cpu_seconds": used}));
        flips.push(took);
    }
    Ok((flips, traces))
}

/// The managed objects in `namespace`, as (kind/name, owning policy); `None` when a list failed.
async fn held_in(client: &Client, namespace: &str) -> Option<BTreeSet<(String, String)>> {
    let lp = ListParams::default().labels(MANAGED_SELECTOR);
    let mut have = BTreeSet::new();
    for r in kinds() {
        let api = Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &r);
        for o in api.list_metadata(&lp).await.ok()? {
            let policy = o.labels().get(POLICY_LABEL).cloned().unwrap_or_default();
            have.insert((format!("{}/{}", r.kind, o.name_any()), policy));
        }
    }
    Some(have)
}

fn f(r: &Value, path: &[&str]) -> f64 {
    path.iter()
        .fold(r, |v, k| &v[*k])
        .as_f64()
        .unwrap_or(f64::NAN)
}

/// "median (min-max)" of a figure measured in several runs.
fn spread(r: &Value, key: &str) -> String {
    format!(
        "{:.2} s ({:.2}-{:.2})",
        f(r, &[key, "median"]),
        f(r, &[key, "min"]),
        f(r, &[key, "max"])
    )
}

fn p50_p99(r: &Value, key: &str) -> String {
    format!("{:.0}/{:.0} ms", f(r, &[key, "p50"]), f(r, &[key, "p99"]))
}

fn print_table(results: &[Value]) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
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
        .map_or(0.0, |kib| kib / 1048576.0);
    println!(
        "\nTenantry benchmark ({cores} cores, {memory:.0} GiB; control plane and controller on the same machine; median (min-max) of the runs)\n"
    );
    let single: Vec<&Value> = results
        .iter()
        .filter(|r| r["fleet"].as_bool() != Some(true))
        .collect();
    if !single.is_empty() {
        println!(
            "| N | runs | floor: POST | floor: apply | POST, watched | convergence | vs floor | vs watched | propagation | vs floor | restart writes | restart to Ready | peak RSS | unselect p50/p99 | select p50/p99 | drift p50/p99 |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        for r in results
            .iter()
            .filter(|r| r["fleet"].as_bool() != Some(true))
        {
            println!(
                "| {} | {} | {} | {} | {} | {} | {:.2}x | {:.2}x | {} | {:.2}x | {} | {:.2} s | {:.1} MiB | {} | {} | {} |",
                r["namespaces"],
                r["runs"],
                spread(r, "floor_post_seconds"),
                spread(r, "floor_apply_seconds"),
                spread(r, "floor_post_watched_seconds"),
                spread(r, "convergence_seconds"),
                f(r, &["convergence_ratio"]),
                f(r, &["convergence_vs_watched"]),
                spread(r, "propagation_seconds"),
                f(r, &["propagation_ratio"]),
                r["restart_writes"],
                f(r, &["restart_ready_seconds"]),
                f(r, &["peak_rss_mib"]),
                p50_p99(r, "label_unselect_ms"),
                p50_p99(r, "label_select_ms"),
                p50_p99(r, "drift_ms"),
            );
        }
    }
    let fleets: Vec<&Value> = results
        .iter()
        .filter(|r| r["fleet"].as_bool() == Some(true))
        .collect();
    if !fleets.is_empty() {
        println!(
            "\n| fleet: namespaces | policies | convergence | label flip p50/p99 | peak RSS |"
        );
        println!("|---|---|---|---|---|");
        for r in fleets {
            println!(
                "| {} | {} | {:.2} s | {} | {:.1} MiB |",
                r["namespaces"],
                r["policies"],
                f(r, &["convergence_seconds"]),
                p50_p99(r, "label_flip_ms"),
                f(r, &["peak_rss_mib"]),
            );
        }
    }
}

/// The targets a result misses. Below N = 1,000 (the CI smoke run) only correctness counts.
fn missed(r: &Value, args: &Args) -> Vec<String> {
    let n = r["namespaces"].as_u64().unwrap_or(0);
    let mut missed = Vec::new();
    if r["end_state_verified"].as_bool() != Some(true) {
        missed.push(format!("N={n}: end state not verified"));
    }
    if r["fleet"].as_bool() != Some(true) && r["restart_writes"].as_u64() != Some(0) {
        missed.push(format!("N={n}: restart writes {}", r["restart_writes"]));
    }
    if n < GATE_FROM {
        return missed;
    }
    for key in ["convergence_ratio", "propagation_ratio"] {
        let ratio = f(r, &[key]);
        if ratio.is_nan() && r["fleet"].as_bool() == Some(true) {
            continue;
        }
        if ratio.is_nan() || ratio > args.target_ratio {
            missed.push(format!(
                "N={n}: {key} {ratio:.2}x > {:.2}x",
                args.target_ratio
            ));
        }
    }
    for key in [
        "label_unselect_ms",
        "label_select_ms",
        "drift_ms",
        "label_flip_ms",
    ] {
        let p99 = f(r, &[key, "p99"]);
        if p99 > args.target_p99_ms {
            missed.push(format!(
                "N={n}: {key} p99 {p99:.0} ms > {:.0} ms",
                args.target_p99_ms
            ));
        }
    }
    let rss = f(r, &["peak_rss_mib"]);
    if n >= 10_000 && (rss.is_nan() || rss > args.target_rss_mib) {
        missed.push(format!(
            "N={n}: peak RSS {rss:.1} MiB > {:.0} MiB",
            args.target_rss_mib
        ));
    }
    missed
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
        results.sort_by_key(|r| (r["fleet"].as_bool(), r["namespaces"].as_u64()));
        print_table(&results);
        let missed: Vec<String> = results.iter().flat_map(|r| missed(r, &args)).collect();
        if !missed.is_empty() {
            println!("\nTargets missed:");
            for m in &missed {
                println!("- {m}");
            }
            std::process::exit(1);
        }
        println!(
            "\nAll targets met (ratio <= {:.2}x from N = {GATE_FROM}).",
            args.target_ratio
        );
        return Ok(());
    }
    std::fs::create_dir_all(&args.out)?;
    let client = Client::try_default().await?;
    if args.floor_cleanup {
        delete_floor(&client, args.concurrency).await?;
        let policies: Api<TenantPolicy> = Api::all(client.clone());
        policies
            .delete(PROFILE_OWNER, &DeleteParams::default())
            .await?;
        return Ok(());
    }
    if let Some(run) = &args.floor_only {
        let lp = ListParams::default().labels(&format!("{BENCH_LABEL}={run}"));
        let list = Api::<Namespace>::all(client.clone())
            .list_metadata(&lp)
            .await?;
        let mut names: Vec<String> = list.items.iter().map(|n| n.name_any()).collect();
        if args.floor_hashed {
            names.sort_by_key(|n| tenantry::fingerprint::fingerprint(n));
        }
        let owner = floor_owner(&client, PROFILE_OWNER).await?;
        floor(&client, &names, Verb::Post, args.concurrency, &owner).await?;
        return Ok(());
    }
    for &n in &args.namespaces {
        let mut result = if args.fleet {
            run_fleet(&client, &args, n).await?
        } else {
            run_one(&client, &args, n).await?
        };
        merge(&mut result, provenance());
        let kind = if args.fleet { "fleet" } else { "bench" };
        let path = args.out.join(format!("{kind}-{n}.json"));
        std::fs::write(&path, serde_json::to_string_pretty(&result)?)?;
        print_table(std::slice::from_ref(&result));
        println!("\nJSON: {}", path.display());
    }
    Ok(())
}

/// Machine, commit and command of a run, for the committed results.
fn provenance() -> Value {
    let cmd = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    json!({
        "machine": {
            "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
            "cpu": cpu, "kernel": cmd("uname", &["-r"]),
            "memory_kib": std::fs::read_to_string("/proc/meminfo").ok()
                .and_then(|m| m.lines().next()?.split_whitespace().nth(1)?.parse::<u64>().ok()),
        },
        "commit": cmd("git", &["rev-parse", "HEAD"]),
        "dirty": !cmd("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty(),
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "finished_utc": cmd("date", &["-u", "+%FT%TZ"]),
    })
}
