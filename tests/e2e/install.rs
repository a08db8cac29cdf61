//! Install and GitOps: the kustomize install, least-privilege RBAC proven against the API server's
//! audit log, leader election with fail-over, and GitOps safety.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use crate::harness::{
    Namespaced, Operator, TestClass, TestNamespace, TestPolicy, client, eventually, kubectl,
    kubectl_ok, repo_root, unique_name, wait_gone,
};
use crate::smoke::install_crd;

pub(crate) const SERVICE_ACCOUNT: &str = "system:serviceaccount:tenantry-system:tenantry";

pub(crate) async fn ensure_install_namespace(client: &Client) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": "tenantry-system"}})).unwrap();
    match namespaces.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("creating tenantry-system: {e}"),
    }
}

pub(crate) fn state_dir() -> PathBuf {
    std::env::var_os("TENANTRY_STATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".tenantry"))
}

#[tokio::test]
async fn install_manifests_pass_a_server_dry_run() {
    let client = client().await;
    ensure_install_namespace(&client).await;
    let out = kubectl_ok(&[
        "apply",
        "--dry-run=server",
        "--server-side",
        "-k",
        repo_root().join("config/default").to_str().unwrap(),
    ]);
    for object in [
        "customresourcedefinition.apiextensions.k8s.io/tenantpolicies.tenantry.io",
        "clusterrole.rbac.authorization.k8s.io/tenantry",
        "serviceaccount/tenantry",
        "role.rbac.authorization.k8s.io/tenantry-leader-election",
        "deployment.apps/tenantry",
        "service/tenantry-metrics",
    ] {
        assert!(out.contains(object), "{object} missing from:\n{out}");
    }
}

fn rules(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(repo_root().join(path)).unwrap();
    let role: Value = serde_yaml::from_str(&text).unwrap();
    role["rules"].as_array().unwrap().clone()
}

#[test]
fn roles_have_no_wildcards_and_no_secrets() {
    for path in [
        "config/rbac/cluster_role.yaml",
        "config/rbac/leader_election_role.yaml",
    ] {
        for rule in rules(path) {
            for field in ["apiGroups", "resources", "verbs"] {
                for value in rule[field].as_array().unwrap() {
                    let value = value.as_str().unwrap();
                    assert!(!value.contains('*'), "{path}: wildcard in {field}");
                    assert_ne!(value, "secrets", "{path}: access to Secrets");
                }
            }
        }
    }
}

/// A kubeconfig with the tenantry service account's own token.
pub(crate) fn service_account_kubeconfig() -> PathBuf {
    let token = kubectl_ok(&[
        "create",
        "token",
        "tenantry",
        "-n",
        "tenantry-system",
        "--duration=1h",
    ]);
    let admin: Value =
        serde_yaml::from_str(&std::fs::read_to_string(crate::harness::kubeconfig_path()).unwrap())
            .unwrap();
    let cluster = &admin["clusters"][0]["cluster"];
    let config = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "local", "cluster": cluster}],
        "users": [{"name": "tenantry", "user": {"token": token.trim()}}],
        "contexts": [{"name": "tenantry", "context": {"cluster": "local", "user": "tenantry"}}],
        "current-context": "tenantry",
    });
    let path = repo_root()
        .join("target/e2e-logs")
        .join(format!("{}.kubeconfig", unique_name("sa")));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).unwrap();
    path
}

/// (apiGroup, resource[/subresource], verb, status code) of the service account's requests
/// audited after byte `from` of the audit log.
fn audited_requests(from: u64) -> Vec<(String, String, String, u64)> {
    use std::io::{Read, Seek};
    let mut file = std::fs::File::open(state_dir().join("logs/audit.log")).expect("the audit log");
    file.seek(std::io::SeekFrom::Start(from)).unwrap();
    let mut text = String::new();
    file.read_to_string(&mut text).unwrap();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["user"]["username"] == SERVICE_ACCOUNT)
        .filter_map(|e| {
            let r = e.get("objectRef")?;
            let mut resource = r["resource"].as_str()?.to_owned();
            if let Some(sub) = r["subresource"].as_str() {
                resource = format!("{resource}/{sub}");
            }
            let code = e["responseStatus"]["code"].as_u64().unwrap_or(0);
            Some((
                r["apiGroup"].as_str().unwrap_or("").to_owned(),
                resource,
                e["verb"].as_str()?.to_owned(),
                code,
            ))
        })
        .collect()
}

async fn patch_spec<K>(client: &Client, ns: &str, name: &str, spec: Value)
where
    K: Namespaced,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    api.patch(
        name,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"spec": spec})),
    )
    .await
    .unwrap();
}

async fn wait_spec<K, F>(client: &Client, ns: &str, name: &str, what: &str, check: F)
where
    K: Namespaced + serde::Serialize,
    F: Fn(&Value) -> bool,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let check = &check;
    eventually(what, || {
        let api = api.clone();
        async move {
            let object = api.get_opt(name).await.ok()??;
            check(&serde_json::to_value(&object).ok()?["spec"]).then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn the_controller_converges_under_its_service_account_and_uses_every_granted_verb() {
    let client = client().await;
    install_crd(&client).await;
    ensure_install_namespace(&client).await;
    kubectl_ok(&[
        "apply",
        "--server-side",
        "-k",
        repo_root().join("config/rbac").to_str().unwrap(),
    ]);
    let audit_start = std::fs::metadata(state_dir().join("logs/audit.log"))
        .map(|m| m.len())
        .unwrap_or(0);
    let kubeconfig = service_account_kubeconfig();
    let lease = unique_name("rbac-lease");
    let operator = Operator::start_with(
        &unique_name("rbac"),
        &[
            "--leader-elect",
            "--leader-election-id",
            &lease,
            "--lease-duration",
            "3",
            "--renew-deadline",
            "2",
            "--retry-period",
            "0.5",
        ],
        Some(&kubeconfig),
    )
    .await;

    // Selected namespace: create everything. Second namespace: objects we do not own (get).
    let ours = TestNamespace::create(&client, "e2e-rbac").await;
    let theirs = TestNamespace::create(&client, "e2e-rbac-theirs").await;
    for (kind, object) in [
        (
            "limitrange",
            json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "defaults"}, "spec": {"limits": [{"type": "Container", "max": {"cpu": "1"}}]}}),
        ),
        (
            "resourcequota",
            json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "compute"}, "spec": {"hard": {"pods": "1"}}}),
        ),
        (
            "poddisruptionbudget",
            json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web"}, "spec": {"selector": {}, "minAvailable": 1}}),
        ),
    ] {
        let out = crate::harness::kubectl_with_input(
            &["apply", "-n", &theirs.name, "-f", "-"],
            Some(&object.to_string()),
        );
        assert!(out.success, "{kind}: {}", out.stderr);
    }
    // A class of ours, and one of the same name as another existing class (get).
    let class = unique_name("e2e-rbac-class");
    let foreign = TestClass::create("e2e-rbac-foreign", "example.com/theirs");
    let spec = |namespaces: Vec<&str>, reclaim: &str| {
        json!({"namespaces": namespaces,
            "limitRanges": [{"name": "defaults", "limits": [{"type": "Container", "default": {"cpu": "300m"}, "defaultRequest": {"cpu": "200m"}}]}],
            "resourceQuotas": [{"name": "compute", "hard": {"pods": "20"}}],
            "podDisruptionBudgets": [{"name": "web", "selector": {"matchLabels": {"app": "web"}}, "minAvailable": 1}],
            "storage": {"classes": [
                {"name": class, "provisioner": "example.com/rbac", "reclaimPolicy": reclaim},
                {"name": foreign.name, "provisioner": "example.com/rbac"}]}})
    };
    let policy = TestPolicy::create(
        &client,
        &operator,
        "rbac",
        spec(vec![&ours.name, &theirs.name], "Delete"),
    )
    .await;
    policy.wait_condition(&client, "Stalled", "True").await; // the three NotOwned objects
    let ns = ours.name.as_str();
    wait_spec::<PodDisruptionBudget, _>(&client, ns, "web", "the PDB", |_| true).await;

    // Drift on each kind (patch); the LimitRange twice, so its Event becomes a series (patch).
    for round in 0..2 {
        patch_spec::<LimitRange>(&client, ns, "defaults", json!({"limits": [{"type": "Container", "default": {"cpu": format!("{}m", 400 + round)}, "defaultRequest": {"cpu": "200m"}}]})).await;
        wait_spec::<LimitRange, _>(&client, ns, "defaults", "the LimitRange reverted", |s| {
            s["limits"][0]["default"]["cpu"] == "300m"
        })
        .await;
    }
    patch_spec::<ResourceQuota>(&client, ns, "compute", json!({"hard": {"pods": "99"}})).await;
    wait_spec::<ResourceQuota, _>(&client, ns, "compute", "the quota reverted", |s| {
        s["hard"]["pods"] == "20"
    })
    .await;
    patch_spec::<PodDisruptionBudget>(&client, ns, "web", json!({"minAvailable": 5})).await;
    wait_spec::<PodDisruptionBudget, _>(&client, ns, "web", "the PDB reverted", |s| {
        s["minAvailable"] == 1
    })
    .await;

    // The class: drift reverted (patch), an immutable change recreates it (delete, create).
    let classes: Api<StorageClass> = Api::all(client.clone());
    let class_where = |what: &'static str, check: fn(&StorageClass) -> bool| {
        let classes = classes.clone();
        let class = class.clone();
        async move {
            eventually(what, || {
                let classes = classes.clone();
                let class = class.clone();
                async move { classes.get_opt(&class).await.unwrap().filter(check) }
            })
            .await
        }
    };
    class_where("the class created", |c| {
        c.labels().contains_key("tenantry.io/policy")
    })
    .await;
    classes
        .patch(
            &class,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"allowVolumeExpansion": true})),
        )
        .await
        .unwrap();
    class_where("the class reverted", |c| c.allow_volume_expansion.is_none()).await;
    policy
        .set_spec(&client, spec(vec![&ours.name, &theirs.name], "Retain"))
        .await;
    class_where("the class recreated", |c| {
        c.reclaim_policy.as_deref() == Some("Retain")
    })
    .await;

    // Unselect: delete.
    policy
        .set_spec(&client, spec(vec![&theirs.name], "Retain"))
        .await;
    wait_gone::<LimitRange>(&client, ns, "defaults").await;
    drop(policy); // the finalizer is removed (patch)

    let used: BTreeSet<(String, String, String)> = audited_requests(audit_start)
        .iter()
        .map(|(g, r, v, _)| (g.clone(), r.clone(), v.clone()))
        .collect();
    let forbidden: Vec<_> = audited_requests(audit_start)
        .into_iter()
        .filter(|r| r.3 == 403)
        .collect();
    assert!(
        forbidden.is_empty(),
        "the service account was refused: {forbidden:?}"
    );
    let not_a_request = [("tenantry.io", "tenantpolicies/finalizers", "update")];
    let mut unused = Vec::new();
    for path in [
        "config/rbac/cluster_role.yaml",
        "config/rbac/leader_election_role.yaml",
    ] {
        for rule in rules(path) {
            for group in rule["apiGroups"].as_array().unwrap() {
                for resource in rule["resources"].as_array().unwrap() {
                    for verb in rule["verbs"].as_array().unwrap() {
                        let key = (
                            group.as_str().unwrap(),
                            resource.as_str().unwrap(),
                            verb.as_str().unwrap(),
                        );
                        if !not_a_request.contains(&key)
                            && !used.contains(&(
                                key.0.to_owned(),
                                key.1.to_owned(),
                                key.2.to_owned(),
                            ))
                        {
                            unused.push(format!("{path}: {key:?}"));
                        }
                    }
                }
            }
        }
    }
    assert!(
        unused.is_empty(),
        "granted but never used:\n{}\nused: {used:?}",
        unused.join("\n")
    );
    drop(operator);
}

#[tokio::test]
async fn only_the_leader_writes_and_a_follower_takes_over_within_20_seconds_of_kill_9() {
    let client = client().await;
    install_crd(&client).await;
    ensure_install_namespace(&client).await;
    let shard = unique_name("leader");
    let lease = unique_name("lease");
    let election = ["--leader-elect", "--leader-election-id", lease.as_str()]; // defaults 15s / 10s / 2s
    let mut first = Operator::start_with(&shard, &election, None).await;
    eventually("a leader", || async {
        (first.metric("tenantry_leader", &[]) == 1.0).then_some(())
    })
    .await;
    let second = Operator::start_with(&shard, &election, None).await;

    let a = TestNamespace::create(&client, "e2e-leader-a").await;
    let b = TestNamespace::create(&client, "e2e-leader-b").await;
    let spec = |namespaces: Vec<&str>| json!({"namespaces": namespaces, "resourceQuotas": [{"name": "compute", "hard": {"pods": "10"}}]});
    let policy = TestPolicy::create(&client, &first, "leader", spec(vec![&a.name])).await;
    policy.wait_ready(&client).await;
    assert_eq!(second.metric("tenantry_leader", &[]), 0.0);
    assert_eq!(
        second.metric("tenantry_api_writes_total", &[]),
        0.0,
        "the follower wrote"
    );
    assert!(first.object_and_status_writes() > 0.0);

    first.kill9();
    let killed = Instant::now();
    policy.set_spec(&client, spec(vec![&a.name, &b.name])).await;
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), &b.name);
    loop {
        if quotas.get_opt("compute").await.unwrap().is_some() {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(20),
            "no fail-over within 20 s of kill -9"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "fail-over: the new leader converged the change {:.1} s after kill -9 of the old one",
        killed.elapsed().as_secs_f64()
    );
    assert_eq!(second.metric("tenantry_leader", &[]), 1.0);
    drop(policy);
}

#[tokio::test]
async fn argo_cd_tracking_metadata_is_not_copied_and_the_spec_is_never_written() {
    let client = client().await;
    install_crd(&client).await;
    let operator = Operator::start(&unique_name("gitops")).await;
    let ns = TestNamespace::create(&client, "e2e-gitops").await;
    let name = unique_name("gitops");
    let policy: tenantry::api::TenantPolicy = serde_json::from_value(json!({
        "apiVersion": "tenantry.io/v1alpha1", "kind": "TenantPolicy",
        "metadata": {"name": name,
            "labels": {crate::harness::SHARD_LABEL: operator.shard, "app.kubernetes.io/instance": "platform", "argocd.argoproj.io/instance": "platform"},
            "annotations": {"argocd.argoproj.io/tracking-id": "platform:tenantry.io/TenantPolicy:/x", "argocd.argoproj.io/sync-wave": "1"}},
        "spec": {"namespaces": [ns.name], "resourceQuotas": [{"name": "compute", "hard": {"pods": "5"}}]}
    }))
    .unwrap();
    Api::<tenantry::api::TenantPolicy>::all(client.clone())
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
    let guard = TestPolicy { name: name.clone() };
    guard.wait_ready(&client).await;

    let quota: ResourceQuota = Api::namespaced(client.clone(), &ns.name)
        .get("compute")
        .await
        .unwrap();
    let labels: BTreeSet<&str> = quota.labels().keys().map(String::as_str).collect();
    assert_eq!(
        labels,
        BTreeSet::from(["app.kubernetes.io/managed-by", "tenantry.io/policy"])
    );
    assert!(
        quota
            .annotations()
            .keys()
            .all(|k| !k.starts_with("argocd.argoproj.io/")),
        "{:?}",
        quota.annotations()
    );

    let stored = guard.get(&client).await;
    assert_eq!(
        stored.metadata.generation,
        Some(1),
        "the spec was rewritten"
    );
    for entry in stored.metadata.managed_fields.unwrap_or_default() {
        let fields = entry.fields_v1.map(|f| f.0.to_string()).unwrap_or_default();
        if entry.manager.as_deref() == Some("tenantry") {
            assert!(
                !fields.contains("\"f:spec\""),
                "Tenantry owns spec fields: {fields}"
            );
        }
    }
    let out = kubectl(&[
        "get",
        "tenantpolicy",
        &name,
        "-o",
        "jsonpath={.metadata.labels}",
    ]);
    assert!(
        out.stdout.contains("argocd.argoproj.io/instance"),
        "the policy's own labels are left alone"
    );
}
