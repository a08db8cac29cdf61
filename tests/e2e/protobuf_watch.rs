//! Tenantry's protobuf watcher against kube-runtime's JSON one, side by side on the same objects
//! of the real API server: the same events, and every object reads the same in both (but for
//! managedFields' `fieldsV1`, which the protobuf reader leaves out on purpose).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{LimitRange, ResourceQuota};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, watcher};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tenantry::cache::protobuf::Watchable;
use tenantry::cache::protobuf_watch;
use tenantry::model::object::ManagedResource;

use crate::harness::{TestNamespace, client, eventually, unique_name};

/// (event, name, resourceVersion) -> the object as JSON, as one watcher saw them.
type Seen = Arc<Mutex<BTreeMap<(String, String, String), Value>>>;

/// Records every event of `events` after its first list, and whether the list is done.
fn record<K: ManagedResource>(
    events: impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send + 'static,
) -> (Seen, Arc<Mutex<bool>>, tokio::task::JoinHandle<()>) {
    let seen: Seen = Arc::default();
    let listed = Arc::new(Mutex::new(false));
    let (into, done) = (seen.clone(), listed.clone());
    let task = tokio::spawn(async move {
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            let (what, object) = match event {
                Ok(watcher::Event::InitDone) => {
                    *done.lock().unwrap() = true;
                    continue;
                }
                Ok(watcher::Event::Apply(o)) => ("apply", o),
                Ok(watcher::Event::Delete(o)) => ("delete", o),
                Ok(_) => continue,
                Err(e) => panic!("watch failed: {e}"),
            };
            let mut json = serde_json::to_value(&object).unwrap();
            for entry in json["metadata"]["managedFields"]
                .as_array_mut()
                .into_iter()
                .flatten()
            {
                entry.as_object_mut().unwrap().remove("fieldsV1");
            }
            let key = (
                what.to_string(),
                object.name_any(),
                object.resource_version().unwrap(),
            );
            into.lock().unwrap().insert(key, json);
        }
    });
    (seen, listed, task)
}

/// Both watchers of kind `K` on `selector`: (protobuf's, JSON's), once both have listed.
async fn side_by_side<K: Watchable>(
    client: &Client,
    selector: &str,
) -> [(Seen, tokio::task::JoinHandle<()>); 2] {
    let config = || watcher::Config::default().labels(selector);
    let (pb, pb_listed, pb_task) = record(protobuf_watch::watcher::<K>(client.clone(), config()));
    let (js, js_listed, js_task) = record(watcher(Api::<K>::all(client.clone()), config()));
    eventually("both watches to list", || {
        let listed = *pb_listed.lock().unwrap() && *js_listed.lock().unwrap();
        std::future::ready(listed.then_some(()))
    })
    .await;
    [(pb, pb_task), (js, js_task)]
}

/// Waits until both saw the same events, `enough` of them (then compares them in full).
async fn same_events(
    kind: &str,
    both: &[(Seen, tokio::task::JoinHandle<()>); 2],
    enough: impl Fn(&BTreeMap<(String, String, String), Value>) -> bool,
) {
    let (pb, js) = (&both[0].0, &both[1].0);
    let settled = eventually(
        &format!("both {kind} watches to see the same events"),
        || {
            let (pb, js) = (pb.lock().unwrap().clone(), js.lock().unwrap().clone());
            let keys = |m: &BTreeMap<_, Value>| m.keys().cloned().collect::<Vec<_>>();
            std::future::ready((enough(&pb) && keys(&pb) == keys(&js)).then_some((pb, js)))
        },
    )
    .await;
    for (key, protobuf) in &settled.0 {
        assert_eq!(
            Some(protobuf),
            settled.1.get(key),
            "{kind} {key:?} reads differently in protobuf"
        );
    }
}

#[tokio::test]
async fn the_protobuf_watch_sees_what_the_json_watch_sees_and_reads_it_the_same() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "e2e-protobuf").await;
    let run = unique_name("pb");
    let selector = format!("e2e.tenantry.io/protobuf={run}");
    let labels = json!({"e2e.tenantry.io/protobuf": run, "team": "a"});
    let ranges = side_by_side::<LimitRange>(&client, &selector).await;
    let quotas = side_by_side::<ResourceQuota>(&client, &selector).await;
    let pdbs = side_by_side::<PodDisruptionBudget>(&client, &selector).await;

    let range: LimitRange = serde_json::from_value(json!({
        "metadata": {"name": "defaults", "labels": labels, "annotations": {"note": "x"}},
        "spec": {"limits": [
            {"type": "Container", "max": {"cpu": "2", "memory": "1Gi"}, "min": {"cpu": "10m"},
             "default": {"cpu": "500m"}, "defaultRequest": {"cpu": "100m"},
             "maxLimitRequestRatio": {"cpu": "4"}},
            {"type": "PersistentVolumeClaim", "max": {"storage": "10Gi"}}
        ]}
    }))
    .unwrap();
    let scoped: ResourceQuota = serde_json::from_value(json!({
        "metadata": {"name": "high", "labels": labels},
        "spec": {"hard": {"pods": "3", "requests.cpu": "1500m"},
                 "scopeSelector": {"matchExpressions": [
                     {"scopeName": "PriorityClass", "operator": "In", "values": ["high", "urgent"]}]}}
    }))
    .unwrap();
    let plain: ResourceQuota = serde_json::from_value(json!({
        "metadata": {"name": "best-effort", "labels": labels},
        "spec": {"hard": {"pods": "5"}, "scopes": ["BestEffort"]}
    }))
    .unwrap();
    let percent: PodDisruptionBudget = serde_json::from_value(json!({
        "metadata": {"name": "web", "labels": labels},
        "spec": {"minAvailable": "50%", "unhealthyPodEvictionPolicy": "AlwaysAllow",
                 "selector": {"matchLabels": {"app": "web"},
                              "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}]}}
    }))
    .unwrap();
    let everyone: PodDisruptionBudget = serde_json::from_value(json!({
        "metadata": {"name": "all", "labels": labels},
        "spec": {"maxUnavailable": 1, "selector": {}}
    }))
    .unwrap();
    let post = PostParams::default();
    let range_api = Api::<LimitRange>::namespaced(client.clone(), &ns.name);
    let quota_api = Api::<ResourceQuota>::namespaced(client.clone(), &ns.name);
    let pdb_api = Api::<PodDisruptionBudget>::namespaced(client.clone(), &ns.name);
    range_api.create(&post, &range).await.unwrap();
    quota_api.create(&post, &scoped).await.unwrap();
    quota_api.create(&post, &plain).await.unwrap();
    pdb_api.create(&post, &percent).await.unwrap();
    pdb_api.create(&post, &everyone).await.unwrap();

    // An edit by another manager, and a deletion.
    let patch = json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "defaults"},
        "spec": {"limits": [{"type": "Container", "max": {"cpu": "3"}}]}});
    let params = PatchParams::apply("e2e-editor").force();
    range_api
        .patch("defaults", &params, &Patch::Apply(&patch))
        .await
        .unwrap();
    pdb_api
        .delete("all", &DeleteParams::default())
        .await
        .unwrap();

    let named = |m: &BTreeMap<(String, String, String), Value>, what: &str, name: &str| {
        m.keys().any(|(w, n, _)| w == what && n == name)
    };
    same_events("LimitRange", &ranges, |m| {
        m.values()
            .any(|o| o["spec"]["limits"][0]["max"]["cpu"] == "3")
    })
    .await;
    // kube-controller-manager's status writes, in both.
    same_events("ResourceQuota", &quotas, |m| {
        ["high", "best-effort"].iter().all(|name| {
            m.iter()
                .any(|((_, n, _), o)| n == name && o["status"]["used"].is_object())
        })
    })
    .await;
    same_events("PodDisruptionBudget", &pdbs, |m| {
        named(m, "delete", "all") && m.values().any(|o| o["status"]["observedGeneration"] == 1)
    })
    .await;
    for (_, task) in ranges.into_iter().chain(quotas).chain(pdbs) {
        task.abort();
    }
}
