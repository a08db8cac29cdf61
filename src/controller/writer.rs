//! The one place that writes to the API server: managed objects (create, server-side apply,
//! guarded merge patch, delete, release), the policy's status and finalizer, Events, and the
//! server-side dry runs of what a policy builds. Every write is counted, and fenced: none is sent
//! unless this process holds leadership ([`Leadership::holds`]). The one other writer is the
//! leader election itself (`leader.rs`), whose Lease write is what leadership is.
//!
//! Creation is a POST, never an apply: a POST fails when an object of that name exists, so an
//! object Tenantry does not own is never taken by accident, even if it appeared after the cache
//! last looked. Such an object is read and returned as found ([`Found::Exists`]); what that means
//! (adopt, report as not owned) is for [`crate::pipeline::outcome`] to say, and an adoption comes
//! back as an action of its own: a merge patch guarded by the uid and resourceVersion read.
//! The writer decides nothing: it executes, and says what it found.
//! Updates carry the live uid (apply) or resourceVersion (merge patch, delete) as a precondition,
//! so they never land on an object other than the one the diff saw.

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryFuture};
use k8s_openapi::api::core::v1::{LimitRange, ObjectReference, ResourceQuota};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams, Preconditions};
use kube::core::ApiResource;
use kube::runtime::controller;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{self, Event as FinalizerEvent};
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};
use tracing::warn;

use crate::api::{FIELD_MANAGER, TenantPolicy, TenantPolicyStatus};
use crate::cache::own_writes::OwnWrites;
use crate::controller::leader::Leadership;
use crate::controller::metrics::Metrics;
use crate::model::action::{Action, Found};
use crate::model::event::{EventNote, Severity};
use crate::model::key::{ObjectKey, Owner};
use crate::model::kind::Kind;
use crate::model::object::{Desired, Live};

/// Finalizer that lets Tenantry carry out deletionPolicy before a policy goes.
pub const FINALIZER: &str = "tenantry.io/cleanup";

/// Where the dry run places the namespaced objects a policy builds: `default`, because the API
/// server itself keeps it in existence in every cluster (deleted, it is created anew), whereas
/// `tenantry-system` exists only where Tenantry was installed by its manifests, not where it runs
/// from a laptop or another namespace. A dry run stores nothing, so nothing lands there.
pub const DRY_RUN_NAMESPACE: &str = "default";

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

fn dynamic(object: Value) -> DynamicObject {
    serde_json::from_value(object).expect("a built object is a valid DynamicObject")
}

/// What one step of an action found, when it is not done: said as [`Found`].
type Step = Result<(), Found>;

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

    /// Runs the actions concurrently (bounded), returning each with what it found.
    pub async fn execute(&self, owner: &Owner, actions: Vec<Action>) -> Vec<(Action, Found)> {
        futures::stream::iter(actions)
            .map(|action| async move {
                let found = self.run(owner, &action).await;
                (action, found)
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await
    }

    async fn run(&self, owner: &Owner, action: &Action) -> Found {
        if !self.may_write() {
            return Found::Fenced;
        }
        let key = action.key();
        let api = self.api(key);
        let done = match action {
            Action::Create { desired, .. } => self.create(&api, desired, owner).await,
            Action::Inspect { .. } => match api.get_opt(&key.name).await {
                Ok(Some(object)) => Err(Found::Exists(Box::new(object))),
                Ok(None) => Err(Found::Absent),
                Err(e) => Err(Found::Error(e)),
            },
            Action::Recreate { desired, live, .. } => match self.delete(&api, live).await {
                Ok(()) => self.create(&api, desired, owner).await,
                Err(found) => Err(found),
            },
            Action::Apply { desired, uid, .. } => {
                self.metrics.count_write("apply", key.kind.as_str());
                let mut object = desired.to_object(owner);
                object["metadata"]["uid"] = json!(uid);
                let params = PatchParams::apply(FIELD_MANAGER).force();
                match api.patch(&key.name, &params, &Patch::Apply(object)).await {
                    Ok(written) => {
                        self.wrote(key, &written);
                        Ok(())
                    }
                    Err(e) => Err(Found::Error(e)),
                }
            }
            Action::Adopt { patch, .. }
            | Action::Replace { patch, .. }
            | Action::Release { patch, .. } => self.merge_patch(&api, key, patch.clone()).await,
            Action::Delete { live } => self.delete(&api, live).await,
        };
        done.err().unwrap_or(Found::Done)
    }

    /// POST: fails when an object of that name exists, which is then read, for the caller to
    /// judge.
    async fn create(&self, api: &Api<DynamicObject>, desired: &Desired, owner: &Owner) -> Step {
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
                Err(match api.get_opt(&key.name).await {
                    Ok(Some(object)) => Found::Exists(Box::new(object)),
                    Ok(None) => Found::Absent,
                    Err(e) => Found::Error(e),
                })
            }
            Err(e) => Err(Found::Error(e)),
        }
    }

    /// DELETE on the condition that the object is still the one seen (uid and resourceVersion);
    /// an object already gone is done.
    async fn delete(&self, api: &Api<DynamicObject>, live: &Live) -> Step {
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
            Err(e) => Err(Found::Error(e)),
        }
    }

    /// A JSON merge patch as field manager `tenantry` (the patch carries its own precondition).
    async fn merge_patch(&self, api: &Api<DynamicObject>, key: &ObjectKey, patch: Value) -> Step {
        self.metrics.count_write("patch", key.kind.as_str());
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        match api.patch(&key.name, &params, &Patch::Merge(patch)).await {
            Ok(patched) => {
                self.wrote(key, &patched);
                Ok(())
            }
            Err(e) => Err(Found::Error(e)),
        }
    }

    fn wrote(&self, key: &ObjectKey, object: &DynamicObject) {
        let version = object.metadata.resource_version.as_deref();
        self.own_writes.wrote(key.kind, version);
    }

    /// Server-side dry run of one object a policy builds: what the API server answers.
    pub async fn dry_run(&self, owner: &Owner, desired: &Desired) -> Result<(), kube::Error> {
        self.metrics
            .count_write("dryrun", desired.key.kind.as_str());
        let params = PostParams {
            dry_run: true,
            field_manager: Some(FIELD_MANAGER.into()),
        };
        self.api(&desired.key)
            .create(&params, &dynamic(desired.to_object(owner)))
            .await
            .map(|_| ())
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
            action: event.action(),
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
    ) -> Result<controller::Action, finalizer::Error<Fut::Error>>
    where
        Fut: TryFuture<Ok = controller::Action>,
        Fut::Error: std::error::Error + 'static,
    {
        let has_finalizer = policy.finalizers().iter().any(|f| f == FINALIZER);
        let writes_finalizer = has_finalizer == policy.meta().deletion_timestamp.is_some();
        if writes_finalizer {
            if !self.may_write() {
                return Ok(controller::Action::requeue(Duration::from_secs(1)));
            }
            self.metrics.count_write("finalizer", "TenantPolicy");
        }
        let api: Api<TenantPolicy> = Api::all(self.client.clone());
        finalizer::finalizer(&api, FINALIZER, policy, reconcile).await
    }

    /// Server-side dry run of a policy as it would be applied (`tenantry plan`): what its schema
    /// and CEL rules refuse, with the API server's message naming the field.
    pub async fn dry_run_policy(&self, policy: &TenantPolicy) -> Result<(), kube::Error> {
        let name = policy.name_any();
        let mut body = serde_json::to_value(policy).map_err(kube::Error::SerdeError)?;
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
    }
}

#[cfg(test)]
mod tests;
