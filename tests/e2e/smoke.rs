//! The control plane is real and complete: the API server admits and enforces (LimitRanger,
//! ResourceQuota), and the controller manager runs the controllers Tenantry depends on (garbage
//! collection, resourcequota status, namespace deletion).

use k8s_openapi::api::core::v1::{ConfigMap, LimitRange, Namespace, Pod, ResourceQuota};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Client, Resource};
use serde_json::json;
use tenantry::api::TenantPolicy;

use crate::harness::{
    TestNamespace, client, eventually, kubectl, kubectl_ok, repo_root, unique_name,
};

/// Installs the committed CRD and waits until the API server serves it.
pub async fn install_crd(client: &Client) {
    let path = repo_root().join(tenantry::crd::CRD_PATH);
    kubectl_ok(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        path.to_str().unwrap(),
    ]);
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    eventually("the TenantPolicy CRD to be Established", || {
        let crds = crds.clone();
        async move {
            let crd = crds.get("tenantpolicies.tenantry.io").await.ok()?;
            let established = crd
                .status?
                .conditions?
                .into_iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            established.then_some(())
        }
    })
    .await;
}

fn pod(name: &str, resources: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1", "resources": resources}]}
    }))
    .unwrap()
}

#[tokio::test]
async fn crd_becomes_established_and_kubectl_lists_tenantpolicies() {
    let client = client().await;
    install_crd(&client).await;

    let name = unique_name("smoke-tp");
    let policy: TenantPolicy = serde_json::from_value(json!({
        "apiVersion": "tenantry.io/v1alpha1", "kind": "TenantPolicy",
        "metadata": {"name": name},
        "spec": {"priority": 7, "namespaces": ["nowhere"]}
    }))
    .unwrap();
    let policies: Api<TenantPolicy> = Api::all(client.clone());
    policies
        .create(&PostParams::default(), &policy)
        .await
        .expect("create TenantPolicy");
    // Deleted even if an assertion below fails.
    let _guard = crate::harness::TestPolicy { name: name.clone() };

    let table = kubectl_ok(&["get", "tenantpolicies", &name]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "PRIORITY", "SELECTED", "READY", "STATUS", "AGE"],
        "{table}"
    );
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[..2], [name.as_str(), "7"], "{table}");
    let wide = kubectl_ok(&["get", "tp", &name, "-o", "wide"]);
    assert!(wide.lines().next().unwrap().ends_with("MESSAGE"), "{wide}");
    let by_category = kubectl_ok(&["get", "tenantry"]);
    assert!(by_category.contains(&name), "{by_category}");
}

#[tokio::test]
async fn garbage_collector_deletes_children_of_a_deleted_cluster_scoped_owner() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::create(&client, "smoke-gc").await;

    // The shape Tenantry relies on: a cluster-scoped TenantPolicy owning namespaced objects.
    let owner_name = unique_name("smoke-owner");
    let owner: TenantPolicy = serde_json::from_value(json!({
        "metadata": {"name": owner_name}, "spec": {}
    }))
    .unwrap();
    let policies: Api<TenantPolicy> = Api::all(client.clone());
    let owner = policies
        .create(&PostParams::default(), &owner)
        .await
        .unwrap();
    let child: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "child", "ownerReferences": [owner.controller_owner_ref(&()).unwrap()]},
        "data": {"k": "v"}
    }))
    .unwrap();
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    configmaps
        .create(&PostParams::default(), &child)
        .await
        .unwrap();
    let bystander: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "bystander"}})).unwrap();
    configmaps
        .create(&PostParams::default(), &bystander)
        .await
        .unwrap();

    policies
        .delete(&owner_name, &DeleteParams::background())
        .await
        .unwrap();
    eventually("the owned ConfigMap to be garbage-collected", || {
        let configmaps = configmaps.clone();
        async move {
            configmaps
                .get_opt("child")
                .await
                .unwrap()
                .is_none()
                .then_some(())
        }
    })
    .await;
    assert!(
        configmaps.get_opt("bystander").await.unwrap().is_some(),
        "an unowned object must survive"
    );
}

#[tokio::test]
async fn resource_quota_counts_pods_and_rejects_one_over_hard() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "smoke-quota").await;
    ns.wait_for_default_service_account(&client).await;
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), &ns.name);
    let quota: ResourceQuota = serde_json::from_value(
        json!({"metadata": {"name": "pods"}, "spec": {"hard": {"pods": "1"}}}),
    )
    .unwrap();
    quotas.create(&PostParams::default(), &quota).await.unwrap();
    // Admission only enforces a quota whose status the resourcequota controller has filled in.
    eventually("the quota's status.hard", || {
        let quotas = quotas.clone();
        async move { quotas.get("pods").await.ok()?.status?.hard }
    })
    .await;

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    pods.create(&PostParams::default(), &pod("first", json!({})))
        .await
        .expect("first pod fits");
    eventually("status.used.pods == 1", || {
        let quotas = quotas.clone();
        async move {
            let used = quotas.get("pods").await.ok()?.status?.used?;
            (used.get("pods")?.0 == "1").then_some(())
        }
    })
    .await;

    let err = pods
        .create(&PostParams::default(), &pod("second", json!({})))
        .await
        .expect_err("over quota");
    let kube::Error::Api(status) = err else {
        panic!("expected an API error, got {err:?}")
    };
    assert_eq!(status.code, 403, "{status:?}");
    assert!(
        status.message.contains("exceeded quota: pods"),
        "{}",
        status.message
    );
}

#[tokio::test]
async fn limit_range_defaults_make_a_new_pod_burstable() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "smoke-limits").await;
    ns.wait_for_default_service_account(&client).await;
    let ranges: Api<LimitRange> = Api::namespaced(client.clone(), &ns.name);
    let range: LimitRange = serde_json::from_value(json!({
        "metadata": {"name": "defaults"},
        "spec": {"limits": [{"type": "Container",
            "default": {"cpu": "300m", "memory": "200Mi"},
            "defaultRequest": {"cpu": "200m", "memory": "100Mi"}}]}
    }))
    .unwrap();
    ranges.create(&PostParams::default(), &range).await.unwrap();

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let created = pods
        .create(&PostParams::default(), &pod("besteffort", json!({})))
        .await
        .unwrap();
    let resources = created.spec.unwrap().containers[0]
        .resources
        .clone()
        .unwrap();
    let get = |m: &Option<
        std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    >,
               k: &str| { m.as_ref().and_then(|m| m.get(k)).map(|q| q.0.clone()) };
    assert_eq!(get(&resources.requests, "cpu").as_deref(), Some("200m"));
    assert_eq!(get(&resources.requests, "memory").as_deref(), Some("100Mi"));
    assert_eq!(get(&resources.limits, "cpu").as_deref(), Some("300m"));
    assert_eq!(get(&resources.limits, "memory").as_deref(), Some("200Mi"));
    assert_eq!(
        created.status.unwrap().qos_class.as_deref(),
        Some("Burstable")
    );
}

#[tokio::test]
async fn deleted_namespace_finishes_terminating() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "smoke-nsdel").await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    let content: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "content"}})).unwrap();
    configmaps
        .create(&PostParams::default(), &content)
        .await
        .unwrap();

    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .delete(&ns.name, &DeleteParams::default())
        .await
        .unwrap();
    let name = ns.name.clone();
    eventually("the namespace to be gone", || {
        let namespaces = namespaces.clone();
        let name = name.clone();
        async move {
            namespaces
                .get_opt(&name)
                .await
                .unwrap()
                .is_none()
                .then_some(())
        }
    })
    .await;
    // kubectl agrees with the typed client.
    let out = kubectl(&["get", "namespace", &ns.name]);
    assert!(
        !out.success && out.stderr.contains("NotFound"),
        "{}",
        out.stderr
    );
}
