//! The local control plane (`make cluster-up`, hack/cluster.sh): its client, and `kubectl` of
//! the server's own version.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// The repository (this crate lives in its `testkit/`).
pub fn repo_root() -> PathBuf {
    let testkit = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    testkit.parent().map(PathBuf::from).unwrap_or(testkit)
}

/// The state directory of the local control plane (`TENANTRY_STATE`, else `.tenantry`).
fn state_dir() -> PathBuf {
    std::env::var_os("TENANTRY_STATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".tenantry"))
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

/// A client of the local control plane, as its admin.
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
    let matched = state_dir().join("bin/kubectl");
    let program = if matched.exists() {
        matched
    } else {
        PathBuf::from("kubectl")
    };
    let mut child = Command::new(&program)
        .args(args)
        .env("KUBECONFIG", kubeconfig_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
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
