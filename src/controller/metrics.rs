//! Prometheus metrics and the operations endpoints (/metrics, /healthz, /readyz).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    pub verb: String,
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyNameLabels {
    pub policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SharedQuotaLabels {
    pub policy: String,
    pub quota: String,
    pub resource: String,
}

/// A gauge of a quantity in its base unit (cores, bytes, pods), which may be fractional.
pub type QuantityGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// Every metric Tenantry exports.
pub struct Metrics {
    pub reconciles: Counter,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub reconcile_duration: Histogram,
    pub api_writes: Family<WriteLabels, Counter>,
    pub managed_objects: Family<KindLabels, Gauge>,
    pub drift_corrections: Family<KindLabels, Counter>,
    pub leader: Gauge,
    pub admission_policy_installed: Family<PolicyNameLabels, Gauge>,
    pub shared_quota_hard: Family<SharedQuotaLabels, QuantityGauge>,
    pub shared_quota_used: Family<SharedQuotaLabels, QuantityGauge>,
    registry: Registry,
    ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tenantry");
        let reconciles = Counter::default();
        registry.register(
            "reconciles",
            "Reconciles of TenantPolicies",
            reconciles.clone(),
        );
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by reason",
            reconcile_errors.clone(),
        );
        let reconcile_duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "reconcile_duration_seconds",
            "Duration of one reconcile",
            reconcile_duration.clone(),
        );
        let api_writes = Family::<WriteLabels, Counter>::default();
        registry.register(
            "api_writes",
            "Write requests sent to the API server, by verb (create, apply, patch, delete, status, finalizer, event) and kind",
            api_writes.clone(),
        );
        let managed_objects = Family::<KindLabels, Gauge>::default();
        registry.register(
            "managed_objects",
            "Objects carrying Tenantry's managed-by label, by kind",
            managed_objects.clone(),
        );
        let drift_corrections = Family::<KindLabels, Counter>::default();
        registry.register(
            "drift_corrections",
            "Managed objects changed or deleted outside Tenantry and restored",
            drift_corrections.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this instance holds the leader lease (or runs without election)",
            leader.clone(),
        );
        let admission_policy_installed = Family::<PolicyNameLabels, Gauge>::default();
        registry.register(
            "admission_policy_installed",
            "1 when Tenantry's ValidatingAdmissionPolicy of this name and its binding exist, 0 \
             when either is missing (tamper protection or the shared-budget window is off), -1 \
             when it cannot be read",
            admission_policy_installed.clone(),
        );
        let shared_quota_hard = Family::<SharedQuotaLabels, QuantityGauge>::default();
        registry.register(
            "shared_quota_hard",
            "A shared budget (spec.sharedQuotas hard), per resource",
            shared_quota_hard.clone(),
        );
        let shared_quota_used = Family::<SharedQuotaLabels, QuantityGauge>::default();
        registry.register(
            "shared_quota_used",
            "What the namespaces of a shared budget use together (sum of the parts' status.used)",
            shared_quota_used.clone(),
        );
        Self {
            leader,
            admission_policy_installed,
            shared_quota_hard,
            shared_quota_used,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            api_writes,
            managed_objects,
            drift_corrections,
            registry,
            ready: AtomicBool::new(false),
        }
    }
}

impl Metrics {
    pub fn count_write(&self, verb: &str, kind: &str) {
        self.api_writes
            .get_or_create(&WriteLabels {
                verb: verb.into(),
                kind: kind.into(),
            })
            .inc();
    }

    /// Ready once the caches are filled and the controller runs.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Serves /metrics, /healthz and /readyz until the process ends. Returns the bound address.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> anyhow::Result<SocketAddr> {
    let app = Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(metrics);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    Ok(bound)
}

async fn render(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.render(),
    )
}

async fn readyz(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    if metrics.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced")
    }
}
