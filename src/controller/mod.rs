//! The controller: wiring the watches (`cache::watch`) to the reconcile (`reconcile.rs`, the
//! pipeline), with what it remembers per policy (`memory.rs`) and the one writer.

pub mod admission_check;
pub mod leader;
mod memory;
pub mod metrics;
pub mod reconcile;
mod refusal_wakes;
pub mod writer;

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt, future};
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::controller::{self, Config as ControllerConfig, Controller};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::Store;
use kube::runtime::watcher::{self, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::api::{MANAGED_SELECTOR, SharedQuotaStatus};
use crate::cache::cached::Cached;
use crate::cache::own_writes::OwnWrites;
use crate::cache::protobuf::Watchable;
use crate::cache::protobuf_watch;
use crate::cache::refusals::Refusals;
use crate::cache::watch::{self, CachesGone, Synced, Targets};
use crate::cache::{Guarded, Stores};
use crate::controller::leader::Leadership;
use crate::controller::metrics::{ErrorLabels, KindLabels, Metrics, SharedQuotaLabels};
use crate::controller::writer::Writer;
use crate::model::kind::Kind;
pub use memory::{PolicyMemories, PolicyMemory, RESYNC};
pub use reconcile::reconcile;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing status: {0}")]
    Status(#[source] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("{0} objects could not be released yet")]
    ReleaseIncomplete(usize),
    #[error(transparent)]
    CachesGone(#[from] CachesGone),
}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Status(_) => "status",
            Error::Finalizer(_) => "finalizer",
            Error::ReleaseIncomplete(_) => "release",
            Error::CachesGone(_) => "caches",
        }
    }
}

/// What the controller runs with.
#[derive(Clone, Debug)]
pub struct RunSettings {
    /// Only policies matching this label selector are handled (sharding, canaries, tests).
    pub policy_selector: Option<String>,
    /// Writes in flight at once within one reconcile.
    pub write_concurrency: usize,
    /// Policies reconciled at once.
    pub reconcile_concurrency: u16,
    /// How the watches of managed objects are encoded.
    pub watch_encoding: WatchEncoding,
    /// Names this instance in Events.
    pub instance: Option<String>,
}

pub struct Context {
    pub stores: Stores,
    /// What the writer wrote and the caches show of it (read-your-writes for each reconcile).
    pub own_writes: Arc<OwnWrites>,
    pub writer: Writer,
    pub metrics: Arc<Metrics>,
    pub synced: Arc<Synced>,
    pub memory: PolicyMemories,
}

impl Context {
    fn count_managed(&self) {
        for (kind, count) in self.stores.managed_counts() {
            self.metrics
                .managed_objects
                .get_or_create(&KindLabels {
                    kind: kind.to_string(),
                })
                .set(count as i64);
        }
    }

    /// The shared budgets and their use, as gauges in base units.
    fn count_budgets(&self, policy: &str, budgets: &[SharedQuotaStatus]) {
        for budget in budgets {
            for (family, amounts) in [
                (&self.metrics.shared_quota_hard, &budget.hard),
                (&self.metrics.shared_quota_used, &budget.used),
            ] {
                for (resource, quantity) in amounts {
                    let labels = SharedQuotaLabels {
                        policy: policy.to_owned(),
                        quota: budget.name.clone(),
                        resource: resource.clone(),
                    };
                    let milli = crate::model::quantity::milli(&quantity.0).unwrap_or(0);
                    family.get_or_create(&labels).set(milli as f64 / 1000.0);
                }
            }
        }
    }

    fn count_drift(&self, corrected: &[Kind]) {
        for kind in corrected {
            self.metrics
                .drift_corrections
                .get_or_create(&KindLabels {
                    kind: kind.to_string(),
                })
                .inc();
        }
    }
}

pub fn error_policy(policy: Arc<Guarded>, error: &Error, ctx: Arc<Context>) -> controller::Action {
    warn!(policy = %policy.name_any(), %error, "reconcile failed");
    ctx.metrics
        .reconcile_errors
        .get_or_create(&ErrorLabels {
            reason: error.metric_label().into(),
        })
        .inc();
    controller::Action::requeue(ctx.memory.of(&policy.name_any()).backoff())
}

/// Runs the controller until SIGTERM or Ctrl-C.
pub async fn run(
    client: Client,
    settings: RunSettings,
    metrics: Arc<Metrics>,
    leadership: Arc<Leadership>,
) -> anyhow::Result<()> {
    // StorageClass changes can move allow-lists anywhere, so they trigger every policy; so
    // does every relist, which may have hidden deletions. Namespace and policy changes trigger
    // the policies they concern (`targets`).
    let (all_tx, all_rx) = mpsc::unbounded_channel::<()>();
    let synced = Synced::new();
    let (targets, targeted) = Targets::new();
    let own_writes = Arc::new(OwnWrites::default());

    let namespaces = watcher(Api::all(client.clone()), watcher::Config::default());
    let (namespaces, namespace_changes) = watch::cached::<PartialObjectMeta<Namespace>, _>(
        namespaces,
        synced.register(&all_tx),
        own_writes.clone(),
    );
    let (policies, policy_changes) = watch::policies(
        &client,
        settings.policy_selector.as_deref(),
        synced.register(&all_tx),
    );
    let (policy_targets, selected) = (targets.clone(), namespaces.clone());
    let policy_changes = policy_changes.map_ok(move |change| {
        policy_targets.policy_changed(&change, &selected);
        change.into_object()
    });
    tokio::spawn(namespace_changes.for_each(move |change| {
        match change {
            Ok(change) => targets.namespace_changed(&change),
            Err(e) => warn!(error = %e, "namespace watch failed; retrying with backoff"),
        }
        future::ready(())
    }));
    let managed = ManagedWatches {
        client: &client,
        encoding: settings.watch_encoding,
        own_writes: &own_writes,
    };
    let (limit_ranges, limit_range_changes) = managed.watch::<LimitRange>(synced.register(&all_tx));
    let (quotas, quota_changes) = managed.watch::<ResourceQuota>(synced.register(&all_tx));
    let (pdbs, pdb_changes) = managed.watch::<PodDisruptionBudget>(synced.register(&all_tx));
    let (storage_classes, class_driver) =
        watch::storage_classes(&client, synced.register(&all_tx), all_tx.clone());
    tokio::spawn(class_driver);
    tokio::spawn(admission_check::every(
        client.clone(),
        metrics.clone(),
        RESYNC,
    ));
    drop(all_tx);

    // A refused request in a shared budget's part: the policy holding it makes it fit.
    let refusals = Arc::new(Refusals::default());
    let refused = refusal_wakes::stream(&client, quotas.clone(), refusals.clone());
    let stores = Stores {
        policies: policies.clone(),
        namespaces,
        limit_ranges,
        quotas,
        pdbs,
        storage_classes,
        refusals,
    };
    let reporter = Reporter {
        controller: "tenantry".into(),
        instance: settings.instance.clone(),
    };
    let writer = Writer::new(
        client,
        metrics.clone(),
        settings.write_concurrency,
        leadership,
        reporter,
        own_writes.clone(),
    );
    let ctx = Arc::new(Context {
        stores,
        own_writes,
        writer,
        metrics: metrics.clone(),
        synced: synced.clone(),
        memory: PolicyMemories::default(),
    });
    tokio::spawn(async move {
        if synced.wait().await.is_ok() {
            info!("caches synced");
            metrics.set_ready(true);
        }
    });

    Controller::for_stream(policy_changes, policies)
        .with_config(ControllerConfig::default().concurrency(settings.reconcile_concurrency))
        .reconcile_on(limit_range_changes.filter_map(watch::policy_of))
        .reconcile_on(quota_changes.filter_map(watch::policy_of))
        .reconcile_on(pdb_changes.filter_map(watch::policy_of))
        .reconcile_on(refused)
        .reconcile_on(targeted)
        .reconcile_all_on(coalesced(all_rx))
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|result| {
            if let Err(e) = result {
                tracing::debug!(error = %e, "reconcile request not handled");
            }
            future::ready(())
        })
        .await;
    info!("controller stopped");
    Ok(())
}

/// How the watches of managed objects are encoded (`--watch-encoding`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum WatchEncoding {
    /// Tenantry's protobuf watcher ([`crate::cache::protobuf_watch`]).
    #[default]
    Protobuf,
    /// kube-runtime's JSON watcher.
    Json,
}

impl WatchEncoding {
    /// As `--watch-encoding` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            WatchEncoding::Protobuf => "protobuf",
            WatchEncoding::Json => "json",
        }
    }
}

/// What the watches of managed objects share.
struct ManagedWatches<'a> {
    client: &'a Client,
    encoding: WatchEncoding,
    own_writes: &'a Arc<OwnWrites>,
}

impl ManagedWatches<'_> {
    /// The watch of one managed kind (by Tenantry's label), cached compactly.
    #[allow(clippy::type_complexity)]
    fn watch<K: Watchable>(
        &self,
        listed: impl FnMut() + Send + 'static,
    ) -> (
        Store<Cached<K>>,
        impl futures::Stream<Item = Result<watch::Change<Cached<K>>, watcher::Error>> + Send + 'static,
    ) {
        let managed = watcher::Config::default().labels(MANAGED_SELECTOR);
        let client = self.client.clone();
        let events = match self.encoding {
            WatchEncoding::Protobuf => protobuf_watch::watcher(client, managed).boxed(),
            WatchEncoding::Json => watcher(Api::all(client), managed).boxed(),
        };
        watch::cached(events, listed, self.own_writes.clone())
    }
}

/// One trigger per burst (a relist, many namespaces at once), not one per change.
fn coalesced(rx: mpsc::UnboundedReceiver<()>) -> impl futures::Stream<Item = ()> + Send {
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await?;
        while rx.try_recv().is_ok() {}
        Some(((), rx))
    })
}
