//! What the API server shows of Tenantry's writes: uid, resourceVersion and managedFields of the
//! managed objects, of the policies and of the Events about them. Equal before and after means
//! nothing was written, by anyone ([`changed`] lists what differs). Taken once
//! kube-controller-manager has caught up ([`quota_current`], [`pdb_observed`]), so that its
//! status writes are not mistaken for Tenantry's.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{LimitRange, ResourceQuota};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DynamicObject, ListParams, ObjectMeta};
use kube::core::ApiResource;
use kube::{Client, ResourceExt};
use tenantry::api::{MANAGED_SELECTOR, POLICY_LABEL, TenantPolicy};

use crate::poll::eventually;

/// Object ("Kind namespace/name", "TenantPolicy name", "Event namespace/name") -> its uid,
/// resourceVersion and managedFields.
pub type ApiState = BTreeMap<String, String>;

/// The kinds Tenantry manages in namespaces: LimitRange, ResourceQuota, PodDisruptionBudget.
pub fn managed_kinds() -> [ApiResource; 3] {
    [
        ApiResource::erase::<LimitRange>(&()),
        ApiResource::erase::<ResourceQuota>(&()),
        ApiResource::erase::<PodDisruptionBudget>(&()),
    ]
}

/// kube-controller-manager has copied the quota's spec.hard to its status.
pub fn quota_current(q: &ResourceQuota) -> bool {
    q.status.as_ref().and_then(|s| s.hard.as_ref()) == q.spec.as_ref().and_then(|s| s.hard.as_ref())
}

/// kube-controller-manager has observed the PDB's generation.
pub fn pdb_observed(p: &PodDisruptionBudget) -> bool {
    p.status.as_ref().map(|s| s.observed_generation) == Some(p.metadata.generation)
}

/// The keys whose state differs between `before` and `after` (present in only one included).
pub fn changed(before: &ApiState, after: &ApiState) -> Vec<String> {
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    keys.into_iter()
        .filter(|k| before.get(*k) != after.get(*k))
        .cloned()
        .collect()
}

fn record(state: &mut ApiState, key: String, meta: &ObjectMeta) {
    let fields = serde_json::to_string(&meta.managed_fields).unwrap_or_default();
    let value = format!("{:?} {:?} {fields}", meta.uid, meta.resource_version);
    state.insert(key, value);
}

/// Records the objects of the managed kinds `lp` lists in `namespace` (every namespace when
/// `None`) that `keep` keeps.
async fn record_managed(
    client: &Client,
    state: &mut ApiState,
    namespace: Option<&str>,
    lp: &ListParams,
    keep: impl Fn(&DynamicObject) -> bool,
) -> kube::Result<()> {
    for resource in managed_kinds() {
        let api: Api<DynamicObject> = match namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        for o in api.list(lp).await?.items.iter().filter(|o| keep(o)) {
            let ns = o.namespace().unwrap_or_default();
            let key = format!("{} {ns}/{}", resource.kind, o.name_any());
            record(state, key, &o.metadata);
        }
    }
    Ok(())
}

/// Records the Events `keep` keeps, in every namespace.
async fn record_events(
    client: &Client,
    state: &mut ApiState,
    keep: impl Fn(&Event) -> bool,
) -> kube::Result<()> {
    let events: Api<Event> = Api::all(client.clone());
    for e in events
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter(|e| keep(e))
    {
        let key = format!(
            "Event {}/{}",
            e.namespace().unwrap_or_default(),
            e.name_any()
        );
        record(state, key, &e.metadata);
    }
    Ok(())
}

fn regarding(e: &Event) -> Option<&str> {
    e.regarding.as_ref().and_then(|r| r.name.as_deref())
}

/// The state of every LimitRange, ResourceQuota and PDB in `namespaces` (whoever owns them), of
/// the `policies`, and of the Events about them; first waits until kube-controller-manager has
/// caught up there (every quota's status.hard is its spec, every PDB observed). For tests:
/// panics on errors.
pub async fn api_state(client: &Client, namespaces: &[&str], policies: &[&str]) -> ApiState {
    let lp = ListParams::default();
    for ns in namespaces {
        let quotas = Api::<ResourceQuota>::namespaced(client.clone(), ns);
        let pdbs = Api::<PodDisruptionBudget>::namespaced(client.clone(), ns);
        let what = "kube-controller-manager's status of quotas and PDBs";
        eventually(what, || {
            let (quotas, pdbs, lp) = (quotas.clone(), pdbs.clone(), lp.clone());
            async move {
                let quotas_done = quotas.list(&lp).await.ok()?.items.iter().all(quota_current);
                let pdbs_done = pdbs.list(&lp).await.ok()?.items.iter().all(pdb_observed);
                (quotas_done && pdbs_done).then_some(())
            }
        })
        .await;
    }
    let mut state = ApiState::new();
    for ns in namespaces {
        record_managed(client, &mut state, Some(ns), &lp, |_| true)
            .await
            .expect("list managed kinds");
    }
    let api = Api::<TenantPolicy>::all(client.clone());
    for name in policies {
        let p = api.get(name).await.expect("get policy");
        record(&mut state, format!("TenantPolicy {name}"), &p.metadata);
    }
    let about_them = |e: &Event| policies.contains(&regarding(e).unwrap_or_default());
    record_events(client, &mut state, about_them)
        .await
        .expect("list events");
    state
}

/// The state of every object Tenantry manages (by its label, in every namespace) but those of
/// the policy `skip`, of every policy but `skip`, and of every Event Tenantry reported but those
/// about `skip`. For the benchmark's restart, where `skip` is the canary that proves the
/// restarted controller is at work.
pub async fn managed_state(client: &Client, skip: &str) -> anyhow::Result<ApiState> {
    let mut state = ApiState::new();
    let lp = ListParams::default().labels(MANAGED_SELECTOR);
    let not_skip =
        |o: &DynamicObject| o.labels().get(POLICY_LABEL).map(String::as_str) != Some(skip);
    record_managed(client, &mut state, None, &lp, not_skip).await?;
    let policies: Api<TenantPolicy> = Api::all(client.clone());
    for p in policies.list(&ListParams::default()).await? {
        if p.name_any() != skip {
            record(
                &mut state,
                format!("TenantPolicy {}", p.name_any()),
                &p.metadata,
            );
        }
    }
    let tenantry_not_skip = |e: &Event| {
        e.reporting_controller.as_deref() == Some("tenantry") && regarding(e) != Some(skip)
    };
    record_events(client, &mut state, tenantry_not_skip).await?;
    Ok(state)
}
