use std::net::SocketAddr;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use tenantry::controller::{self, Settings};
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
    },
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
        } => {
            init_logging(log_format);
            let client = kube::Client::try_default().await?;
            check_kubernetes_version(&client).await?;
            let metrics = Arc::new(Metrics::default());
            let bound = metrics::serve(metrics_addr, metrics.clone()).await?;
            tracing::info!(metrics = %bound, "serving /metrics, /healthz and /readyz");
            let settings = Settings {
                policy_selector,
                write_concurrency,
                reconcile_concurrency,
                instance: std::env::var("POD_NAME")
                    .ok()
                    .or_else(|| std::env::var("HOSTNAME").ok()),
            };
            controller::run(client, settings, metrics).await?;
        }
    }
    Ok(())
}
