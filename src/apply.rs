//! The one place that writes to the API server: managed objects (create, server-side apply,
//! guarded merge patch, delete, release), the policy's status and finalizer, Events, and the
//! server-side dry runs of what a policy builds. Every write is counted, and fenced: none is sent
//! unless this process holds leadership ([`Leadership::holds`]). The one other writer is the
//! leader election itself (`leader.rs`), whose Lease write is what leadership is.
//!
//! Creation is a POST, never an apply: a POST fails when an object of that name exists, so an
//! object Tenantry does not own is never taken by accident, even if it appeared after the cache
//! last looked. Such an object is read and adopted only as `spec.adoptionPolicy` allows
//! ([`crate::adoption::decide`]), by a merge patch guarded by the uid and resourceVersion read.
//! Updates carry the live uid (apply) or resourceVersion (merge patch, delete) as a precondition,
//! so they never land on an object other than the one the diff saw.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryFuture};
use k8s_openapi::api::core::v1::{LimitRange, ObjectReference, ResourceQuota};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams, Preconditions};
use kube::core::ApiResource;
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{self, Event as FinalizerEvent};
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};
use tracing::warn;

use crate::adoption::{self, Decision, Existing};
use crate::api::{
    AdoptionPolicy, FIELD_MANAGER, Failure, FailureReason, TenantPolicy, TenantPolicyStatus,
    is_managed,
};
use crate::cache::own_writes::OwnWrites;
use crate::diff::{Action, Drift};
use crate::leader::Leadership;
use crate::metrics::Metrics;
use crate::report::{EventNote, Severity};
use crate::resources::{Desired, Kind, Live, ObjectKey, Owner, policy_field};

/// Finalizer that lets Tenantry carry out deletionPolicy before a policy goes.
pub const FINALIZER: &str = "tenantry.io/cleanup";

/// Where the dry run places the namespaced objects a policy builds: `default`, because the API
/// server itself keeps it in existence in every cluster (deleted, it is created anew), whereas
/// `tenantry-system` exists only where Tenantry was installed by its manifests, not where it runs
/// from a laptop or another namespace. A dry run stores nothing, so nothing lands there.
pub const DRY_RUN_NAMESPACE: &str = "default";

/// How long an object found not owned is reported from memory before it is looked at again.
pub const NOT_OWNED_RECHECK: Duration = Duration::from_secs(20);

/// Objects found to exist without Tenantry's labels and not adopted: when that was last
/// checked, and what it was judged against (a new adoptionPolicy or spec is judged anew at once).
pub type NotOwned = Mutex<HashMap<ObjectKey, NotOwnedEntry>>;

#[derive(Clone, Debug)]
pub struct NotOwnedEntry {
    pub checked: Instant,
    pub adoption: AdoptionPolicy,
    /// The fingerprint of the declared spec it was judged against.
    pub fingerprint: u64,
    /// Why it was not adopted (kept so the failure reads the same until it is looked at again).
    pub why: String,
}

/// How the writer treats existing objects of declared names it does not own.
#[derive(Clone, Copy, Debug)]
pub struct Taking<'a> {
    pub adoption: AdoptionPolicy,
    pub memory: &'a NotOwned,
}

/// What became of one action.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Created or updated; `drift` when it undid a change made outside Tenantry.
    Written {
        key: ObjectKey,
        drift: Option<Box<Drift>>,
    },
    /// Deleted and created anew (a StorageClass whose immutable fields changed, named).
    Recreated {
        key: ObjectKey,
        changed: Vec<&'static str>,
    },
    /// An existing object of a declared name taken under the policy (adoptionPolicy), with the
    /// declared fields its spec had to change to (none when it was already as declared).
    Adopted {
        key: ObjectKey,
        changed: Vec<String>,
    },
    Deleted(ObjectKey),
    Released(ObjectKey),
    /// Not done yet, nothing wrong: the cache is behind, or the object changed under us.
    Retry(ObjectKey),
    /// Boxed: outcomes are collected for every action, and failures are rare.
    Failed(Box<Failure>),
}

impl Outcome {
    pub fn key(&self) -> Option<&ObjectKey> {
        match self {
            Outcome::Written { key, .. }
            | Outcome::Recreated { key, .. }
            | Outcome::Adopted { key, .. } => Some(key),
            Outcome::Deleted(key) | Outcome::Released(key) | Outcome::Retry(key) => Some(key),
            Outcome::Failed(_) => None,
        }
    }
}

pub struct Writer {
    client: Client,
    metrics: Arc<Metrics>,
    /// Where each write's resourceVersion is recorded, for the next reconcile to wait for.
    own_writes: Arc<OwnWrites>,
    concurrency: usize,
    leadership: Arc<Leadership>,
    recorder: Recorder,
}

fn api_resource(kind: Kind) -> ApiResource {
    match kind {
        Kind::LimitRange => ApiResource::erase::<LimitRange>(&()),
        Kind::ResourceQuota => ApiResource::erase::<ResourceQuota>(&()),
        Kind::PodDisruptionBudget => ApiResource::erase::<PodDisruptionBudget>(&()),
        Kind::StorageClass => ApiResource::erase::<StorageClass>(&()),
    }
}

fn failure(key: &ObjectKey, reason: FailureReason, message: impl Into<String>) -> Outcome {
    Outcome::Failed(Box::new(Failure {
        namespace: key.namespace.clone(),
        kind: key.kind.to_string(),
        name: key.name.clone(),
        reason,
        message: message.into(),
    }))
}

fn not_owned(key: &ObjectKey, why: &str) -> Outcome {
    failure(
        key,
        FailureReason::NotOwned,
        format!(
            "a {} of this name exists without Tenantry's labels and owner; it is left untouched (not adopted: {why})",
            key.kind
        ),
    )
}

/// A ValidatingAdmissionPolicy or admission webhook refused the request (they answer 422 or 403).
fn is_admission_refusal(status: &kube::core::Status) -> bool {
    status.message.contains("denied request") || status.message.contains("admission webhook")
}

/// Maps an API error to an outcome: conflicts and races retry, the rest are reported.
fn classify(key: &ObjectKey, error: kube::Error) -> Outcome {
    // Each retry costs the policy a second (`SOON`): worth seeing when latency is looked into.
    tracing::debug!(kind = %key.kind, namespace = %key.namespace, name = %key.name, %error, "write not done");
    match &error {
        kube::Error::Api(s) if s.code == 409 || s.code == 404 => Outcome::Retry(key.clone()),
        // Creating in a namespace that has just started terminating.
        kube::Error::Api(s) if s.code == 403 && s.message.contains("being terminated") => {
            Outcome::Retry(key.clone())
        }
        // An admission policy or webhook refused the write: not a problem of the spec, and it may
        // be lifted, so it is retried with backoff (ValidatingAdmissionPolicies answer 422 or 403).
        kube::Error::Api(s) if is_admission_refusal(s) => {
            failure(key, FailureReason::AdmissionRefused, s.message.clone())
        }
        kube::Error::Api(s) if s.code == 403 => {
            failure(key, FailureReason::Forbidden, s.message.clone())
        }
        kube::Error::Api(s) if s.code == 422 || s.code == 400 => {
            failure(key, FailureReason::Invalid, s.message.clone())
        }
        other => failure(key, FailureReason::ApplyFailed, other.to_string()),
    }
}

fn dynamic(object: Value) -> DynamicObject {
    serde_json::from_value(object).expect("a built object is a valid DynamicObject")
}

impl Writer {
    /// `reporter` names this controller (and instance) in the Events it publishes.
    pub fn new(
        client: Client,
        metrics: Arc<Metrics>,
        concurrency: usize,
        leadership: Arc<Leadership>,
        reporter: Reporter,
        own_writes: Arc<OwnWrites>,
    ) -> Self {
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            own_writes,
            concurrency: concurrency.max(1),
            leadership,
        }
    }

    /// Fencing: false once this process no longer holds the leader lease.
    pub fn may_write(&self) -> bool {
        self.leadership.holds()
    }

    fn api(&self, key: &ObjectKey) -> Api<DynamicObject> {
        let resource = api_resource(key.kind);
        if key.kind.is_namespaced() {
            Api::namespaced_with(self.client.clone(), &key.namespace, &resource)
        } else {
            Api::all_with(self.client.clone(), &resource)
        }
    }

    /// Runs the actions concurrently (bounded), returning one outcome each.
    pub async fn execute(
        &self,
        owner: &Owner,
        actions: Vec<Action>,
        taking: Taking<'_>,
    ) -> Vec<Outcome> {
        futures::stream::iter(actions)
            .map(|action| self.one(owner, action, taking))
            .buffer_unordered(self.concurrency)
            .collect()
            .await
    }

    async fn one(&self, owner: &Owner, action: Action, taking: Taking<'_>) -> Outcome {
        let key = action.key().clone();
        if !self.may_write() {
            return Outcome::Retry(key);
        }
        let api = self.api(&key);
        let kind = key.kind.as_str();
        match action {
            Action::Create { desired, drift } => {
                let last_check = taking
                    .memory
                    .lock()
                    .expect("not poisoned")
                    .get(&key)
                    .cloned();
                if let Some(entry) = last_check {
                    let same_judgement = entry.adoption == taking.adoption
                        && entry.fingerprint == desired.fingerprint;
                    if same_judgement && entry.checked.elapsed() < NOT_OWNED_RECHECK {
                        return not_owned(&key, &entry.why);
                    }
                    match self.existing(&api, &desired, owner, taking).await {
                        Ok(Some(outcome)) => return outcome,
                        Ok(None) => {
                            taking.memory.lock().expect("not poisoned").remove(&key);
                        }
                        Err(e) => return classify(&key, e),
                    }
                }
                match self.create(&api, &desired, owner, taking).await {
                    Ok(()) => Outcome::Written { key, drift },
                    Err(outcome) => outcome,
                }
            }
            Action::Recreate {
                desired,
                live,
                changed,
            } => {
                if let Err(outcome) = self.delete(&api, &live).await {
                    return outcome;
                }
                match self.create(&api, &desired, owner, taking).await {
                    Ok(()) => Outcome::Recreated { key, changed },
                    Err(outcome) => outcome,
                }
            }
            Action::Apply {
                desired,
                uid,
                drift,
            } => {
                self.metrics.count_write("apply", kind);
                let mut object = desired.to_object(owner);
                object["metadata"]["uid"] = json!(uid);
                let params = PatchParams::apply(FIELD_MANAGER).force();
                match api.patch(&key.name, &params, &Patch::Apply(object)).await {
                    Ok(written) => {
                        self.wrote(&key, &written);
                        Outcome::Written { key, drift }
                    }
                    Err(e) => classify(&key, e),
                }
            }
            Action::Replace { patch, drift, .. } => {
                match self.merge_patch(&api, &key, patch).await {
                    Ok(()) => Outcome::Written { key, drift },
                    Err(e) => classify(&key, e),
                }
            }
            Action::Delete { live } => match self.delete(&api, &live).await {
                Ok(()) => Outcome::Deleted(key),
                Err(outcome) => outcome,
            },
            Action::Release { patch, .. } => match self.merge_patch(&api, &key, patch).await {
                Ok(()) => Outcome::Released(key),
                Err(kube::Error::Api(s)) if s.code == 404 => Outcome::Released(key),
                Err(e) => classify(&key, e),
            },
        }
    }

    /// POST: fails when an object of that name exists, which is then looked at (adopted or
    /// reported).
    async fn create(
        &self,
        api: &Api<DynamicObject>,
        desired: &Desired,
        owner: &Owner,
        taking: Taking<'_>,
    ) -> Result<(), Outcome> {
        let key = &desired.key;
        self.metrics.count_write("create", key.kind.as_str());
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        match api
            .create(&params, &dynamic(desired.to_object(owner)))
            .await
        {
            Ok(created) => {
                self.wrote(key, &created);
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 409 && s.reason == "AlreadyExists" => {
                Err(match self.existing(api, desired, owner, taking).await {
                    Ok(Some(outcome)) => outcome,
                    Ok(None) => Outcome::Retry(key.clone()), // deleted meanwhile: try again
                    Err(e) => classify(key, e),
                })
            }
            Err(e) => Err(classify(key, e)),
        }
    }

    /// DELETE on the condition that the object is still the one seen (uid and resourceVersion).
    async fn delete(&self, api: &Api<DynamicObject>, live: &Live) -> Result<(), Outcome> {
        self.metrics.count_write("delete", live.key.kind.as_str());
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(live.uid.clone()),
                resource_version: Some(live.resource_version.clone()),
            }),
            ..DeleteParams::background()
        };
        match api.delete(&live.key.name, &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(classify(&live.key, e)),
        }
    }

    /// What an existing object of this name means: Tenantry's with the cache behind (retry, and
    /// overlaps decide, never adoption); not Tenantry's: adopted as `spec.adoptionPolicy` allows
    /// (a merge patch guarded by the uid and resourceVersion just read), or reported and
    /// remembered so it is not looked at again before NOT_OWNED_RECHECK. `None` when there is none.
    async fn existing(
        &self,
        api: &Api<DynamicObject>,
        desired: &Desired,
        owner: &Owner,
        taking: Taking<'_>,
    ) -> Result<Option<Outcome>, kube::Error> {
        let key = &desired.key;
        let Some(object) = api.get_opt(&key.name).await? else {
            return Ok(None);
        };
        if is_tenantry_managed(&object) {
            return Ok(Some(Outcome::Retry(key.clone())));
        }
        let decision = match Existing::of(key.kind, &object) {
            Some(existing) => adoption::decide(taking.adoption, desired, &existing, owner),
            None => Decision::Refuse(format!("it does not read as a {}", key.kind)),
        };
        let memory = taking.memory;
        match decision {
            Decision::Adopt { patch, changed } => {
                memory.lock().expect("not poisoned").remove(key);
                Ok(Some(match self.merge_patch(api, key, patch).await {
                    Ok(()) => Outcome::Adopted {
                        key: key.clone(),
                        changed,
                    },
                    Err(e) => classify(key, e),
                }))
            }
            Decision::Refuse(why) => {
                let outcome = not_owned(key, &why);
                let entry = NotOwnedEntry {
                    checked: Instant::now(),
                    adoption: taking.adoption,
                    fingerprint: desired.fingerprint,
                    why,
                };
                memory
                    .lock()
                    .expect("not poisoned")
                    .insert(key.clone(), entry);
                Ok(Some(outcome))
            }
        }
    }

    /// A JSON merge patch as field manager `tenantry` (the patch carries its own precondition).
    async fn merge_patch(
        &self,
        api: &Api<DynamicObject>,
        key: &ObjectKey,
        patch: Value,
    ) -> Result<(), kube::Error> {
        self.metrics.count_write("patch", key.kind.as_str());
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        let patched = api.patch(&key.name, &params, &Patch::Merge(patch)).await?;
        self.wrote(key, &patched);
        Ok(())
    }

    fn wrote(&self, key: &ObjectKey, object: &DynamicObject) {
        let version = object.metadata.resource_version.as_deref();
        self.own_writes.wrote(key.kind, version);
    }

    /// Server-side dry run of each distinct object the policy builds (namespaced ones in
    /// [`DRY_RUN_NAMESPACE`]: see [`crate::resources::templates`]), so that anything the API
    /// server would refuse is found before any namespace is touched, and also when none is
    /// selected. Returns the refusal, naming the policy field it comes from.
    pub async fn dry_run(&self, owner: &Owner, desired: &[Desired]) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for d in desired
            .iter()
            .filter(|d| seen.insert((d.key.kind, d.key.name.clone())))
        {
            self.metrics.count_write("dryrun", d.key.kind.as_str());
            let params = PostParams {
                dry_run: true,
                field_manager: Some(FIELD_MANAGER.into()),
            };
            match self
                .api(&d.key)
                .create(&params, &dynamic(d.to_object(owner)))
                .await
            {
                Err(kube::Error::Api(s))
                    if (s.code == 422 || s.code == 400) && !is_admission_refusal(&s) =>
                {
                    // Extra labels mark a shared budget's part.
                    let field = if d.labels.is_some() {
                        "sharedQuotas"
                    } else {
                        policy_field(&d.key)
                    };
                    return Err(format!(
                        "spec.{}[name={}]: the API server refuses the {} this builds: {}",
                        field, d.key.name, d.key.kind, s.message
                    ));
                }
                // Accepted, or refused only because it exists (validation comes first), or an
                // error that says nothing about the spec (the real write reports those).
                _ => {}
            }
        }
        Ok(())
    }

    /// Sets the policy's status by server-side apply of the status subresource: Tenantry owns
    /// every status field, so a field it stops sending (an emptied failure list) is removed.
    pub async fn patch_status(
        &self,
        name: &str,
        status: &TenantPolicyStatus,
    ) -> Result<(), kube::Error> {
        if !self.may_write() {
            return Ok(());
        }
        self.metrics.count_write("status", "TenantPolicy");
        let api: Api<TenantPolicy> = Api::all(self.client.clone());
        let body =
            json!({"apiVersion": "tenantry.io/v1alpha1", "kind": "TenantPolicy", "status": status});
        api.patch_status(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(body),
        )
        .await
        .map(|_| ())
    }

    /// Publishes an Event about `regarding` (the policy). Events about a cluster-scoped object
    /// land in the `default` namespace. A failure to publish is logged, never fatal.
    pub async fn publish(&self, regarding: &ObjectReference, event: &EventNote) {
        if !self.may_write() {
            return;
        }
        self.metrics.count_write("event", "Event");
        // The related object also keeps the Recorder from folding this Event into the series
        // of an Event about another object.
        let secondary = event.related.as_ref().map(|k| ObjectReference {
            api_version: Some(k.kind.api_version().into()),
            kind: Some(k.kind.to_string()),
            namespace: k.kind.is_namespaced().then(|| k.namespace.clone()),
            name: Some(k.name.clone()),
            ..Default::default()
        });
        let kube_event = Event {
            type_: match event.severity {
                Severity::Normal => EventType::Normal,
                Severity::Warning => EventType::Warning,
            },
            reason: event.reason.into(),
            note: Some(event.note.clone()),
            action: event.reason.into(),
            secondary,
        };
        if let Err(e) = self.recorder.publish(&kube_event, regarding).await {
            warn!(regarding = ?regarding.name, error = %e, "could not publish Event");
        }
    }

    /// Runs `reconcile` under the policy's finalizer ([`FINALIZER`]): kube-runtime adds it before
    /// the first Apply and removes it once Cleanup has succeeded. Those two writes are fenced
    /// and counted like the others; without leadership the policy is simply looked at again.
    pub async fn with_finalizer<Fut>(
        &self,
        policy: Arc<TenantPolicy>,
        reconcile: impl FnOnce(FinalizerEvent<TenantPolicy>) -> Fut,
    ) -> Result<Requeue, finalizer::Error<Fut::Error>>
    where
        Fut: TryFuture<Ok = Requeue>,
        Fut::Error: std::error::Error + 'static,
    {
        let has_finalizer = policy.finalizers().iter().any(|f| f == FINALIZER);
        let writes_finalizer = has_finalizer == policy.meta().deletion_timestamp.is_some();
        if writes_finalizer {
            if !self.may_write() {
                return Ok(Requeue::requeue(Duration::from_secs(1)));
            }
            self.metrics.count_write("finalizer", "TenantPolicy");
        }
        let api: Api<TenantPolicy> = Api::all(self.client.clone());
        finalizer::finalizer(&api, FINALIZER, policy, reconcile).await
    }

    /// Server-side dry run of a policy as it would be applied (`tenantry plan`): what its schema
    /// and CEL rules refuse, with the API server's message naming the field.
    pub async fn dry_run_policy(&self, policy: &TenantPolicy) -> Result<(), String> {
        let name = policy.name_any();
        let mut body = serde_json::to_value(policy).map_err(|e| e.to_string())?;
        body["metadata"] = json!({"name": name});
        self.metrics.count_write("dryrun", "TenantPolicy");
        let api: Api<TenantPolicy> = Api::all(self.client.clone());
        api.patch(
            &name,
            &PatchParams::apply("tenantry-plan").dry_run().force(),
            &Patch::Apply(body),
        )
        .await
        .map(|_| ())
        .map_err(|e| format!("the API server would reject TenantPolicy {name}: {e}"))
    }
}

fn is_tenantry_managed(object: &DynamicObject) -> bool {
    is_managed(object.labels())
}
