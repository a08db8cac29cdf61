//! `spec.adoptionPolicy`: a namespace governed by hand moves under a policy without a moment
//! without its quota. IfIdentical takes an equal quota as it is and leaves a different one;
//! Always makes it as declared; neither ever takes another policy's or another controller's
//! object. Adoption keeps the object (its uid), lands only on the version read (the audit log
//! shows the uid and resourceVersion the patch carries), and makes it tamper-protected.

use k8s_openapi::api::core::v1::{ConfigMap, LimitRange, ResourceQuota};
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use crate::harness::{
    Operator, SHARD_LABEL, TestClass, TestNamespace, TestPolicy, client, event_notes, eventually,
    kubectl_ok, kubectl_with_input, repo_root, unique_name, wait_event_notes,
};
use crate::install::{
    SERVICE_ACCOUNT, ensure_install_namespace, service_account_kubeconfig, state_dir,
};
use crate::plan::{tenantry_plan, write_policies};
use crate::security::install_admission_policy;
use crate::smoke::install_crd;

const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
const POLICY: &str = "tenantry.io/policy";

/// A quota made by hand (no Tenantry labels), with optional owner references.
async fn hand_made_quota(
    client: &Client,
    ns: &str,
    hard: Value,
    owner_references: Value,
) -> ResourceQuota {
    let quota: ResourceQuota = serde_json::from_value(json!({
        "metadata": {"name": "compute", "labels": {"team": "by-hand"},
            "ownerReferences": owner_references},
        "spec": {"hard": hard},
    }))
    .unwrap();
    Api::<ResourceQuota>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &quota)
        .await
        .expect("create the hand-made quota");
    settled(client, ns).await
}

/// The quota once kube-controller-manager has recorded its status (until then its
/// resourceVersion moves without anyone else writing).
async fn settled(client: &Client, ns: &str) -> ResourceQuota {
    eventually(
        &format!("the quota in {ns} to have its status"),
        || async move {
            let q = quota(client, ns).await;
            let status_hard = q.status.as_ref().and_then(|s| s.hard.clone());
            (status_hard.is_some() && status_hard == q.spec.as_ref().and_then(|s| s.hard.clone()))
                .then_some(q)
        },
    )
    .await
}

async fn quota(client: &Client, ns: &str) -> ResourceQuota {
    Api::<ResourceQuota>::namespaced(client.clone(), ns)
        .get("compute")
        .await
        .unwrap()
}

fn hard(q: &ResourceQuota) -> Value {
    serde_json::to_value(&q.spec.as_ref().unwrap().hard).unwrap()
}

fn controller_uid(q: &ResourceQuota) -> Option<String> {
    q.owner_references()
        .iter()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.clone())
}

/// The bodies of the service account's patches to this quota, from byte `from` of the audit log.
fn audited_patches(from: u64, ns: &str) -> Vec<Value> {
    let text = std::fs::read(state_dir().join("logs/audit.log")).expect("the audit log");
    String::from_utf8_lossy(&text[from as usize..])
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| {
            e["user"]["username"] == SERVICE_ACCOUNT
                && e["verb"] == "patch"
                && e["stage"] == "ResponseComplete"
                && e["objectRef"]["resource"] == "resourcequotas"
                && e["objectRef"]["namespace"] == ns
                && e["objectRef"]["name"] == "compute"
        })
        .map(|e| json!({"code": e["responseStatus"]["code"], "body": e["requestObject"]}))
        .collect()
}

/// The successful adoption patch of the quota in `ns`, once audited.
async fn adoption_patch(from: u64, ns: &str) -> Value {
    eventually(
        &format!("the audited adoption patch in {ns}"),
        || async move {
            audited_patches(from, ns)
                .into_iter()
                .find(|p| p["code"] == 200)
                .map(|p| p["body"].clone())
        },
    )
    .await
}

#[tokio::test]
async fn if_identical_takes_only_an_equal_quota_and_always_makes_a_different_one_as_declared() {
    let client = client().await;
    install_crd(&client).await;
    ensure_install_namespace(&client).await;
    kubectl_ok(&[
        "apply",
        "--server-side",
        "-k",
        repo_root().join("config/rbac").to_str().unwrap(),
    ]);
    install_admission_policy();
    let same = TestNamespace::create(&client, "e2e-adopt-same").await;
    let differs = TestNamespace::create(&client, "e2e-adopt-differs").await;
    // Governed by hand: one quota as the policy will declare it (spelled otherwise), one not.
    let same_before = hand_made_quota(
        &client,
        &same.name,
        json!({"pods": "10", "requests.cpu": "1000m"}),
        json!([]),
    )
    .await;
    // A LimitRange as declared, which the API server stores with defaults filled in.
    let ranges: Api<LimitRange> = Api::namespaced(client.clone(), &same.name);
    let limits = json!([{"type": "Container", "max": {"cpu": "2"}, "default": {"cpu": "500m"}}]);
    let range: LimitRange = serde_json::from_value(
        json!({"metadata": {"name": "defaults"}, "spec": {"limits": limits}}),
    )
    .unwrap();
    let range_before = ranges.create(&PostParams::default(), &range).await.unwrap();
    let differs_before = hand_made_quota(
        &client,
        &differs.name,
        json!({"pods": "99", "requests.cpu": "1", "secrets": "5"}),
        json!([]),
    )
    .await;
    let spec = |adoption: &str| {
        json!({"namespaces": [same.name, differs.name], "adoptionPolicy": adoption,
            "limitRanges": [{"name": "defaults", "limits": limits}],
            "resourceQuotas": [{"name": "compute", "hard": {"pods": "10", "requests.cpu": "1"}}]})
    };

    // tenantry plan says what each would do before anything is applied.
    let shard = unique_name("adopt");
    let name = unique_name("adopt");
    let dir = repo_root()
        .join("target/e2e-logs")
        .join(unique_name("adopt-plan"));
    write_policies(
        &dir,
        &[
            json!({"apiVersion": "tenantry.io/v1alpha1", "kind": "TenantPolicy",
            "metadata": {"name": name, "labels": {SHARD_LABEL: shard}}, "spec": spec("IfIdentical")}),
        ],
    );
    let (code, stdout, stderr) = tenantry_plan(&dir);
    assert_eq!(code, 2, "changes pending: {stderr}");
    let plans: Vec<Value> = serde_json::from_str(&stdout).unwrap();
    let actions: Vec<(String, String, String)> = plans[0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or("").to_owned();
            (s("namespace"), s("kind"), s("action"))
        })
        .collect();
    let row =
        |ns: &str, kind: &str, action: &str| (ns.to_owned(), kind.to_owned(), action.to_owned());
    let mut expected = vec![
        row(&same.name, "LimitRange", "adopt"),
        row(&same.name, "ResourceQuota", "adopt"),
        row(&differs.name, "LimitRange", "create"),
        row(&differs.name, "ResourceQuota", "untouched"),
    ];
    expected.sort();
    assert_eq!(actions, expected, "{stdout}");

    // The controller as it is deployed: its own service account, audited.
    let audit_start = std::fs::metadata(state_dir().join("logs/audit.log"))
        .map(|m| m.len())
        .unwrap_or(0);
    let kubeconfig = service_account_kubeconfig();
    let operator = Operator::start_with(&shard, &[], Some(&kubeconfig)).await;
    let policy = TestPolicy::create_named(&client, &operator, &name, spec("IfIdentical")).await;
    let policy_uid = policy.get(&client).await.uid().unwrap();

    // IfIdentical: the equal one is adopted as it is, the other left and reported.
    let status = policy.wait_condition(&client, "Stalled", "True").await;
    assert_eq!(
        (status.ready_namespaces, status.failed_namespaces),
        (1, 1),
        "{status:?}"
    );
    let failure = &status.failures[0];
    assert_eq!(
        (failure.namespace.as_str(), failure.reason.as_str()),
        (differs.name.as_str(), "NotOwned")
    );
    assert!(
        failure.message.contains(
            "not adopted: adoptionPolicy IfIdentical, and its spec differs from the declared one in spec.hard.pods, spec.hard.secrets"
        ),
        "{}",
        failure.message
    );
    let adopted = quota(&client, &same.name).await;
    assert_eq!(
        adopted.uid(),
        same_before.uid(),
        "the same object: never deleted"
    );
    assert_eq!(hard(&adopted), hard(&same_before), "its spec is untouched");
    assert_eq!(adopted.labels()[MANAGED_BY], "tenantry");
    assert_eq!(adopted.labels()[POLICY], policy.name);
    assert_eq!(adopted.labels()["team"], "by-hand", "other labels are kept");
    assert_eq!(controller_uid(&adopted), Some(policy_uid.clone()));
    let left = quota(&client, &differs.name).await;
    assert_eq!(
        left.resource_version(),
        differs_before.resource_version(),
        "the different one is exactly as it was"
    );
    let range = ranges.get("defaults").await.unwrap();
    assert_eq!(range.uid(), range_before.uid());
    assert_eq!(range.labels()[POLICY], policy.name);
    assert_eq!(
        serde_json::to_value(&range.spec).unwrap(),
        serde_json::to_value(&range_before.spec).unwrap()
    );
    let notes = wait_event_notes(&client, &policy.name, "Adopted", |n| !n.is_empty()).await;
    assert_eq!(
        notes,
        [format!(
            "adopted 2 existing objects: {0}/LimitRange/defaults (already as declared), {0}/ResourceQuota/compute (already as declared)",
            same.name
        )]
    );
    // The guard: the patch carried the uid and resourceVersion the controller read.
    let patch = adoption_patch(audit_start, &same.name).await;
    assert_eq!(
        patch["metadata"]["uid"],
        json!(same_before.uid()),
        "{patch}"
    );
    assert_eq!(
        patch["metadata"]["resourceVersion"],
        json!(same_before.resource_version()),
        "{patch}"
    );

    // Adopted, it is protected: its namespace's owner can no longer change it.
    let owner_user = unique_name("dana");
    kubectl_ok(&[
        "create",
        "role",
        "quota-owner",
        "-n",
        &same.name,
        "--verb=*",
        "--resource=resourcequotas",
    ]);
    kubectl_ok(&[
        "create",
        "rolebinding",
        "quota-owner",
        "--role=quota-owner",
        &format!("--user={owner_user}"),
        "-n",
        &same.name,
    ]);
    let edit = kubectl_with_input(
        &[
            "patch",
            "resourcequota",
            "compute",
            "-n",
            &same.name,
            "--as",
            &owner_user,
            "--type=merge",
            "-p",
            r#"{"spec":{"hard":{"pods":"1000"}}}"#,
        ],
        None,
    );
    assert!(
        !edit.success
            && edit
                .stderr
                .contains(&format!("is governed by TenantPolicy {}", policy.name)),
        "{}",
        edit.stderr
    );

    // Always: the different one is adopted and made as declared, still the same object.
    policy.set_spec(&client, spec("Always")).await;
    let status = policy.wait_ready(&client).await;
    assert_eq!((status.ready_namespaces, status.failed_namespaces), (2, 0));
    let made = quota(&client, &differs.name).await;
    assert_eq!(
        made.uid(),
        differs_before.uid(),
        "the same object: never deleted"
    );
    assert_eq!(hard(&made), json!({"pods": "10", "requests.cpu": "1"}));
    assert_eq!(controller_uid(&made), Some(policy_uid));
    let notes = wait_event_notes(&client, &policy.name, "Adopted", |n| n.len() >= 2).await;
    let expected = format!(
        "adopted 1 existing object: {}/ResourceQuota/compute (changed spec.hard.pods, spec.hard.secrets)",
        differs.name
    );
    assert!(notes.contains(&expected), "{notes:?}");
    let patch = adoption_patch(audit_start, &differs.name).await;
    assert_eq!(
        patch["metadata"]["uid"],
        json!(differs_before.uid()),
        "{patch}"
    );
    assert_eq!(
        patch["metadata"]["resourceVersion"],
        json!(differs_before.resource_version()),
        "{patch}"
    );
    assert_eq!(patch["spec"]["hard"]["secrets"], Value::Null, "{patch}");
    drop(policy);
}

#[tokio::test]
async fn another_policys_or_another_controllers_object_is_never_adopted() {
    let client = client().await;
    install_crd(&client).await;
    let operator = Operator::start(&unique_name("adopt-never")).await;
    let governed = TestNamespace::create(&client, "e2e-adopt-governed").await;
    let controlled = TestNamespace::create(&client, "e2e-adopt-controlled").await;

    // A higher-priority policy already governs the quota in one namespace ...
    let holder = TestPolicy::create(
        &client,
        &operator,
        "adopt-holder",
        json!({"priority": 10, "namespaces": [governed.name],
            "resourceQuotas": [{"name": "compute", "hard": {"pods": "5"}}]}),
    )
    .await;
    holder.wait_ready(&client).await;
    let holder_uid = holder.get(&client).await.uid().unwrap();
    let held_before = settled(&client, &governed.name).await;
    // ... and another controller keeps it in the other (a ConfigMap stands in for it).
    let keeper: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "keeper"}})).unwrap();
    let keeper = Api::<ConfigMap>::namespaced(client.clone(), &controlled.name)
        .create(&PostParams::default(), &keeper)
        .await
        .unwrap();
    let kept_before = hand_made_quota(
        &client,
        &controlled.name,
        json!({"pods": "10"}),
        json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "keeper",
            "uid": keeper.uid().unwrap(), "controller": true}]),
    )
    .await;

    // A policy that would adopt anything declares the same quota in both.
    let taker = TestPolicy::create(
        &client,
        &operator,
        "adopt-taker",
        json!({"namespaces": [governed.name, controlled.name], "adoptionPolicy": "Always",
            "resourceQuotas": [{"name": "compute", "hard": {"pods": "10"}}]}),
    )
    .await;
    let status = taker.wait_condition(&client, "Stalled", "True").await;
    assert_eq!(status.shadowed_namespaces, 1, "{status:?}");
    assert_eq!(status.failures.len(), 1, "{:?}", status.failures);
    let failure = &status.failures[0];
    assert_eq!(
        (failure.namespace.as_str(), failure.reason.as_str()),
        (controlled.name.as_str(), "NotOwned")
    );
    assert!(
        failure
            .message
            .contains("not adopted: it is controlled by ConfigMap keeper"),
        "{}",
        failure.message
    );

    // Overlaps decided the governed one: still the holder's, exactly as it was.
    let held = quota(&client, &governed.name).await;
    assert_eq!(held.resource_version(), held_before.resource_version());
    assert_eq!(held.labels()[POLICY], holder.name);
    assert_eq!(controller_uid(&held), Some(holder_uid));
    let kept = quota(&client, &controlled.name).await;
    assert_eq!(kept.resource_version(), kept_before.resource_version());
    assert!(!kept.labels().contains_key(MANAGED_BY));
    assert!(
        event_notes(&client, &taker.name, "Adopted")
            .await
            .is_empty(),
        "nothing was adopted"
    );
    drop(taker);
    drop(holder);
}

#[tokio::test]
async fn always_takes_a_class_in_place_but_never_one_whose_immutable_fields_differ() {
    use k8s_openapi::api::storage::v1::StorageClass;
    let client = client().await;
    install_crd(&client).await;
    let operator = Operator::start(&unique_name("adopt-class")).await;
    let classes: Api<StorageClass> = Api::all(client.clone());
    let mutable = TestClass::create("e2e-adopt-class", "example.com/e2e");
    let immutable = TestClass::create("e2e-adopt-fixed", "example.com/e2e");
    let mutable_before = classes.get(&mutable.name).await.unwrap();
    let immutable_before = classes.get(&immutable.name).await.unwrap();
    let policy = TestPolicy::create(
        &client,
        &operator,
        "adopt-class",
        json!({"adoptionPolicy": "Always", "storage": {"classes": [
            {"name": mutable.name, "provisioner": "example.com/e2e", "allowVolumeExpansion": true},
            {"name": immutable.name, "provisioner": "example.com/e2e", "reclaimPolicy": "Retain"}]}}),
    )
    .await;
    let status = policy.wait_condition(&client, "Stalled", "True").await;
    let states: Vec<(String, String)> = status
        .storage_classes
        .iter()
        .map(|c| (c.name.clone(), c.state.clone()))
        .collect();
    let mut expected = vec![
        (mutable.name.clone(), "Ready".to_owned()),
        (immutable.name.clone(), "NotOwned".to_owned()),
    ];
    expected.sort();
    let mut states = states;
    states.sort();
    assert_eq!(states, expected, "{status:?}");
    assert!(
        status.failures[0].message.contains(
            "not adopted: its reclaimPolicy differs from the policy's, and Kubernetes cannot change it in place"
        ),
        "{}",
        status.failures[0].message
    );
    let adopted = classes.get(&mutable.name).await.unwrap();
    assert_eq!(
        adopted.uid(),
        mutable_before.uid(),
        "updated in place, not recreated"
    );
    assert_eq!(adopted.allow_volume_expansion, Some(true));
    assert_eq!(adopted.labels()[POLICY], policy.name);
    let left = classes.get(&immutable.name).await.unwrap();
    assert_eq!(left.resource_version(), immutable_before.resource_version());
    let notes = wait_event_notes(&client, &policy.name, "Adopted", |n| !n.is_empty()).await;
    assert_eq!(
        notes,
        [format!(
            "adopted 1 existing object: StorageClass/{} (changed allowVolumeExpansion)",
            mutable.name
        )]
    );
    drop(policy);
}
