//! A control plane of a test's own (`hack/cluster.sh` with a state directory of its own), on
//! loopback, with `nodes` simulated nodes (kube-scheduler and KWOK; none: pods stay Pending);
//! stopped and removed when dropped.

use std::path::PathBuf;
use std::process::Command;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::cluster::{Output, repo_root};

pub struct OwnControlPlane {
    pub state: PathBuf,
    pub kubeconfig: PathBuf,
}

impl OwnControlPlane {
    pub fn up(name: &str, nodes: u32) -> Self {
        let state = repo_root().join("target/e2e-clusters").join(name);
        let out = Command::new("bash")
            .arg(repo_root().join("hack/cluster.sh"))
            .arg("up")
            .env("TENANTRY_STATE", &state)
            .env("TENANTRY_NODES", nodes.to_string())
            .output()
            .expect("hack/cluster.sh up");
        let plane = Self {
            kubeconfig: PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()),
            state,
        };
        assert!(
            out.status.success(),
            "hack/cluster.sh up failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        plane
    }

    /// Runs `kubectl` of the server's version against this control plane.
    pub fn kubectl_output(&self, args: &[&str]) -> Output {
        let out = Command::new(self.state.join("bin/kubectl"))
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .output()
            .expect("kubectl");
        Output {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs `kubectl`, failing the test when it fails.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let out = self.kubectl_output(args);
        assert!(out.success, "kubectl {args:?}: {}", out.stderr);
        out.stdout
    }

    pub async fn client(&self) -> Client {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).expect("kubeconfig");
        let options = KubeConfigOptions::default();
        let config = Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .expect("kubeconfig valid");
        Client::try_from(config).expect("client")
    }

    /// Installs the TenantPolicy CRD and waits until it is served.
    pub fn install_crd(&self) {
        let crd = repo_root().join(tenantry::crd::CRD_PATH);
        self.kubectl(&["apply", "--server-side", "-f", crd.to_str().unwrap()]);
        self.kubectl(&[
            "wait",
            "--for=condition=Established",
            "crd/tenantpolicies.tenantry.io",
            "--timeout=60s",
        ]);
    }
}

impl Drop for OwnControlPlane {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo_root().join("hack/cluster.sh"))
            .arg("down")
            .env("TENANTRY_STATE", &self.state)
            .output();
    }
}
