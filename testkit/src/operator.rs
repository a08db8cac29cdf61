//! The controller under test as a process (`tenantry run`), so that its readiness, metrics,
//! restarts and memory are real: started by the tests ([`Operator::start`]) and the benchmark
//! ([`Operator::launch`]), stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::cluster::{kubeconfig_path, repo_root};
use crate::poll::{DEADLINE, poll};

/// Label that scopes a test's policies to the controller the test started.
pub const SHARD_LABEL: &str = "e2e.tenantry.io/shard";

/// The tenantry binary of this build: Cargo's `CARGO_BIN_EXE_tenantry` (set while an
/// integration test of the tenantry package runs), else `tenantry` next to the running
/// executable's directory (`target/<profile>/deps/..`).
pub fn tenantry_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("CARGO_BIN_EXE_tenantry") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the running executable");
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    profile.join("tenantry")
}

/// A free port on loopback (for `--metrics-addr`).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("a bound address").port()
}

/// How to start a `tenantry run`: `run --metrics-addr 127.0.0.1:<port> --policy-selector
/// <label>=<shard> <args>`, stdout and stderr to `log`.
pub struct Launch {
    pub binary: PathBuf,
    pub port: u16,
    /// The label of `--policy-selector`; the controller handles the policies with
    /// `label=shard`.
    pub label: String,
    pub shard: String,
    pub args: Vec<String>,
    /// Set in its environment (the rest is this process's).
    pub env: Vec<(String, String)>,
    pub log: PathBuf,
    /// How long it may take to answer 200 on /readyz; `None`: do not wait.
    pub ready_within: Option<Duration>,
}

/// A `tenantry run` process. Stopped (SIGTERM, then SIGKILL after 10 s) when dropped, so a run
/// that fails part-way leaves no controller behind.
pub struct Operator {
    child: Option<Child>,
    port: u16,
    /// The value of its policy selector's label (a test's shard).
    pub shard: String,
    pub log: PathBuf,
}

impl Operator {
    /// A `tenantry run` of this build, handling only the policies labelled with its shard.
    pub async fn start(shard: &str) -> Self {
        Self::start_with(shard, &[], None).await
    }

    /// An operator with extra `tenantry run` arguments and, optionally, its own kubeconfig (a
    /// service account's identity).
    pub async fn start_with(shard: &str, args: &[&str], kubeconfig: Option<&Path>) -> Self {
        let port = free_port();
        let dir = repo_root().join("target/e2e-logs");
        std::fs::create_dir_all(&dir).unwrap();
        let kubeconfig = kubeconfig.map_or_else(kubeconfig_path, Path::to_path_buf);
        let log_level = std::env::var("E2E_OPERATOR_LOG")
            .unwrap_or_else(|_| "info,tenantry=debug,kube=warn".into());
        let launch = Launch {
            binary: tenantry_binary(),
            port,
            label: SHARD_LABEL.into(),
            shard: shard.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: vec![
                ("KUBECONFIG".into(), kubeconfig.display().to_string()),
                ("RUST_LOG".into(), log_level),
            ],
            log: dir.join(format!("{shard}-{port}.log")),
            ready_within: Some(DEADLINE),
        };
        Self::launch(launch).await.expect("start tenantry run")
    }

    /// Starts `launch` and waits until it is ready (if it says to).
    pub async fn launch(launch: Launch) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let file = std::fs::File::create(&launch.log)
            .with_context(|| format!("creating {}", launch.log.display()))?;
        let child = Command::new(&launch.binary)
            .args([
                "run",
                "--metrics-addr",
                &format!("127.0.0.1:{}", launch.port),
            ])
            .args([
                "--policy-selector",
                &format!("{}={}", launch.label, launch.shard),
            ])
            .args(&launch.args)
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {}", launch.binary.display()))?;
        let operator = Self {
            child: Some(child),
            port: launch.port,
            shard: launch.shard,
            log: launch.log,
        };
        if let Some(limit) = launch.ready_within {
            let port = operator.port;
            let every = Duration::from_millis(20);
            poll("the operator's /readyz", limit, every, || async move {
                Ok((http_get(port, "/readyz").map(|(code, _)| code) == Some(200)).then_some(()))
            })
            .await?;
        }
        Ok(operator)
    }

    /// The values of a metric's series whose label text contains every `filter`; empty when it
    /// has none (yet).
    pub fn metric_values(&self, name: &str, filters: &[&str]) -> Vec<f64> {
        let (_, body) = http_get(self.port, "/metrics").expect("metrics answer");
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.split(['{', ' ']).next() == Some(name))
            .filter(|l| filters.iter().all(|f| l.contains(f)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .collect()
    }

    /// The sum of a metric's series whose label text contains every `filter` (e.g. `verb="create"`).
    pub fn metric(&self, name: &str, filters: &[&str]) -> f64 {
        self.metric_values(name, filters).iter().sum()
    }

    /// Writes of managed objects and status (Events and the finalizer are not counted).
    pub fn object_and_status_writes(&self) -> f64 {
        ["create", "apply", "patch", "delete", "status"]
            .iter()
            .map(|verb| self.metric("tenantry_api_writes_total", &[&format!("verb=\"{verb}\"")]))
            .sum()
    }

    /// Reconciles started (the fault suite counts retries with it).
    pub fn reconciles(&self) -> f64 {
        self.metric("tenantry_reconciles_total", &[])
    }

    /// Reconciles finished: the duration histogram is observed at the end of a reconcile, while
    /// `tenantry_reconciles_total` counts at its start. Only a hint for when to look; what was
    /// written is read from the API server ([`crate::snapshot`]).
    pub fn reconciles_finished(&self) -> f64 {
        self.metric("tenantry_reconcile_duration_seconds_count", &[])
    }

    /// The process id (for SIGSTOP/SIGCONT in the fault suite, /proc in the benchmark).
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

    /// Stops the process with SIGTERM (graceful shutdown) and waits for it (10 s, then kill -9).
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
