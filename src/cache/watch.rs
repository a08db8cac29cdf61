//! The watches: each fills a cache and yields what changed in it, through one filter
//! ([`changes`]), so that a resync or a status update costs no reconcile.
//!
//! - policies (by the controller's `--policy-selector`) and namespaces (metadata only): a change
//!   triggers the policies it concerns ([`Targets`], [`crate::pipeline::triggers`]);
//! - managed LimitRanges, ResourceQuotas and PDBs (by Tenantry's label): a change triggers the
//!   policy named in the object's label;
//! - every StorageClass (few): a class appearing or going changes every allow-list quota.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use std::time::Instant;

use futures::{Stream, StreamExt, TryStreamExt, future};
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::mpsc;
use tracing::warn;

use super::cached::{Cached, worth_a_reconcile};
use super::namespace::CachedNamespace;
use super::own_writes::OwnWrites;
use super::refusals::Refusal;
use super::{Compact, Guarded, summarise};
use crate::model::fingerprint::fingerprint;
use crate::model::namespace::NamespaceInfo;
use crate::model::normalize;
use crate::model::object::{ManagedResource, spec_fingerprint};
use crate::pipeline::triggers::{self, Footprint};

/// Whether every registered watch has finished its first list. Tracked here rather than with
/// `Store::wait_until_ready`, whose one-shot channel wakes only the last of several waiters.
pub struct Synced {
    /// Watches registered and not yet listed.
    remaining: AtomicUsize,
    tx: tokio::sync::watch::Sender<bool>,
}

/// The caches stopped before they were synced (the controller is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("caches are not running")]
pub struct CachesGone;

impl Synced {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            remaining: AtomicUsize::new(0),
            tx: tokio::sync::watch::channel(false).0,
        })
    }

    /// Registers one more watch, and returns what it runs at each complete (re)list: the first
    /// time, count the watch as synced; every time, trigger all policies (a watch gap may have
    /// hidden deletions). The count of watches is the number registered, never written by hand.
    pub fn register(
        self: &Arc<Self>,
        relisted: &mpsc::UnboundedSender<()>,
    ) -> impl FnMut() + Send + 'static {
        self.remaining.fetch_add(1, Ordering::AcqRel);
        let synced = self.clone();
        let relisted = relisted.clone();
        let mut first = true;
        move || {
            if std::mem::take(&mut first) && synced.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                synced.tx.send_replace(true);
            }
            let _ = relisted.send(());
        }
    }

    pub async fn wait(&self) -> Result<(), CachesGone> {
        let mut rx = self.tx.subscribe();
        rx.wait_for(|synced| *synced)
            .await
            .map(|_| ())
            .map_err(|_| CachesGone)
    }
}

/// What a watch event showed of one object, for the filter to judge.
pub enum Seen<'a, K> {
    Applied(&'a K),
    Deleted(&'a K),
}

/// A change a watch passes on, by how it was seen.
pub enum Change<K> {
    /// In a (re)list, whose end triggers every policy anyway (see [`Synced::register`]).
    Listed(K),
    Applied(K),
    Deleted(K),
}

impl<K> Change<K> {
    pub fn object(&self) -> &K {
        match self {
            Change::Listed(o) | Change::Applied(o) | Change::Deleted(o) => o,
        }
    }

    pub fn into_object(self) -> K {
        match self {
            Change::Listed(o) | Change::Applied(o) | Change::Deleted(o) => o,
        }
    }
}

/// The one watch filter: the objects `worth` accepts (every deletion is, for the caches below),
/// in order; `listed` runs when a (re)list is complete and in the cache.
pub fn changes<K>(
    events: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    mut worth: impl FnMut(Seen<'_, K>) -> bool + Send + 'static,
    mut listed: impl FnMut() + Send + 'static,
) -> impl Stream<Item = Result<Change<K>, watcher::Error>> + Send + 'static
where
    K: Send + 'static,
{
    events.filter_map(move |event| {
        future::ready(match event {
            Ok(watcher::Event::Apply(o)) => {
                worth(Seen::Applied(&o)).then_some(Ok(Change::Applied(o)))
            }
            Ok(watcher::Event::InitApply(o)) => {
                worth(Seen::Applied(&o)).then_some(Ok(Change::Listed(o)))
            }
            Ok(watcher::Event::Delete(o)) => {
                worth(Seen::Deleted(&o)).then_some(Ok(Change::Deleted(o)))
            }
            Ok(watcher::Event::InitDone) => {
                listed();
                None
            }
            Ok(watcher::Event::Init) => None,
            Err(e) => Some(Err(e)),
        })
    })
}

/// For caches of full objects: an object is worth passing on when `print` of it differs from
/// the last one passed for its uid; every deletion is.
fn by_fingerprint<K: Resource>(
    print: impl Fn(&K) -> u64 + Send + 'static,
) -> impl FnMut(Seen<'_, K>) -> bool + Send + 'static {
    let mut seen: HashMap<String, u64> = HashMap::new();
    move |event| match event {
        Seen::Applied(o) => {
            let uid = o.meta().uid.clone().unwrap_or_default();
            let print = print(o);
            seen.insert(uid, print) != Some(print)
        }
        Seen::Deleted(o) => {
            seen.remove(o.meta().uid.as_deref().unwrap_or_default());
            true
        }
    }
}

/// A watch (`events`, a watcher's stream of kind `K`) cached as compact summaries `S` (managed
/// objects, namespaces). The stream yields the objects that changed in what a policy reads of
/// them (judged against the cached previous version), and every deletion.
pub fn cached<K, S>(
    events: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    listed: impl FnMut() + Send + 'static,
    own_writes: Arc<OwnWrites>,
) -> (
    Store<S>,
    impl Stream<Item = Result<Change<S>, watcher::Error>> + Send + 'static,
)
where
    K: Send + 'static,
    S: Compact<K>,
{
    let (store, writer) = reflector::store::<S>();
    let previous = store.clone();
    let events = events
        .default_backoff()
        .map_ok(move |event| summarise(event, &previous));
    let worth = |event: Seen<'_, S>| match event {
        Seen::Applied(o) => o.changed(),
        Seen::Deleted(_) => true,
    };
    // After the reflector: the event is in the cache by the time it counts as delivered.
    let delivered = reflector::reflector(writer, events).inspect_ok(move |event| {
        if let watcher::Event::Apply(o) | watcher::Event::InitApply(o) | watcher::Event::Delete(o) =
            event
            && let Some((kind, version)) = o.written_as()
        {
            own_writes.delivered(kind, Some(&version));
        }
    });
    (store, changes(delivered, worth, listed))
}

/// The TenantPolicies this controller handles (`selector`, from `--policy-selector`). Changes to
/// the spec (generation), finalizers or deletion pass; status writes do not.
pub fn policies(
    client: &Client,
    selector: Option<&str>,
    listed: impl FnMut() + Send + 'static,
) -> (
    Store<Guarded>,
    impl Stream<Item = Result<Change<Guarded>, watcher::Error>> + Send + 'static,
) {
    let mut config = watcher::Config::default();
    if let Some(selector) = selector {
        config = config.labels(selector);
    }
    let (store, writer) = reflector::store();
    let events = watcher(Api::<Guarded>::all(client.clone()), config)
        .default_backoff()
        .modify(|p| p.managed_fields_mut().clear())
        .reflect(writer);
    let print = |p: &Guarded| {
        fingerprint((
            p.meta().generation,
            p.finalizers(),
            p.meta().deletion_timestamp.is_some(),
        ))
    };
    (store, changes(events, by_fingerprint(print), listed))
}

/// A watch of every StorageClass, cached; each change worth a reconcile triggers every policy.
pub fn storage_classes(
    client: &Client,
    listed: impl FnMut() + Send + 'static,
    all: mpsc::UnboundedSender<()>,
) -> (
    Store<StorageClass>,
    impl Future<Output = ()> + Send + 'static,
) {
    let (store, writer) = reflector::store();
    let events = watcher(
        Api::<StorageClass>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(|c: &mut StorageClass| crate::model::object::strip_metadata(&mut c.metadata))
    .reflect(writer);
    let print = |c: &StorageClass| {
        let spec = normalize::storage_class(&normalize::class_fields(c));
        worth_a_reconcile(
            spec_fingerprint(&spec),
            c.metadata.labels.as_ref().unwrap_or(&Default::default()),
            c.metadata.owner_references.as_deref().unwrap_or_default(),
            c.metadata.deletion_timestamp.is_some(),
        )
    };
    let stream = changes(events, by_fingerprint(print), listed);
    (store, trigger_all(stream, all, "StorageClass"))
}

/// Drives a watch whose every change triggers all policies (StorageClasses).
pub fn trigger_all<K>(
    changes: impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
    all: mpsc::UnboundedSender<()>,
    what: &'static str,
) -> impl Future<Output = ()> + Send + 'static {
    changes.for_each(move |change| {
        match change {
            Ok(_) => {
                let _ = all.send(());
            }
            Err(e) => warn!(error = %e, "{what} watch failed; retrying with backoff"),
        }
        future::ready(())
    })
}

/// A namespace's labels and whether it was terminating.
type SeenNamespace = (Arc<BTreeMap<String, String>>, bool);

/// Turns namespace and policy changes into reconciles of the policies they concern
/// ([`crate::pipeline::triggers`]), remembering what each namespace and policy was when last seen.
pub struct Targets {
    /// Policies by name, as last seen by the policy watch (the only writer).
    footprints: Mutex<BTreeMap<String, Footprint>>,
    /// Namespaces as last seen. One deleted during a watch gap stays until a namespace of its
    /// name appears again (an entry of two pointers; at worst one spurious trigger then).
    namespaces: Mutex<HashMap<Arc<str>, SeenNamespace>>,
    tx: mpsc::UnboundedSender<ObjectRef<Guarded>>,
}

impl Targets {
    /// The targets, and the reconciles they ask for (to pass to `Controller::reconcile_on`).
    pub fn new() -> (
        Arc<Self>,
        impl Stream<Item = ObjectRef<Guarded>> + Send + 'static,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        let targets = Arc::new(Self {
            footprints: Mutex::default(),
            namespaces: Mutex::default(),
            tx,
        });
        let requests =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) });
        (targets, requests)
    }

    fn reconcile(&self, policies: Vec<String>) {
        for name in policies {
            let _ = self.tx.send(ObjectRef::new(&name));
        }
    }

    /// A policy's change (`namespaces`: the namespace cache, for what it selects). Called
    /// before the controller sees the change, so that the changed policy's own reconcile, and
    /// those asked for here, read the namespaces as they are now.
    pub fn policy_changed(&self, change: &Change<Guarded>, namespaces: &Store<CachedNamespace>) {
        let policy = change.object();
        let name = policy.name_any();
        let after = match (change, &policy.0) {
            (Change::Deleted(_), _) => None,
            (_, Ok(p)) => Some(Footprint::of(&p.spec)),
            (_, Err(_)) => Some(Footprint::default()),
        };
        let mut footprints = self.footprints.lock().expect("not poisoned");
        let before = match after.clone() {
            Some(after) => footprints.insert(name.clone(), after),
            None => footprints.remove(&name),
        };
        if matches!(change, Change::Listed(_)) {
            return;
        }
        let others: Vec<(&str, &Footprint)> = (footprints.iter())
            .filter(|(n, _)| **n != name)
            .map(|(n, f)| (n.as_str(), f))
            .collect();
        let snapshot = namespaces.state();
        let infos: Vec<NamespaceInfo> = snapshot.iter().map(|ns| ns.info()).collect();
        let concerned = triggers::for_policy(before.as_ref(), after.as_ref(), &others, &infos);
        drop(footprints);
        self.reconcile(concerned);
    }

    /// A namespace's change, once it is in the namespace cache.
    pub fn namespace_changed(&self, change: &Change<CachedNamespace>) {
        let ns = change.object();
        let seen = (ns.labels.clone(), ns.terminating);
        let before = {
            let mut namespaces = self.namespaces.lock().expect("not poisoned");
            match change {
                Change::Deleted(_) => namespaces.remove(&ns.name),
                _ => namespaces.insert(ns.name.clone(), seen),
            }
        };
        if matches!(change, Change::Listed(_)) {
            return;
        }
        let before = (before.as_ref()).map(|(labels, terminating)| {
            NamespaceInfo::new(
                ns.name.as_ref(),
                Cow::Borrowed(labels.as_ref()),
                *terminating,
            )
        });
        let after = (!matches!(change, Change::Deleted(_))).then(|| ns.info());
        let concerned = {
            let footprints = self.footprints.lock().expect("not poisoned");
            let policies = footprints.iter().map(|(n, f)| (n.as_str(), f));
            triggers::for_namespace(before.as_ref(), after.as_ref(), policies)
        };
        self.reconcile(concerned);
    }
}

/// One quota admission refusal a trusted controller reported: where, against which quota,
/// what, and when it was last reported.
pub struct Reported {
    pub namespace: String,
    pub quota: String,
    pub refusal: Refusal,
    pub at: Instant,
}

/// The quota refusals kube-controller-manager's workload controllers report (`FailedCreate`
/// Events from [`super::refusals::TRUSTED_REPORTERS`]), for the caller to record against the
/// shared part they name, if there is one.
pub fn refusals(client: &Client) -> impl Stream<Item = Reported> + Send + 'static {
    let config = watcher::Config::default().fields("reason=FailedCreate");
    watcher(Api::<Event>::all(client.clone()), config)
        .default_backoff()
        .filter_map(move |event| {
            let seen = match event {
                Ok(watcher::Event::Apply(e) | watcher::Event::InitApply(e)) if trusted(&e) => {
                    let namespace = e.namespace().unwrap_or_default();
                    // When it was last reported: a relist brings old Events too.
                    let at = reported_at(&e);
                    let refusal = e.message.as_deref().and_then(super::refusals::parse);
                    at.zip(refusal).map(|(at, (quota, refusal))| Reported {
                        namespace,
                        quota,
                        refusal,
                        at,
                    })
                }
                Ok(_) => None,
                Err(e) => {
                    warn!(error = %e, "event watch failed; retrying with backoff");
                    None
                }
            };
            future::ready(seen)
        })
}

/// Reported by one of the controllers whose refusals are believed.
fn trusted(event: &Event) -> bool {
    let reporter = (event.reporting_component.as_deref())
        .filter(|c| !c.is_empty())
        .or(event.source.as_ref().and_then(|s| s.component.as_deref()));
    reporter.is_some_and(|r| super::refusals::TRUSTED_REPORTERS.contains(&r))
}

/// The monotonic instant an Event was last reported at, by its own timestamps against the wall
/// clock; `None` when it is older than refusals are remembered, or carries no time.
fn reported_at(event: &Event) -> Option<Instant> {
    let last = event
        .series
        .as_ref()
        .and_then(|s| s.last_observed_time.as_ref().map(|t| t.0))
        .or(event.last_timestamp.as_ref().map(|t| t.0))
        .or(event.event_time.as_ref().map(|t| t.0))?;
    let age = k8s_openapi::jiff::Timestamp::now().duration_since(last);
    let age = std::time::Duration::try_from(age).unwrap_or_default();
    (age <= super::refusals::REMEMBERED_FOR).then(|| Instant::now() - age)
}

/// The policy a managed object's change concerns: the one named in its label.
pub fn policy_of<K: ManagedResource>(
    change: Result<Change<Cached<K>>, watcher::Error>,
) -> future::Ready<Option<ObjectRef<Guarded>>> {
    future::ready(match change {
        Ok(change) => change.object().policy().map(ObjectRef::new),
        Err(e) => {
            warn!(kind = %K::KIND, error = %e, "managed-object watch failed; retrying with backoff");
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn synced_once_every_registered_watch_has_listed_and_relists_trigger_all() {
        let synced = Synced::new();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut first = synced.register(&tx);
        let mut second = synced.register(&tx);
        first();
        first(); // a relist of the same watch does not count twice
        assert!(!*synced.tx.borrow(), "one of two watches listed");
        second();
        synced.wait().await.expect("synced");
        let mut triggers = 0;
        while rx.try_recv().is_ok() {
            triggers += 1;
        }
        assert_eq!(
            triggers, 3,
            "every list, first or not, triggers all policies"
        );
    }

    #[test]
    fn the_fingerprint_filter_passes_changes_and_every_deletion() {
        use k8s_openapi::api::core::v1::ConfigMap;
        let object = |uid: &str, version: &str| -> ConfigMap {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "x", "uid": uid, "resourceVersion": version, "generation": 1}
            }))
            .unwrap()
        };
        let mut worth = by_fingerprint(|c: &ConfigMap| fingerprint(c.metadata.generation));
        assert!(worth(Seen::Applied(&object("a", "1"))));
        assert!(!worth(Seen::Applied(&object("a", "2"))), "a resync");
        assert!(worth(Seen::Deleted(&object("a", "2"))));
        assert!(
            worth(Seen::Applied(&object("a", "3"))),
            "forgotten on deletion"
        );
    }
}
