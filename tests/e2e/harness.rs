//! Shared end-to-end helpers: the running control plane's client, `kubectl` of the server's own
//! version, uniquely named namespaces removed after each test, and polling with a deadline.

use std::future::Future;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// How long a condition may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(60);

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The admin kubeconfig of the local control plane (`make cluster-up` writes it).
pub fn kubeconfig_path() -> PathBuf {
    let path = std::env::var_os("TENANTRY_KUBECONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".tenantry/kubeconfig"));
    assert!(
        path.exists(),
        "no control plane: {} is missing; run `make cluster-up` (make test does it for you)",
        path.display()
    );
    path
}

pub async fn client() -> Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig_path()).expect("kubeconfig readable");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig valid");
    Client::try_from(config).expect("client")
}

/// The result of one kubectl invocation.
pub struct Output {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs kubectl against the local control plane: the server's own version when the cluster
/// script has linked it into `.tenantry/bin`, else the one on PATH.
pub fn kubectl(args: &[&str]) -> Output {
    kubectl_with_input(args, None)
}

/// kubectl reading `input` on stdin (for `apply -f -`).
pub fn kubectl_with_input(args: &[&str], input: Option<&str>) -> Output {
    let state = std::env::var_os("TENANTRY_STATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".tenantry"));
    let matched = state.join("bin/kubectl");
    let program = if matched.exists() {
        matched
    } else {
        PathBuf::from("kubectl")
    };
    let mut child = Command::new(&program)
        .args(args)
        .env("KUBECONFIG", kubeconfig_path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()));
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("piped stdin");
        if let Some(input) = input {
            stdin
                .write_all(input.as_bytes())
                .expect("write kubectl stdin");
        }
    }
    let out = child.wait_with_output().expect("kubectl finished");
    Output {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// kubectl that must succeed; returns its stdout.
pub fn kubectl_ok(args: &[&str]) -> String {
    let out = kubectl(args);
    assert!(
        out.success,
        "kubectl {} failed: {}",
        args.join(" "),
        out.stderr
    );
    out.stdout
}

/// Polls `check` until it returns `Some`, failing the test with `what` after [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_within(DEADLINE, what, check).await
}

/// [`eventually`] with another deadline, for what waits on someone else's backoff.
pub async fn eventually_within<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A namespace with a unique name, deleted (without waiting) when the guard drops, so tests can
/// run in parallel and leave nothing behind even when they fail.
pub struct TestNamespace {
    pub name: String,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique, DNS-1123 name with the given prefix.
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{n}-{:x}", std::process::id(), nanos & 0xfffff)
}

impl TestNamespace {
    pub async fn create(client: &Client, prefix: &str) -> Self {
        Self::create_labelled(client, prefix, &[]).await
    }

    pub async fn create_labelled(client: &Client, prefix: &str, labels: &[(&str, &str)]) -> Self {
        let name = unique_name(prefix);
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": name,
                "labels": labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<std::collections::BTreeMap<_, _>>(),
            }
        }))
        .unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        Self { name }
    }

    /// Pods are admitted only once the service-account controller has made `default` here.
    pub async fn wait_for_default_service_account(&self, client: &Client) {
        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &self.name);
        eventually("the default service account", || {
            let accounts = accounts.clone();
            async move { accounts.get_opt("default").await.ok().flatten() }
        })
        .await;
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let _ = kubectl(&[
            "delete",
            "namespace",
            &self.name,
            "--wait=false",
            "--ignore-not-found",
        ]);
    }
}

/// Label that scopes a test's policies to the controller the test started.
pub const SHARD_LABEL: &str = "e2e.tenantry.io/shard";

/// A `tenantry run` process of this build, handling only the policies labelled with its shard.
/// Killed when dropped.
pub struct Operator {
    child: Option<std::process::Child>,
    pub shard: String,
    port: u16,
    pub log: PathBuf,
}

impl Operator {
    pub async fn start(shard: &str) -> Self {
        Self::start_with(shard, &[], None).await
    }

    /// An operator with extra `tenantry run` arguments and, optionally, its own kubeconfig (a
    /// service account's identity).
    pub async fn start_with(
        shard: &str,
        args: &[&str],
        kubeconfig: Option<&std::path::Path>,
    ) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = repo_root().join("target/e2e-logs");
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join(format!("{shard}-{port}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_tenantry"))
            .args(["run", "--metrics-addr", &format!("127.0.0.1:{port}")])
            .args(["--policy-selector", &format!("{SHARD_LABEL}={shard}")])
            .args(args)
            .env(
                "KUBECONFIG",
                kubeconfig
                    .map(|p| p.to_path_buf())
                    .unwrap_or_else(kubeconfig_path),
            )
            .env(
                "RUST_LOG",
                std::env::var("E2E_OPERATOR_LOG")
                    .unwrap_or_else(|_| "info,tenantry=debug,kube=warn".into()),
            )
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("start tenantry run");
        let operator = Self {
            child: Some(child),
            shard: shard.into(),
            port,
            log,
        };
        let probe = operator.port;
        eventually("the operator's /readyz", || async move {
            (http_get(probe, "/readyz").map(|(code, _)| code) == Some(200)).then_some(())
        })
        .await;
        operator
    }

    /// The sum of a metric's series whose label text contains every `filter` (e.g. `verb="create"`).
    pub fn metric(&self, name: &str, filters: &[&str]) -> f64 {
        let (_, body) = http_get(self.port, "/metrics").expect("metrics answer");
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.split(['{', ' ']).next() == Some(name))
            .filter(|l| filters.iter().all(|f| l.contains(f)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Writes of managed objects and status (Events and the finalizer are not counted).
    pub fn object_and_status_writes(&self) -> f64 {
        ["create", "apply", "patch", "delete", "status"]
            .iter()
            .map(|verb| self.metric("tenantry_api_writes_total", &[&format!("verb=\"{verb}\"")]))
            .sum()
    }

    /// Reconciles started (the fault suite counts retries with it).
    #[allow(dead_code)]
    pub fn reconciles(&self) -> f64 {
        self.metric("tenantry_reconciles_total", &[])
    }

    /// Reconciles finished: the duration histogram is observed at the end of a reconcile, while
    /// `tenantry_reconciles_total` counts at its start. Only a hint for when to look; what was
    /// written is read from the API server ([`api_state`]).
    pub fn reconciles_finished(&self) -> f64 {
        self.metric("tenantry_reconcile_duration_seconds_count", &[])
    }

    /// The process id (for SIGSTOP/SIGCONT in the fault suite, which shares this harness).
    #[allow(dead_code)]
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// `kill -9`: no graceful shutdown, no lease release.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the process with SIGTERM (graceful shutdown) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if child.try_wait().unwrap().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A plain HTTP/1.0 GET on loopback: (status code, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let code = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((code, body))
}

/// A TenantPolicy created for a test, labelled with the test's shard; deleted (waiting for its
/// finalizer, so drop it before the Operator) when dropped.
pub struct TestPolicy {
    pub name: String,
}

impl TestPolicy {
    pub async fn create(
        client: &Client,
        operator: &Operator,
        prefix: &str,
        spec: serde_json::Value,
    ) -> Self {
        let name = unique_name(prefix);
        Self::create_named(client, operator, &name, spec).await
    }

    pub async fn create_named(
        client: &Client,
        operator: &Operator,
        name: &str,
        spec: serde_json::Value,
    ) -> Self {
        let policy: tenantry::api::TenantPolicy = serde_json::from_value(serde_json::json!({
            "apiVersion": "tenantry.io/v1alpha1", "kind": "TenantPolicy",
            "metadata": {"name": name, "labels": {SHARD_LABEL: operator.shard}},
            "spec": spec,
        }))
        .expect("a valid TenantPolicy");
        Api::<tenantry::api::TenantPolicy>::all(client.clone())
            .create(&PostParams::default(), &policy)
            .await
            .expect("create TenantPolicy");
        Self { name: name.into() }
    }

    pub async fn get(&self, client: &Client) -> tenantry::api::TenantPolicy {
        Api::<tenantry::api::TenantPolicy>::all(client.clone())
            .get(&self.name)
            .await
            .expect("get policy")
    }

    /// Waits until status describes the current generation with Ready=True, and returns it.
    pub async fn wait_ready(&self, client: &Client) -> tenantry::api::TenantPolicyStatus {
        self.wait_condition(client, "Ready", "True").await
    }

    /// Waits until status describes the current generation and the condition has that status.
    pub async fn wait_condition(
        &self,
        client: &Client,
        type_: &str,
        status: &str,
    ) -> tenantry::api::TenantPolicyStatus {
        let api = Api::<tenantry::api::TenantPolicy>::all(client.clone());
        let what = format!("policy {} to have {type_}={status}", self.name);
        eventually(&what, || {
            let api = api.clone();
            async move {
                let p = api.get(&self.name).await.ok()?;
                let s = p.status?;
                let current = s.observed_generation == p.metadata.generation;
                let holds = s
                    .conditions
                    .iter()
                    .any(|c| c.type_ == type_ && c.status == status);
                (current && holds).then_some(s)
            }
        })
        .await
    }

    /// Replaces the spec (read, modify, replace: a new generation). The controller writes the
    /// status and finalizer meanwhile, so a conflict is read again and retried, as kubectl does.
    pub async fn set_spec(&self, client: &Client, spec: serde_json::Value) {
        let api = Api::<tenantry::api::TenantPolicy>::all(client.clone());
        let spec: tenantry::api::TenantPolicySpec =
            serde_json::from_value(spec).expect("a valid spec");
        for _ in 0..20 {
            let mut policy = api.get(&self.name).await.expect("get policy");
            policy.spec = spec.clone();
            match api
                .replace(&self.name, &PostParams::default(), &policy)
                .await
            {
                Ok(_) => return,
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => panic!("replace policy: {e}"),
            }
        }
        panic!("replace policy {}: conflicts 20 times in a row", self.name);
    }
}

impl Drop for TestPolicy {
    fn drop(&mut self) {
        let delete = || {
            kubectl(&[
                "delete",
                "tenantpolicy",
                &self.name,
                "--ignore-not-found",
                "--timeout=30s",
            ])
            .success
        };
        // The operator handling the policy removes its finalizer. When no operator is left (a
        // test that failed or stopped it first), remove it here, so that no policy outlives its
        // test; the garbage collector still deletes what the policy owned.
        if !delete() {
            let _ = kubectl(&[
                "patch",
                "tenantpolicy",
                &self.name,
                "--type=merge",
                "-p",
                r#"{"metadata":{"finalizers":null}}"#,
            ]);
            let _ = delete();
        }
    }
}

/// The policy's Ready condition (status always carries one).
pub fn ready_condition(
    status: &tenantry::api::TenantPolicyStatus,
) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("a Ready condition")
}

/// Waits until the Events about a policy with this reason satisfy `enough`; returns their notes.
pub async fn wait_event_notes(
    client: &Client,
    policy: &str,
    reason: &str,
    enough: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let enough = &enough;
    eventually(&format!("{reason} Events about {policy}"), || async move {
        let notes = event_notes(client, policy, reason).await;
        enough(&notes).then_some(notes)
    })
    .await
}

/// Notes of the Events recorded about a policy with this reason.
pub async fn event_notes(client: &Client, policy: &str, reason: &str) -> Vec<String> {
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), "default");
    events
        .list(&Default::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(policy)
                && e.reason.as_deref() == Some(reason)
        })
        .filter_map(|e| e.note)
        .collect()
}

/// A namespaced kind the tests read and write.
pub trait Namespaced:
    kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
{
}

impl<K> Namespaced for K where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
{
}

/// Waits until the object is gone.
pub async fn wait_gone<K: Namespaced>(client: &Client, ns: &str, name: &str) {
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    eventually(&format!("{ns}/{name} to be gone"), || {
        let api = api.clone();
        async move { api.get_opt(name).await.unwrap().is_none().then_some(()) }
    })
    .await;
}

/// Waits until the object exists, and returns it.
pub async fn wait_present<K: Namespaced>(client: &Client, ns: &str, name: &str) -> K {
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    eventually(&format!("{ns}/{name} to exist"), || {
        let api = api.clone();
        async move { api.get_opt(name).await.unwrap() }
    })
    .await
}

/// A StorageClass a test creates itself (not Tenantry's), deleted when dropped. Classes are
/// cluster-scoped, so each has a unique name and tests look only at their own.
pub struct TestClass {
    pub name: String,
}

impl TestClass {
    pub fn create(prefix: &str, provisioner: &str) -> Self {
        let name = unique_name(prefix);
        let class = serde_json::json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": name}, "provisioner": provisioner,
        });
        let out = kubectl_with_input(&["create", "-f", "-"], Some(&class.to_string()));
        assert!(out.success, "creating StorageClass {name}: {}", out.stderr);
        Self { name }
    }

    /// Adopts a class made otherwise (one Tenantry released), so it is deleted at the end.
    pub fn named(name: &str) -> Self {
        Self { name: name.into() }
    }
}

impl Drop for TestClass {
    fn drop(&mut self) {
        let _ = kubectl(&[
            "delete",
            "storageclass",
            &self.name,
            "--ignore-not-found",
            "--wait=false",
        ]);
    }
}

/// What the API server shows of Tenantry's writes: uid, resourceVersion and managedFields of every
/// LimitRange, ResourceQuota and PDB in `namespaces` (whoever owns them), of the `policies`, and
/// of the Events about them. Equal before and after means nothing was written, by anyone. Taken
/// once kube-controller-manager has caught up (every quota's status.hard is its spec, every PDB
/// observed), so that its status writes are not mistaken for Tenantry's.
pub async fn api_state(
    client: &Client,
    namespaces: &[&str],
    policies: &[&str],
) -> std::collections::BTreeMap<String, String> {
    use k8s_openapi::api::core::v1::{LimitRange, ResourceQuota};
    use k8s_openapi::api::policy::v1::PodDisruptionBudget;
    use kube::ResourceExt;
    let lp = kube::api::ListParams::default();
    for ns in namespaces {
        let quotas = Api::<ResourceQuota>::namespaced(client.clone(), ns);
        let pdbs = Api::<PodDisruptionBudget>::namespaced(client.clone(), ns);
        eventually(
            "kube-controller-manager's status of quotas and PDBs",
            || {
                let (quotas, pdbs, lp) = (quotas.clone(), pdbs.clone(), lp.clone());
                async move {
                    let quotas_done = quotas.list(&lp).await.ok()?.items.iter().all(|q| {
                        q.status.as_ref().and_then(|s| s.hard.as_ref())
                            == q.spec.as_ref().and_then(|s| s.hard.as_ref())
                    });
                    let pdbs_done = pdbs.list(&lp).await.ok()?.items.iter().all(|p| {
                        p.status.as_ref().map(|s| s.observed_generation)
                            == Some(p.metadata.generation)
                    });
                    (quotas_done && pdbs_done).then_some(())
                }
            },
        )
        .await;
    }
    let mut state = std::collections::BTreeMap::new();
    let mut record = |key: String, meta: &kube::core::ObjectMeta| {
        let fields = serde_json::to_string(&meta.managed_fields).unwrap();
        state.insert(
            key,
            format!("{:?} {:?} {fields}", meta.uid, meta.resource_version),
        );
    };
    let lp = kube::api::ListParams::default();
    for ns in namespaces {
        let list = Api::<LimitRange>::namespaced(client.clone(), ns)
            .list(&lp)
            .await
            .unwrap();
        for o in list {
            record(format!("LimitRange {ns}/{}", o.name_any()), &o.metadata);
        }
        let list = Api::<ResourceQuota>::namespaced(client.clone(), ns)
            .list(&lp)
            .await
            .unwrap();
        for o in list {
            record(format!("ResourceQuota {ns}/{}", o.name_any()), &o.metadata);
        }
        let list = Api::<PodDisruptionBudget>::namespaced(client.clone(), ns)
            .list(&lp)
            .await
            .unwrap();
        for o in list {
            record(
                format!("PodDisruptionBudget {ns}/{}", o.name_any()),
                &o.metadata,
            );
        }
    }
    let api = Api::<tenantry::api::TenantPolicy>::all(client.clone());
    for name in policies {
        let p = api.get(name).await.expect("get policy");
        record(format!("TenantPolicy {name}"), &p.metadata);
    }
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::all(client.clone());
    for e in events.list(&lp).await.expect("list events") {
        let about = e
            .regarding
            .as_ref()
            .and_then(|r| r.name.as_deref())
            .unwrap_or_default();
        if policies.contains(&about) {
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
    state
}

/// A policy in an operator's shard that selects only namespaces with its own label: none until
/// [`Canary::settle`] makes one. Its objects appearing there is something the operator must do,
/// seen from outside, so tests can tell the operator has been reconciling without trusting what
/// it reports about itself.
pub struct Canary {
    /// Held for its Drop (the policy is deleted with the canary).
    _policy: TestPolicy,
    label: String,
}

const CANARY_LABEL: &str = "e2e.tenantry.io/canary";

impl Canary {
    pub async fn create(client: &Client, operator: &Operator) -> Self {
        let label = unique_name("canary");
        let spec = serde_json::json!({
            "namespaceSelector": {"matchLabels": {CANARY_LABEL: label}},
            "limitRanges": [{"name": "canary", "limits": [{"type": "Container", "default": {"cpu": "100m"}}]}],
        });
        let policy = TestPolicy::create(client, operator, "canary", spec).await;
        policy.wait_ready(client).await;
        Self {
            _policy: policy,
            label,
        }
    }

    /// Waits until `operator` has finished a reconcile of each of its `policies` (this canary
    /// among them) that began after now, then 10 s more. How: first until it has finished
    /// `policies` reconciles at all (a restarted operator's first round); then a label no policy
    /// selects on is set on each of `namespaces` (a namespace change triggers every policy that
    /// selects it: give the namespaces the other policies select), and `policies - 1` more
    /// finished reconciles; then a new namespace the canary selects and the canary's LimitRange
    /// in it (from the API server: the operator is still at work); then an observation window
    /// in which any late write would show. Returns the canary namespace.
    pub async fn settle(
        &self,
        client: &Client,
        operator: &Operator,
        policies: usize,
        namespaces: &[&str],
    ) -> TestNamespace {
        let policies = policies as f64;
        eventually("the operator's first reconciles", || async {
            (operator.reconciles_finished() >= policies).then_some(())
        })
        .await;
        let finished = operator.reconciles_finished();
        let poke =
            serde_json::json!({"metadata": {"labels": {"e2e.tenantry.io/poke": unique_name("p")}}});
        let all: Api<Namespace> = Api::all(client.clone());
        for ns in namespaces {
            let patch = kube::api::Patch::Merge(&poke);
            all.patch(ns, &kube::api::PatchParams::default(), &patch)
                .await
                .unwrap();
        }
        eventually(
            "a reconcile of every policy after the label change",
            || async {
                (operator.reconciles_finished() >= finished + policies - 1.0).then_some(())
            },
        )
        .await;
        let ns =
            TestNamespace::create_labelled(client, "e2e-canary", &[(CANARY_LABEL, &self.label)])
                .await;
        let ranges: Api<k8s_openapi::api::core::v1::LimitRange> =
            Api::namespaced(client.clone(), &ns.name);
        eventually("the canary's LimitRange", || {
            let ranges = ranges.clone();
            async move { ranges.get_opt("canary").await.unwrap() }
        })
        .await;
        // An observation window, not a stand-in for a condition: writes would show within it.
        tokio::time::sleep(Duration::from_secs(10)).await;
        ns
    }
}
