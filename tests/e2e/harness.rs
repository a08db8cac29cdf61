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
    let state = std::env::var_os("TENANTRY_STATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".tenantry"));
    let matched = state.join("bin/kubectl");
    let program = if matched.exists() {
        matched
    } else {
        PathBuf::from("kubectl")
    };
    let out = Command::new(&program)
        .args(args)
        .env("KUBECONFIG", kubeconfig_path())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()));
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
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
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
            start.elapsed() < DEADLINE,
            "timed out after {DEADLINE:?} waiting for {what}"
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
