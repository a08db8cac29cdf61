use std::net::SocketAddr;
use std::sync::Arc;

use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use tenantry::cli::{self, Output};
use tenantry::controller::leader::{self, Elector, Leadership};
use tenantry::controller::metrics::{self, Metrics};
use tenantry::controller::{self, RunSettings, WatchEncoding};
use tracing_subscriber::EnvFilter;

/// Tenantry governs namespaces from git: LimitRanges, ResourceQuotas, PodDisruptionBudgets and
/// StorageClasses declared by cluster-scoped TenantPolicies.
#[derive(Parser, Debug)]
#[command(name = "tenantry", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the TenantPolicy CustomResourceDefinition as YAML.
    Crd,
    /// The governance report: per namespace pods, QoS classes, requests, quota usage, LimitRanges
    /// and governing policies; per workload replicas, resources, QoS class and PDBs; findings.
    Audit {
        /// Only this namespace (repeatable).
        #[arg(short = 'n', long = "namespace")]
        namespaces: Vec<String>,
        /// Only namespaces with these labels (key=value[,key=value...]).
        #[arg(short = 'l', long = "selector")]
        selector: Option<String>,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value = "text")]
        output: Output,
    },
    /// What applying these TenantPolicies would do to the cluster (a dry run against the current
    /// kubeconfig). Exit code 0: nothing would change; 2: something would; 1: error.
    Plan {
        /// Policy files or directories, as committed in git (multi-document YAML; other kinds are skipped).
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<std::path::PathBuf>,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Run the controller with the ambient kubeconfig (in-cluster config when deployed).
    Run(RunArgs),
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Address of /metrics, /healthz and /readyz (port 0 picks a free port, printed at start).
    #[arg(long, env = "TENANTRY_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Log format.
    #[arg(long, env = "TENANTRY_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Handle only TenantPolicies matching this label selector (sharding, canaries).
    #[arg(long, env = "TENANTRY_POLICY_SELECTOR")]
    policy_selector: Option<String>,
    /// Writes in flight at once while converging one policy.
    #[arg(long, default_value_t = 32)]
    write_concurrency: usize,
    /// Policies reconciled at once.
    #[arg(long, default_value_t = 4)]
    reconcile_concurrency: u16,
    /// How the watches of managed LimitRanges, ResourceQuotas and PDBs are encoded: protobuf
    /// shares kube-controller-manager's encoding of every event in the API server and is cheaper
    /// to read; json is kube-rs's own watcher.
    #[arg(
        long,
        env = "TENANTRY_WATCH_ENCODING",
        value_enum,
        default_value = "protobuf"
    )]
    watch_encoding: WatchEncoding,
    #[command(flatten)]
    election: ElectionArgs,
}

/// Leader election (for more than one replica).
#[derive(clap::Args, Debug)]
struct ElectionArgs {
    /// Only the holder of a Lease writes; the others wait to take over.
    #[arg(long, env = "TENANTRY_LEADER_ELECT")]
    leader_elect: bool,
    /// Namespace of the Lease.
    #[arg(long, default_value = "tenantry-system")]
    leader_election_namespace: String,
    /// Name of the Lease.
    #[arg(long, default_value = "tenantry-leader")]
    leader_election_id: String,
    /// How long a lease is valid without renewal before another instance may take it.
    #[arg(long, value_parser = humantime_secs, default_value = "15")]
    lease_duration: Duration,
    /// How long the leader keeps trying to renew before it gives up leadership.
    #[arg(long, value_parser = humantime_secs, default_value = "10")]
    renew_deadline: Duration,
    /// How often candidates try to acquire and the leader renews.
    #[arg(long, value_parser = humantime_secs, default_value = "2")]
    retry_period: Duration,
}

/// Seconds, optionally with an `s` suffix (`15`, `15s`, `0.5s`).
fn humantime_secs(text: &str) -> Result<Duration, String> {
    let number = text.strip_suffix('s').unwrap_or(text);
    number
        .parse::<f64>()
        .ok()
        .filter(|s| *s > 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("{text:?} is not a number of seconds"))
}

fn init_logging(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,kube=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// The CRD's validation rules use the CEL quantity library; an older API server would refuse the
/// CRD or skip the rules, so refuse to run against it.
async fn check_kubernetes_version(client: &kube::Client) -> anyhow::Result<()> {
    let info = client.apiserver_version().await?;
    let minor: u32 = info.minor.trim_end_matches('+').parse().unwrap_or(0);
    let major: u32 = info.major.parse().unwrap_or(0);
    if major < 1 || (major == 1 && minor < tenantry::api::MIN_KUBERNETES_MINOR) {
        anyhow::bail!(
            "Tenantry needs Kubernetes 1.{} or later (CEL quantity rules in its CRD); this API server is {}",
            tenantry::api::MIN_KUBERNETES_MINOR,
            info.git_version
        );
    }
    tracing::info!(kubernetes = %info.git_version, "API server version supported");
    Ok(())
}

/// glibc malloc as the controller needs it, unless the environment says otherwise (glibc reads
/// `MALLOC_ARENA_MAX` and `MALLOC_MMAP_THRESHOLD_` itself). Set before the runtime starts any
/// thread.
///
/// - One arena: glibc gives each thread that allocates its own (up to 8 per core), and memory
///   freed in one is not reused by the others; with the runtime's worker threads taking turns at
///   decoding watch events and building plans, resident memory grew well beyond what the
///   controller holds (at 1,000 namespaces, 31 MiB peak against 27 MiB with one arena).
/// - A fixed mmap threshold: by default it rises to the size of the largest block freed, so after
///   the first large reconcile its multi-MiB buffers (plans, outcomes, hash tables) come from the
///   heap, between long-lived cache entries, and stay resident once freed. Fixed at 128 KiB they
///   are mapped and unmapped on their own.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_malloc() {
    const M_MMAP_THRESHOLD: std::ffi::c_int = -3;
    const M_ARENA_MAX: std::ffi::c_int = -8;
    unsafe extern "C" {
        fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
    }
    for (variable, param, value) in [
        ("MALLOC_ARENA_MAX", M_ARENA_MAX, 1),
        ("MALLOC_MMAP_THRESHOLD_", M_MMAP_THRESHOLD, 128 * 1024),
    ] {
        if std::env::var_os(variable).is_none() {
            // SAFETY: mallopt only changes an allocator tunable; no other thread runs yet.
            unsafe {
                mallopt(param, value);
            }
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_malloc() {}

fn main() -> anyhow::Result<()> {
    tune_malloc();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(cli())
}

async fn cli() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd => print!("{}", tenantry::crd::crd_yaml()),
        Command::Audit {
            namespaces,
            selector,
            output,
        } => cli::audit::run(&namespaces, selector.as_deref(), output).await?,
        Command::Plan { files, output } => match cli::plan::run(&files, output).await {
            Ok(changes) => std::process::exit(if changes { 2 } else { 0 }),
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::exit(1);
            }
        },
        Command::Run(args) => run(args).await?,
    }
    Ok(())
}

/// `tenantry run`: the controller, directly or once this instance is elected leader.
async fn run(args: RunArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    let client = kube::Client::try_default().await?;
    check_kubernetes_version(&client).await?;
    let metrics = Arc::new(Metrics::default());
    let bound = metrics::serve(args.metrics_addr, metrics.clone()).await?;
    tracing::info!(metrics = %bound, "serving /metrics, /healthz and /readyz");
    let instance = std::env::var("POD_NAME")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok());
    let settings = RunSettings {
        policy_selector: args.policy_selector,
        write_concurrency: args.write_concurrency,
        reconcile_concurrency: args.reconcile_concurrency,
        watch_encoding: args.watch_encoding,
        instance: instance.clone(),
    };
    let election = args.election;
    if !election.leader_elect {
        metrics.leader.set(1);
        return controller::run(client, settings, metrics, Leadership::always()).await;
    }
    let identity = format!(
        "{}_{}",
        instance.unwrap_or_else(|| "tenantry".into()),
        std::process::id()
    );
    let elector = Elector::new(
        client.clone(),
        leader::LeaseSettings {
            namespace: election.leader_election_namespace,
            lease_name: election.leader_election_id,
            identity,
            lease_duration: election.lease_duration,
            renew_deadline: election.renew_deadline,
            retry_period: election.retry_period,
        },
    );
    // A standby candidate is healthy: ready while it waits, not while a new leader syncs.
    metrics.set_ready(true);
    let (lost_tx, lost_rx) = tokio::sync::oneshot::channel();
    let leadership = tokio::select! {
        leadership = elector.acquire(lost_tx) => leadership,
        _ = tokio::signal::ctrl_c() => return Ok(()),
    };
    metrics.leader.set(1);
    metrics.set_ready(false);
    tokio::select! {
        result = controller::run(client, settings, metrics.clone(), leadership) => result,
        _ = lost_rx => {
            metrics.leader.set(0);
            // Writes are already fenced; exiting lets the Deployment restart this pod as a candidate.
            anyhow::bail!("lost leadership");
        }
    }
}
