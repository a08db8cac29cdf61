use std::net::SocketAddr;
use std::sync::Arc;

use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use tenantry::controller::{self, Settings};
use tenantry::leader::{self, Elector, Leadership};
use tenantry::metrics::{self, Metrics};
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
    /// Run the controller with the ambient kubeconfig (in-cluster config when deployed).
    Run {
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
        #[command(flatten)]
        election: ElectionArgs,
    },
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd => print!("{}", tenantry::crd::crd_yaml()),
        Command::Run {
            metrics_addr,
            log_format,
            policy_selector,
            write_concurrency,
            reconcile_concurrency,
            election,
        } => {
            init_logging(log_format);
            let client = kube::Client::try_default().await?;
            check_kubernetes_version(&client).await?;
            let metrics = Arc::new(Metrics::default());
            let bound = metrics::serve(metrics_addr, metrics.clone()).await?;
            tracing::info!(metrics = %bound, "serving /metrics, /healthz and /readyz");
            let instance = std::env::var("POD_NAME")
                .ok()
                .or_else(|| std::env::var("HOSTNAME").ok());
            let settings = Settings {
                policy_selector,
                write_concurrency,
                reconcile_concurrency,
                instance: instance.clone(),
            };
            if !election.leader_elect {
                metrics.leader.set(1);
                controller::run(client, settings, metrics, Leadership::always()).await?;
                return Ok(());
            }
            let identity = format!(
                "{}_{}",
                instance.unwrap_or_else(|| "tenantry".into()),
                std::process::id()
            );
            let elector = Elector::new(
                client.clone(),
                leader::Settings {
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
                result = controller::run(client, settings, metrics.clone(), leadership) => result?,
                _ = lost_rx => {
                    metrics.leader.set(0);
                    // Writes are already fenced; exiting lets the Deployment restart this pod as a candidate.
                    anyhow::bail!("lost leadership");
                }
            }
        }
    }
    Ok(())
}
