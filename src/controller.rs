//! Wiring: watches and caches, the reconcile pipeline (select -> build -> diff -> apply ->
//! status), Events, and the finalizer that carries out deletionPolicy when a policy is deleted.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt, future};
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ObjectReference, ResourceQuota};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::controller::{Action as Requeue, Config as ControllerConfig, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::api::{DeletionPolicy, POLICY_LABEL, TenantPolicy};

/// A policy as watched: one that does not deserialize (stored under an older schema, say) is
/// reported on its own instead of breaking the watch of all of them.
pub type Guarded = kube::core::DeserializeGuard<TenantPolicy>;
use crate::apply::{Applier, NOT_OWNED_RECHECK, NotOwned, Outcome};
use crate::cache::{self, Cached, CachedNamespace};
use crate::diff::{self, Action, LiveIndex};
use crate::leader::Leadership;
use crate::metrics::{ErrorLabels, KindLabels, Metrics};
use crate::resources::{Kind, Live, ManagedResource, ObjectKey, Owner, live_of_class};
use crate::select::{self, Candidate, NamespaceInfo};
use crate::status::{self, Summary};
use crate::validate;

/// Finalizer that lets Tenantry carry out deletionPolicy before a policy goes.
pub const FINALIZER: &str = "tenantry.io/cleanup";
/// Label selector of the managed-object watches.
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=tenantry";
/// Periodic safety resync of a converged policy (changes are watch-driven; this is a backstop).
pub const RESYNC: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing status: {0}")]
    Status(#[source] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("{0} objects could not be released yet")]
    ReleaseIncomplete(usize),
    #[error("caches are not running")]
    CachesGone,
}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Status(_) => "status",
            Error::Finalizer(_) => "finalizer",
            Error::ReleaseIncomplete(_) => "release",
            Error::CachesGone => "caches",
        }
    }
}

/// What the controller runs with.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Only policies matching this label selector are handled (sharding, canaries, tests).
    pub policy_selector: Option<String>,
    /// Writes in flight at once within one reconcile.
    pub write_concurrency: usize,
    /// Policies reconciled at once.
    pub reconcile_concurrency: u16,
    /// Names this instance in Events.
    pub instance: Option<String>,
}

/// The caches every reconcile reads.
#[derive(Clone)]
pub struct Stores {
    pub policies: Store<Guarded>,
    pub namespaces: Store<CachedNamespace>,
    pub limit_ranges: Store<Cached<LimitRange>>,
    pub quotas: Store<Cached<ResourceQuota>>,
    pub pdbs: Store<Cached<PodDisruptionBudget>>,
    /// Every StorageClass of the cluster (few): the allow-list caps those not allowed.
    pub storage_classes: Store<StorageClass>,
}

/// Whether every watch has finished its first list. Tracked here rather than with
/// `Store::wait_until_ready`, whose one-shot channel wakes only the last of several waiters.
pub struct Synced {
    remaining: std::sync::atomic::AtomicUsize,
    tx: tokio::sync::watch::Sender<bool>,
}

impl Synced {
    fn new(watches: usize) -> Arc<Self> {
        Arc::new(Self {
            remaining: watches.into(),
            tx: tokio::sync::watch::channel(false).0,
        })
    }

    /// Called once per watch when its first list is in the cache.
    fn watch_listed(&self) {
        if self
            .remaining
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel)
            == 1
        {
            self.tx.send_replace(true);
        }
    }

    pub async fn wait(&self) -> Result<(), Error> {
        let mut rx = self.tx.subscribe();
        rx.wait_for(|synced| *synced)
            .await
            .map(|_| ())
            .map_err(|_| Error::CachesGone)
    }
}

/// What a watch stream does when it finishes a list: the first time, count it as synced; every
/// time, trigger all policies (a watch gap may have hidden deletions).
fn on_listed(
    synced: &Arc<Synced>,
    relisted: &mpsc::UnboundedSender<()>,
) -> impl FnMut() + Send + 'static {
    let synced = synced.clone();
    let relisted = relisted.clone();
    let mut first = true;
    move || {
        if std::mem::take(&mut first) {
            synced.watch_listed();
        }
        let _ = relisted.send(());
    }
}

/// The caches as the diff sees them: lookups by key, no copy of the whole cache.
impl LiveIndex for Stores {
    fn get(&self, key: &ObjectKey) -> Option<Live> {
        fn lookup<K: ManagedResource>(store: &Store<Cached<K>>, key: &ObjectKey) -> Option<Live> {
            store
                .get(&ObjectRef::new(&key.name).within(&key.namespace))
                .map(|o| o.to_live())
        }
        match key.kind {
            Kind::LimitRange => lookup(&self.limit_ranges, key),
            Kind::ResourceQuota => lookup(&self.quotas, key),
            Kind::PodDisruptionBudget => lookup(&self.pdbs, key),
            // The class cache holds every class: only Tenantry's are managed objects.
            Kind::StorageClass => self
                .storage_classes
                .get(&ObjectRef::new(&key.name))
                .map(|c| live_of_class(c.as_ref()))
                .filter(Live::is_tenantry_managed),
        }
    }

    fn labelled_for(
        &self,
        policy: &str,
        keep: &dyn Fn(Kind, &str, &str) -> bool,
    ) -> Vec<ObjectKey> {
        let mut keys = Vec::new();
        labelled_keys(&self.limit_ranges, policy, keep, &mut keys);
        labelled_keys(&self.quotas, policy, keep, &mut keys);
        labelled_keys(&self.pdbs, policy, keep, &mut keys);
        for class in self.storage_classes.state() {
            let name = class.metadata.name.as_deref().unwrap_or_default();
            let labels = class.metadata.labels.as_ref();
            if labels.and_then(|l| l.get(POLICY_LABEL)).map(String::as_str) == Some(policy)
                && is_tenantry_class(&class)
                && keep(Kind::StorageClass, "", name)
            {
                keys.push(ObjectKey {
                    kind: Kind::StorageClass,
                    namespace: String::new(),
                    name: name.to_owned(),
                });
            }
        }
        keys
    }

    fn converged(&self, key: &ObjectKey, owner: &Owner, fingerprint: u64) -> Option<bool> {
        fn check<K: ManagedResource>(
            store: &Store<Cached<K>>,
            key: &ObjectKey,
            owner: &Owner,
            fingerprint: u64,
        ) -> Option<bool> {
            let object = store.get(&ObjectRef::new(&key.name).within(&key.namespace))?;
            Some(object.converged(owner, fingerprint))
        }
        match key.kind {
            Kind::LimitRange => check(&self.limit_ranges, key, owner, fingerprint),
            Kind::ResourceQuota => check(&self.quotas, key, owner, fingerprint),
            Kind::PodDisruptionBudget => check(&self.pdbs, key, owner, fingerprint),
            // Few, compared in full.
            Kind::StorageClass => None,
        }
    }
}

impl Stores {
    /// Names of the cluster's StorageClasses (those not being deleted).
    fn cluster_classes(&self) -> BTreeSet<String> {
        self.storage_classes
            .state()
            .iter()
            .filter(|c| c.metadata.deletion_timestamp.is_none())
            .filter_map(|c| c.metadata.name.clone())
            .collect()
    }

    fn count_managed(&self, metrics: &Metrics) {
        for (kind, count) in [
            (Kind::LimitRange, self.limit_ranges.len()),
            (Kind::ResourceQuota, self.quotas.len()),
            (Kind::PodDisruptionBudget, self.pdbs.len()),
            (
                Kind::StorageClass,
                self.storage_classes
                    .state()
                    .iter()
                    .filter(|c| is_tenantry_class(c))
                    .count(),
            ),
        ] {
            metrics
                .managed_objects
                .get_or_create(&KindLabels {
                    kind: kind.to_string(),
                })
                .set(count as i64);
        }
    }
}

fn labelled_keys<K: ManagedResource>(
    store: &Store<Cached<K>>,
    policy: &str,
    keep: &dyn Fn(Kind, &str, &str) -> bool,
    out: &mut Vec<ObjectKey>,
) {
    for object in store.state() {
        if object.policy() == Some(policy) && keep(K::KIND, &object.namespace, &object.name) {
            out.push(object.key());
        }
    }
}

/// What the controller remembers of one policy between reconciles (lost on restart, by design:
/// it only refines Events and spares API reads).
#[derive(Default)]
struct PolicyMemory {
    /// The generation whose built objects passed the API server's dry run.
    validated: Mutex<Option<i64>>,
    /// Fingerprints of the keys seen converged, at that generation.
    converged: Mutex<(Option<i64>, HashSet<u64>)>,
    not_owned: NotOwned,
    reported: Mutex<Reported>,
    /// Consecutive reconciles that failed or left transient failures: the retry backs off.
    failures_in_a_row: std::sync::atomic::AtomicU32,
}

impl PolicyMemory {
    /// Records the spec problem being reported; true when it differs from the last one (so one
    /// Warning Event is published per distinct problem).
    fn report_invalid(&self, problem: &str) -> bool {
        let mut reported = self.reported.lock().expect("not poisoned");
        let changed = reported.invalid.as_deref() != Some(problem);
        reported.invalid = Some(problem.to_owned());
        changed
    }

    /// 1 s, 2 s, 4 s ... up to 5 minutes, growing with each consecutive failure.
    fn backoff(&self) -> Duration {
        let n = self
            .failures_in_a_row
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Duration::from_secs(1u64 << n.min(8)).min(RESYNC)
    }
}

/// What was last said in Events, so that a persisting problem is not repeated every reconcile.
#[derive(Default, PartialEq)]
struct Reported {
    failures: BTreeSet<(String, String)>,
    shadowed: usize,
    invalid: Option<String>,
}

pub struct Context {
    pub client: Client,
    pub stores: Stores,
    pub applier: Applier,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub synced: Arc<Synced>,
    memory: Mutex<HashMap<String, Arc<PolicyMemory>>>,
}

impl Context {
    fn memory(&self, policy: &str) -> Arc<PolicyMemory> {
        self.memory
            .lock()
            .expect("not poisoned")
            .entry(policy.to_owned())
            .or_default()
            .clone()
    }

    async fn publish(
        &self,
        policy: &(impl Resource<DynamicType = ()> + Sync),
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        self.publish_about(policy, type_, reason, note, None).await
    }

    /// An Event about the policy; `related` names the one object concerned, which also keeps
    /// the Recorder from folding it into the series of an Event about another object.
    async fn publish_about(
        &self,
        policy: &(impl Resource<DynamicType = ()> + Sync),
        type_: EventType,
        reason: &str,
        note: String,
        related: Option<&ObjectKey>,
    ) {
        if !self.applier.may_write() {
            return;
        }
        self.metrics.count_write("event", "Event");
        let secondary = related.map(|k| ObjectReference {
            api_version: Some(k.kind.api_version().into()),
            kind: Some(k.kind.to_string()),
            namespace: k.kind.is_namespaced().then(|| k.namespace.clone()),
            name: Some(k.name.clone()),
            ..Default::default()
        });
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(truncate(note, 1000)),
            action: reason.into(),
            secondary,
        };
        if let Err(e) = self.recorder.publish(&event, &policy.object_ref(&())).await {
            warn!(policy = %policy.name_any(), error = %e, "could not publish Event");
        }
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max - 3;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// Lists up to five keys with a note, then how many more.
fn listing<'a>(items: impl Iterator<Item = (&'a ObjectKey, String)>) -> String {
    let items: Vec<String> = items.map(|(k, note)| format!("{k}{note}")).collect();
    let mut text = items.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if items.len() > 5 {
        text.push_str(&format!(" and {} more", items.len() - 5));
    }
    text
}

pub async fn reconcile(guard: Arc<Guarded>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    ctx.synced.wait().await?;
    let policy = match &guard.0 {
        Ok(policy) => Arc::new(policy.clone()),
        Err(invalid) => return unreadable(&guard, invalid, &ctx).await,
    };
    let started = Instant::now();
    ctx.metrics.reconciles.inc();
    let api: Api<TenantPolicy> = Api::all(ctx.client.clone());
    let has_finalizer = policy.finalizers().iter().any(|f| f == FINALIZER);
    if has_finalizer == policy.meta().deletion_timestamp.is_some() {
        ctx.metrics.count_write("finalizer", "TenantPolicy");
    }
    let result = finalizer(&api, FINALIZER, policy, |event| async {
        match event {
            FinalizerEvent::Apply(p) => apply_policy(p, ctx.clone()).await,
            FinalizerEvent::Cleanup(p) => cleanup_policy(p, ctx.clone()).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    ctx.stores.count_managed(&ctx.metrics);
    result
}

pub fn error_policy(policy: Arc<Guarded>, error: &Error, ctx: Arc<Context>) -> Requeue {
    warn!(policy = %policy.name_any(), %error, "reconcile failed");
    ctx.metrics
        .reconcile_errors
        .get_or_create(&ErrorLabels {
            reason: error.metric_label().into(),
        })
        .inc();
    Requeue::requeue(ctx.memory(&policy.name_any()).backoff())
}

fn owner_of(policy: &TenantPolicy) -> Owner {
    Owner {
        name: policy.name_any(),
        uid: policy.uid().unwrap_or_default(),
    }
}

async fn apply_policy(policy: Arc<TenantPolicy>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    let owner = owner_of(&policy);
    let memory = ctx.memory(&owner.name);
    let generation = policy.meta().generation;
    let all = ctx.stores.policies.state();

    // Every live policy takes part in overlaps; this one with the spec being reconciled.
    let mut candidates = Vec::new();
    for p in all
        .iter()
        .filter_map(|g| g.0.as_ref().ok())
        .filter(|p| p.meta().deletion_timestamp.is_none() && p.name_any() != owner.name)
    {
        if let Ok(c) = Candidate::new(p.meta().name.as_deref().unwrap_or_default(), &p.spec) {
            candidates.push(c);
        }
    }
    let mut summary = Summary {
        generation,
        ..Default::default()
    };
    if let Err(problem) = validate::validate(&owner.name, &policy.spec) {
        return stall_invalid(&policy, &ctx, &memory, summary, problem).await;
    }
    candidates.push(Candidate::new(&owner.name, &policy.spec).expect("validated"));
    let me = candidates.last().expect("this policy was just added");
    let snapshot = ctx.stores.namespaces.state();
    let namespaces: Vec<NamespaceInfo> = snapshot
        .iter()
        .map(|ns| NamespaceInfo {
            name: std::borrow::Cow::Borrowed(&ns.name),
            labels: std::borrow::Cow::Borrowed(&ns.labels),
            terminating: ns.terminating,
        })
        .collect();
    let mut assignment =
        select::assign(me, &candidates, &namespaces, &ctx.stores.cluster_classes());
    // Whatever the API server would refuse in the built objects, found before any namespace is
    // touched: once per generation (not again after a restart that finds it already reconciled).
    let validated = *memory.validated.lock().expect("not poisoned") == generation
        || policy.status.as_ref().is_some_and(|s| {
            s.observed_generation == generation
                && s.conditions
                    .iter()
                    .any(|c| c.type_ == status::STALLED && c.reason != "InvalidSpec")
        });
    if !validated {
        if let Err(problem) = ctx.applier.dry_run(&owner, &assignment.desired).await {
            return stall_invalid(&policy, &ctx, &memory, summary, problem).await;
        }
        *memory.validated.lock().expect("not poisoned") = generation;
    }
    memory.reported.lock().expect("not poisoned").invalid = None;
    let known_converged = {
        let converged = memory.converged.lock().expect("not poisoned");
        if converged.0 == generation {
            converged.1.clone()
        } else {
            HashSet::new()
        }
    };
    let diff::Plan {
        actions,
        converged: already,
        waiting,
    } = diff::plan(
        &owner,
        &assignment.desired,
        &ctx.stores,
        &assignment.handed_over,
        policy.spec.deletion_policy,
        &known_converged,
    );
    drop(known_converged);
    // The actions hold what they need of it: free it before the writes (4 objects a namespace).
    assignment.desired = Vec::new();
    let drift: HashMap<ObjectKey, diff::Drift> = actions
        .iter()
        .filter_map(|a| a.drift().map(|d| (a.key().clone(), d.clone())))
        .collect();
    let recreations: HashMap<ObjectKey, Vec<&'static str>> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Recreate {
                desired, changed, ..
            } => Some((desired.key.clone(), changed.clone())),
            _ => None,
        })
        .collect();
    let outcomes = if actions.is_empty() {
        Vec::new()
    } else {
        ctx.applier
            .execute(&owner, actions, &memory.not_owned)
            .await
    };

    summary.selected = std::mem::take(&mut assignment.selected);
    summary.shadowed = assignment.shadowed.clone();
    summary.shadowed_classes = assignment.shadowed_classes.clone();
    let mut pending_classes: BTreeSet<String> = waiting
        .iter()
        .filter(|k| k.kind == Kind::StorageClass)
        .map(|k| k.name.clone())
        .collect();
    summary
        .waiting
        .extend(waiting.iter().map(|k| k.namespace.clone()));
    let mut converged: HashSet<u64> = already.into_iter().collect();
    // Keys borrowed from the outcomes: no copy per object written.
    let (mut applied, mut corrected, mut recreated, mut pruned, mut released, mut retry) =
        (Vec::new(), Vec::new(), Vec::new(), 0, 0, false);
    for outcome in &outcomes {
        match outcome {
            Outcome::Created(k) | Outcome::Updated(k) => {
                if let Some(d) = drift.get(k) {
                    ctx.metrics
                        .drift_corrections
                        .get_or_create(&KindLabels {
                            kind: k.kind.to_string(),
                        })
                        .inc();
                    corrected.push((k, d));
                } else {
                    applied.push(k);
                }
                converged.insert(k.fingerprint());
            }
            Outcome::Recreated(k) => {
                converged.insert(k.fingerprint());
                recreated.push(k);
            }
            Outcome::Deleted(_) => pruned += 1,
            Outcome::Released(_) => released += 1,
            Outcome::Retry(k) => {
                retry = true;
                if k.kind == Kind::StorageClass {
                    pending_classes.insert(k.name.clone());
                }
                if summary.selected.contains(&k.namespace) {
                    summary.waiting.insert(k.namespace.clone());
                }
            }
            Outcome::Failed(f) => summary.failures.push(f.as_ref().clone()),
        }
    }
    *memory.converged.lock().expect("not poisoned") = (generation, converged);
    let declared_classes: Vec<String> = policy
        .spec
        .storage
        .iter()
        .flat_map(|s| s.classes.iter().map(|c| c.name.clone()))
        .collect();
    summary.storage_classes = status::class_states(
        &declared_classes,
        &summary.shadowed_classes,
        &summary.failures,
        &pending_classes,
    );

    // Events: one summary per kind of happening, not one per object.
    if !corrected.is_empty() {
        let note = listing(corrected.iter().map(|&(k, d)| {
            let how = match (&d.changed_by, d.deleted) {
                (_, true) => " (deleted)".to_owned(),
                (Some(by), false) => format!(" (changed by {by})"),
                (None, false) => " (changed)".to_owned(),
            };
            (k, how)
        }));
        let single = (corrected.len() == 1).then(|| corrected[0].0);
        let note = format!(
            "restored {} objects changed outside Tenantry: {note}",
            corrected.len()
        );
        ctx.publish_about(
            policy.as_ref(),
            EventType::Warning,
            "DriftCorrected",
            note,
            single,
        )
        .await;
    }
    for key in &recreated {
        let changed = recreations
            .get(key)
            .map(|c| c.join(", "))
            .unwrap_or_default();
        let note = format!(
            "{key} deleted and created anew: {changed} changed, which Kubernetes does not allow to update in place; existing PersistentVolumes are unaffected"
        );
        ctx.publish_about(
            policy.as_ref(),
            EventType::Normal,
            "Recreated",
            note,
            Some(key),
        )
        .await;
    }
    if !applied.is_empty() {
        let namespaces: BTreeSet<&str> = applied.iter().map(|k| k.namespace.as_str()).collect();
        let note = format!(
            "applied {} objects in {} namespaces: {}",
            applied.len(),
            namespaces.len(),
            listing(applied.iter().map(|k| (*k, String::new())))
        );
        ctx.publish(policy.as_ref(), EventType::Normal, "Applied", note)
            .await;
    }
    if pruned > 0 {
        ctx.publish(
            policy.as_ref(),
            EventType::Normal,
            "Pruned",
            format!("deleted {pruned} objects no longer governed by this policy"),
        )
        .await;
    }
    if released > 0 {
        ctx.publish(policy.as_ref(), EventType::Normal, "Released", format!("released {released} objects no longer governed by this policy (deletionPolicy Retain)")).await;
    }
    let (new_failures, shadow_changed) = {
        let mut reported = memory.reported.lock().expect("not poisoned");
        let failures: BTreeSet<(String, String)> = summary
            .failures
            .iter()
            .map(|f| {
                (
                    format!("{}/{}/{}", f.namespace, f.kind, f.name),
                    f.reason.clone(),
                )
            })
            .collect();
        let new: Vec<(String, String)> = failures.difference(&reported.failures).cloned().collect();
        reported.failures = failures;
        let shadowed = summary.shadowed.len() + summary.shadowed_classes.len();
        let shadow_changed = reported.shadowed != shadowed;
        reported.shadowed = shadowed;
        (new, shadow_changed)
    };
    if !new_failures.is_empty() {
        let not_owned: Vec<&str> = new_failures
            .iter()
            .filter(|(_, r)| r == "NotOwned")
            .map(|(k, _)| k.as_str())
            .collect();
        if !not_owned.is_empty() {
            let more = if not_owned.len() > 5 {
                format!(" and {} more", not_owned.len() - 5)
            } else {
                String::new()
            };
            let note = format!(
                "left untouched {} existing objects not managed by Tenantry: {}{more}",
                not_owned.len(),
                not_owned
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            ctx.publish(policy.as_ref(), EventType::Warning, "NotOwned", note)
                .await;
        }
        let others: Vec<String> = new_failures
            .iter()
            .filter(|(_, r)| r != "NotOwned")
            .map(|(k, r)| format!("{k} ({r})"))
            .collect();
        if !others.is_empty() {
            ctx.publish(
                policy.as_ref(),
                EventType::Warning,
                "ApplyFailed",
                format!(
                    "could not write {} objects: {}",
                    others.len(),
                    others.join(", ")
                ),
            )
            .await;
        }
    }
    if shadow_changed && !summary.shadowed_classes.is_empty() {
        let note = format!(
            "StorageClasses owned by higher-precedence policies, left to them: {}",
            summary
                .shadowed_classes
                .iter()
                .map(|c| format!("{} (owned by {})", c.name, c.winner))
                .collect::<Vec<_>>()
                .join(", ")
        );
        ctx.publish(policy.as_ref(), EventType::Normal, "ClassShadowed", note)
            .await;
    }
    if shadow_changed && !summary.shadowed.is_empty() {
        let winners: BTreeSet<&str> = summary.shadowed.iter().map(|s| s.winner.as_str()).collect();
        let namespaces: BTreeSet<&str> = summary
            .shadowed
            .iter()
            .map(|s| s.namespace.as_str())
            .collect();
        let note = format!(
            "{} kinds in {} namespaces are won by higher-precedence policies ({}); this policy leaves them alone there",
            summary.shadowed.len(),
            namespaces.len(),
            winners.into_iter().collect::<Vec<_>>().join(", ")
        );
        ctx.publish(policy.as_ref(), EventType::Normal, "Shadowed", note)
            .await;
    }

    // A retry comes within a second; writing the in-between state would only make status flap.
    if !retry {
        write_status(&policy, &summary, &ctx).await?;
    }

    let transient_failure = summary
        .failures
        .iter()
        .any(|f| !status::TERMINAL_REASONS.contains(&f.reason.as_str()));
    if !transient_failure {
        memory
            .failures_in_a_row
            .store(0, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(if retry || !summary.waiting.is_empty() {
        Requeue::requeue(Duration::from_secs(1))
    } else if transient_failure {
        Requeue::requeue(memory.backoff())
    } else if !summary.failures.is_empty() {
        Requeue::requeue(NOT_OWNED_RECHECK)
    } else {
        Requeue::requeue(RESYNC)
    })
}

/// The stored policy does not deserialize into this version's types: report it on the policy
/// (status and one Warning Event per distinct problem) and leave everything as it is.
async fn unreadable(
    guard: &Guarded,
    invalid: &kube::core::error_boundary::InvalidObject,
    ctx: &Context,
) -> Result<Requeue, Error> {
    let name = guard.name_any();
    let memory = ctx.memory(&name);
    let problem = format!(
        "the stored policy cannot be read by this version of Tenantry: {}",
        invalid.error
    );
    let changed = memory.report_invalid(&problem);
    if changed {
        warn!(policy = %name, error = %invalid.error, "policy cannot be read");
        ctx.publish(guard, EventType::Warning, "InvalidSpec", problem.clone())
            .await;
        let summary = Summary {
            generation: invalid.metadata.generation,
            invalid_spec: Some(problem),
            ..Default::default()
        };
        let status = status::compute(&summary, None, Time(k8s_openapi::jiff::Timestamp::now()));
        ctx.applier
            .patch_status(&name, &status)
            .await
            .map_err(Error::Status)?;
    }
    Ok(Requeue::await_change())
}

/// The spec cannot be applied: say so (status Stalled/InvalidSpec, one Warning Event per distinct
/// problem) and touch nothing until the spec changes.
async fn stall_invalid(
    policy: &TenantPolicy,
    ctx: &Context,
    memory: &PolicyMemory,
    mut summary: Summary,
    problem: String,
) -> Result<Requeue, Error> {
    let changed = memory.report_invalid(&problem);
    if changed {
        ctx.publish(policy, EventType::Warning, "InvalidSpec", problem.clone())
            .await;
    }
    summary.invalid_spec = Some(problem);
    write_status(policy, &summary, ctx).await?;
    Ok(Requeue::await_change())
}

async fn write_status(
    policy: &TenantPolicy,
    summary: &Summary,
    ctx: &Context,
) -> Result<(), Error> {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let status = status::compute(summary, policy.status.as_ref(), now);
    if policy.status.as_ref() != Some(&status) {
        ctx.applier
            .patch_status(&policy.name_any(), &status)
            .await
            .map_err(Error::Status)?;
    }
    Ok(())
}

/// The policy is being deleted: Retain releases every object it owns; Delete leaves them to the
/// garbage collector (they carry its controller ownerReference).
async fn cleanup_policy(policy: Arc<TenantPolicy>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    let owner = owner_of(&policy);
    let owned = ctx.stores.labelled_for(&owner.name, &|_, _, _| true).len();
    match policy.spec.deletion_policy {
        DeletionPolicy::Retain => {
            let actions: Vec<Action> = diff::release_all(&owner, &ctx.stores);
            let memory = ctx.memory(&owner.name);
            let outcomes = ctx
                .applier
                .execute(&owner, actions, &memory.not_owned)
                .await;
            let left = outcomes
                .iter()
                .filter(|o| !matches!(o, Outcome::Released(_)))
                .count();
            if left > 0 {
                return Err(Error::ReleaseIncomplete(left));
            }
            ctx.publish(
                policy.as_ref(),
                EventType::Normal,
                "Released",
                format!("policy deleted: released {owned} objects (deletionPolicy Retain)"),
            )
            .await;
        }
        DeletionPolicy::Delete => {
            ctx.publish(policy.as_ref(), EventType::Normal, "Deleting", format!("policy deleted: {owned} objects are removed by the garbage collector (deletionPolicy Delete)")).await;
        }
    }
    ctx.memory.lock().expect("not poisoned").remove(&owner.name);
    info!(policy = %owner.name, "policy cleaned up");
    Ok(Requeue::await_change())
}

fn fingerprint(parts: impl Hash) -> u64 {
    let mut hasher = DefaultHasher::new();
    parts.hash(&mut hasher);
    hasher.finish()
}

/// Objects from a watch whose `fingerprint` changed, and every deletion; `listed` runs when a
/// (re)list is complete and in the cache.
fn changes<K: Resource + Clone + Send + 'static>(
    events: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    fingerprint: impl Fn(&K) -> u64 + Send + 'static,
    mut listed: impl FnMut() + Send + 'static,
    forget: impl Fn(&K) + Send + 'static,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static {
    let mut seen: HashMap<String, u64> = HashMap::new();
    events.filter_map(move |event| {
        let passed = match event {
            Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                let uid = o.meta().uid.clone().unwrap_or_default();
                let print = fingerprint(&o);
                (seen.insert(uid, print) != Some(print)).then_some(Ok(o))
            }
            Ok(watcher::Event::Delete(o)) => {
                seen.remove(o.meta().uid.as_deref().unwrap_or_default());
                forget(&o);
                Some(Ok(o))
            }
            Ok(watcher::Event::InitDone) => {
                listed();
                None
            }
            Ok(watcher::Event::Init) => None,
            Err(e) => Some(Err(e)),
        };
        future::ready(passed)
    })
}

/// What, of a managed object, makes its change worth a reconcile: its spec (as a fingerprint),
/// labels, owners, and whether it is being deleted.
fn worth_a_reconcile(
    spec_print: u64,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> u64 {
    let owners: Vec<&str> = meta
        .owner_references
        .iter()
        .flatten()
        .map(|r| r.uid.as_str())
        .collect();
    fingerprint((
        spec_print,
        &meta.labels,
        owners,
        meta.deletion_timestamp.is_some(),
    ))
}

/// The class cache holds every class; only those labelled managed-by=tenantry are ours.
fn is_tenantry_class(class: &StorageClass) -> bool {
    class
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(crate::api::MANAGED_BY_LABEL))
        .map(String::as_str)
        == Some(crate::api::MANAGED_BY_VALUE)
}

/// A watch of every StorageClass, cached; each change triggers every policy.
fn class_watch(
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
    .modify(|c: &mut StorageClass| crate::resources::strip_metadata(&mut c.metadata))
    .reflect(writer);
    let stream = changes(
        events,
        |c: &StorageClass| {
            let spec = crate::resources::storage_class::spec_of(c).to_string();
            worth_a_reconcile(fingerprint(spec), &c.metadata)
        },
        listed,
        |_| {},
    );
    (store, trigger_all(stream, all, "StorageClass"))
}

/// Drives a watch whose every change triggers all policies (namespaces, StorageClasses).
fn trigger_all<K>(
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

/// The policy a managed object's change concerns: the one named in its label.
fn policy_of<K: ManagedResource>(
    change: Result<Cached<K>, watcher::Error>,
) -> future::Ready<Option<ObjectRef<Guarded>>> {
    future::ready(match change {
        Ok(object) => object.policy().map(ObjectRef::new),
        Err(e) => {
            warn!(kind = %K::KIND, error = %e, "managed-object watch failed; retrying with backoff");
            None
        }
    })
}

/// Runs the controller until SIGTERM or Ctrl-C.
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    leadership: Arc<Leadership>,
) -> anyhow::Result<()> {
    // Policy changes (spec, finalizers, deletion) and namespace changes (labels, deletion) can
    // move overlaps anywhere, so they trigger every policy; policies are few.
    let (all_tx, all_rx) = mpsc::unbounded_channel::<()>();
    let synced = Synced::new(6);

    let mut policy_config = watcher::Config::default();
    if let Some(selector) = &settings.policy_selector {
        policy_config = policy_config.labels(selector);
    }
    let (policies, policy_writer) = reflector::store();
    let policy_events = watcher(Api::<Guarded>::all(client.clone()), policy_config)
        .default_backoff()
        .modify(|p| p.managed_fields_mut().clear())
        .reflect(policy_writer);
    let policy_tx = all_tx.clone();
    let policy_stream = changes(
        policy_events,
        |p: &Guarded| {
            fingerprint((
                p.meta().generation,
                p.finalizers(),
                p.meta().deletion_timestamp.is_some(),
            ))
        },
        on_listed(&synced, &all_tx),
        |_| {},
    )
    .inspect(move |_| {
        let _ = policy_tx.send(());
    });

    let (namespaces, ns_stream) = cache::watch(
        Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
        watcher::Config::default(),
        on_listed(&synced, &all_tx),
    );
    let ns_stream = trigger_all(ns_stream, all_tx.clone(), "namespace");

    let managed = || watcher::Config::default().labels(MANAGED_SELECTOR);
    let (limit_ranges, lr_stream) = cache::watch(
        Api::<LimitRange>::all(client.clone()),
        managed(),
        on_listed(&synced, &all_tx),
    );
    let (quotas, rq_stream) = cache::watch(
        Api::<ResourceQuota>::all(client.clone()),
        managed(),
        on_listed(&synced, &all_tx),
    );
    let (pdbs, pdb_stream) = cache::watch(
        Api::<PodDisruptionBudget>::all(client.clone()),
        managed(),
        on_listed(&synced, &all_tx),
    );
    let (storage_classes, sc_stream) =
        class_watch(&client, on_listed(&synced, &all_tx), all_tx.clone());
    // StorageClasses are few; any change (a class created or deleted changes the allow-list
    // quotas, an owned class drifted) triggers every policy.
    tokio::spawn(sc_stream);
    drop(all_tx);

    let stores = Stores {
        policies: policies.clone(),
        namespaces,
        limit_ranges,
        quotas,
        pdbs,
        storage_classes,
    };
    let reporter = Reporter {
        controller: "tenantry".into(),
        instance: settings.instance.clone(),
    };
    let ctx = Arc::new(Context {
        client: client.clone(),
        stores: stores.clone(),
        applier: Applier::new(
            client.clone(),
            metrics.clone(),
            settings.write_concurrency,
            leadership,
        ),
        recorder: Recorder::new(client.clone(), reporter),
        metrics: metrics.clone(),
        synced: synced.clone(),
        memory: Mutex::new(HashMap::new()),
    });

    let ready_metrics = metrics.clone();
    let ready_synced = synced.clone();
    tokio::spawn(async move {
        if ready_synced.wait().await.is_ok() {
            info!("caches synced");
            ready_metrics.set_ready(true);
        }
    });
    // The namespace stream only feeds its cache and the all-policies trigger.
    tokio::spawn(ns_stream);

    let all_trigger = futures::stream::unfold(all_rx, |mut rx| async move {
        rx.recv().await?;
        // Coalesce a burst (a relist, many namespaces at once) into one trigger.
        while rx.try_recv().is_ok() {}
        Some(((), rx))
    });

    Controller::for_stream(policy_stream, policies)
        .with_config(ControllerConfig::default().concurrency(settings.reconcile_concurrency))
        .reconcile_on(lr_stream.filter_map(policy_of))
        .reconcile_on(rq_stream.filter_map(policy_of))
        .reconcile_on(pdb_stream.filter_map(policy_of))
        .reconcile_all_on(all_trigger)
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
