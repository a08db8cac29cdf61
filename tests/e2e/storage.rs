//! Storage governance against the real control plane: owned StorageClasses (created, updated in
//! place, recreated on an immutable change, never taking over a class that is not ours, one owner
//! among competing policies), the allow-list and per-class quotas as the API server enforces them
//! on PersistentVolumeClaims, and deletionPolicy for both.

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, ResourceQuota};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tenantry::api::{MANAGED_BY_LABEL, POLICY_LABEL, StorageClassState};

use crate::harness::{
    Operator, TestClass, TestNamespace, TestPolicy, client, eventually, ready_condition,
    unique_name, wait_event_notes, wait_gone, wait_present,
};
use crate::smoke::install_crd;

/// Name of the storage section's quota (the contract leaves it to us; see storage_quota.rs).
const STORAGE_QUOTA: &str = "tenantry-storage";

async fn setup(shard_prefix: &str) -> (Client, Operator) {
    let client = client().await;
    install_crd(&client).await;
    let operator = Operator::start(&unique_name(shard_prefix)).await;
    (client, operator)
}

fn classes(client: &Client) -> Api<StorageClass> {
    Api::all(client.clone())
}

/// Waits until the class exists and `check` holds for it, and returns it.
async fn wait_class(
    client: &Client,
    name: &str,
    what: &str,
    check: impl Fn(&StorageClass) -> bool,
) -> StorageClass {
    let api = classes(client);
    eventually(&format!("StorageClass {name}: {what}"), || {
        let api = api.clone();
        let check = &check;
        async move { api.get_opt(name).await.unwrap().filter(|c| check(c)) }
    })
    .await
}

async fn wait_class_gone(client: &Client, name: &str) {
    let api = classes(client);
    eventually(&format!("StorageClass {name} to be gone"), || {
        let api = api.clone();
        async move { api.get_opt(name).await.unwrap().is_none().then_some(()) }
    })
    .await;
}

fn policy_of(class: &StorageClass) -> Option<&str> {
    class.labels().get(POLICY_LABEL).map(String::as_str)
}

/// Waits until the policy's status reports the class in this state, and returns the status.
async fn wait_class_state(
    client: &Client,
    policy: &TestPolicy,
    class: &str,
    state: &str,
) -> tenantry::api::TenantPolicyStatus {
    let api = Api::<tenantry::api::TenantPolicy>::all(client.clone());
    let want = StorageClassState {
        name: class.into(),
        state: state.into(),
    };
    eventually(
        &format!("policy {} to report {class} {state}", policy.name),
        || {
            let api = api.clone();
            let want = want.clone();
            async move {
                let p = api.get(&policy.name).await.ok()?;
                let s = p.status?;
                (s.observed_generation == p.metadata.generation
                    && s.storage_classes.contains(&want))
                .then_some(s)
            }
        },
    )
    .await
}

fn class_spec(name: &str, fields: Value) -> Value {
    let mut class = json!({"name": name, "provisioner": "example.com/e2e"});
    class
        .as_object_mut()
        .unwrap()
        .extend(fields.as_object().unwrap().clone());
    class
}

fn claim(name: &str, class: Option<&str>) -> PersistentVolumeClaim {
    let mut spec =
        json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}});
    if let Some(class) = class {
        spec["storageClassName"] = json!(class);
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

/// Creates a claim; the API server's refusal message on failure.
/// Creates a claim; the API server's answer. Quota admission answers 409 when its own update of
/// the quota's usage lost a race with another writer of that quota (kube-controller-manager's
/// recount) more often than it retries; a client tries again, and so does this, with a deadline:
/// a refusal by the quota is a 403 and returned as it is.
async fn create_claim(
    client: &Client,
    ns: &str,
    name: &str,
    class: Option<&str>,
) -> Result<(), String> {
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match claims
            .create(&PostParams::default(), &claim(name, class))
            .await
        {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s))
                if s.reason == "Conflict" && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(kube::Error::Api(s)) => return Err(s.message),
            Err(other) => return Err(other.to_string()),
        }
    }
}

/// Refused for a class capped at zero: by the quota itself, or (where config/admission is
/// installed, as the security tests do for the whole cluster) first by the admission policy that
/// reads the same quota and names the policy.
fn refused_for_class(message: &str, class: &str) -> bool {
    (message.contains("exceeded quota: tenantry-storage")
        && message.contains(&quota_key(class, "persistentvolumeclaims")))
        || message.contains(&format!(
            "StorageClass {class} may not be used in namespace"
        ))
}

fn quota_key(class: &str, resource: &str) -> String {
    format!("{class}.storageclass.storage.k8s.io/{resource}")
}

/// Waits until the storage quota in `ns` caps these keys at these values, both in its spec and in
/// the status the quota controller computes (admission judges claims by the status).
pub async fn wait_storage_caps(
    client: &Client,
    ns: &str,
    caps: &[(String, &str)],
) -> ResourceQuota {
    let api: Api<ResourceQuota> = Api::namespaced(client.clone(), ns);
    eventually(&format!("{ns}/{STORAGE_QUOTA} to enforce {caps:?}"), || {
        let api = api.clone();
        async move {
            let quota = api.get_opt(STORAGE_QUOTA).await.unwrap()?;
            let spec = quota.spec.as_ref()?.hard.as_ref()?;
            let status = quota.status.as_ref()?.hard.as_ref()?;
            caps.iter()
                .all(|(k, v)| {
                    spec.get(k).map(|q| q.0.as_str()) == Some(*v)
                        && status.get(k).map(|q| q.0.as_str()) == Some(*v)
                })
                .then_some(quota.clone())
        }
    })
    .await
}

#[tokio::test]
async fn an_owned_class_is_created_updated_in_place_recreated_on_immutable_change_and_kept() {
    let (client, operator) = setup("storage-class").await;
    let name = unique_name("e2e-class");
    let spec = |fields: Value| json!({"storage": {"classes": [class_spec(&name, fields)]}});
    let policy = TestPolicy::create(
        &client,
        &operator,
        "storage-class",
        spec(json!({"parameters": {"type": "ssd"}, "reclaimPolicy": "Delete"})),
    )
    .await;

    let created = wait_class(&client, &name, "created by the policy", |c| {
        policy_of(c) == Some(policy.name.as_str())
    })
    .await;
    assert_eq!(created.provisioner, "example.com/e2e");
    assert_eq!(created.labels().get(MANAGED_BY_LABEL).unwrap(), "tenantry");
    assert_eq!(
        created.owner_references()[0].name,
        policy.name,
        "owned by the cluster-scoped policy"
    );
    wait_class_state(&client, &policy, &name, "Ready").await;
    let uid = created.uid().unwrap();

    // Mutable fields: updated in place, same object.
    policy
        .set_spec(
            &client,
            spec(
                json!({"parameters": {"type": "ssd"}, "reclaimPolicy": "Delete",
                "allowVolumeExpansion": true, "mountOptions": ["noatime"]}),
            ),
        )
        .await;
    let expanded = wait_class(&client, &name, "expandable", |c| {
        c.allow_volume_expansion == Some(true)
    })
    .await;
    assert_eq!(expanded.uid().unwrap(), uid, "updated in place");
    assert_eq!(expanded.mount_options, Some(vec!["noatime".to_owned()]));

    // Drift of a mutable field by a cluster admin: reverted, same object.
    classes(&client)
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"allowVolumeExpansion": false})),
        )
        .await
        .unwrap();
    let reverted = wait_class(&client, &name, "drift reverted", |c| {
        c.allow_volume_expansion == Some(true) && c.uid().as_deref() == Some(uid.as_str())
    })
    .await;
    assert_eq!(reverted.mount_options, Some(vec!["noatime".to_owned()]));

    // An immutable field: deleted and created anew, with an Event saying why.
    policy
        .set_spec(
            &client,
            spec(
                json!({"parameters": {"type": "ssd"}, "reclaimPolicy": "Retain",
                "allowVolumeExpansion": true, "mountOptions": ["noatime"]}),
            ),
        )
        .await;
    let recreated = wait_class(&client, &name, "recreated with Retain", |c| {
        c.reclaim_policy.as_deref() == Some("Retain")
    })
    .await;
    assert_ne!(recreated.uid().unwrap(), uid, "a new object");
    assert_eq!(recreated.allow_volume_expansion, Some(true));
    let notes = wait_event_notes(&client, &policy.name, "Recreated", |n| !n.is_empty()).await;
    assert!(
        notes[0].contains(&name) && notes[0].contains("reclaimPolicy"),
        "{notes:?}"
    );
    wait_class_state(&client, &policy, &name, "Ready").await;

    // Dropping the class from the policy deletes it (deletionPolicy Delete).
    policy
        .set_spec(&client, json!({"storage": {"classes": []}}))
        .await;
    wait_class_gone(&client, &name).await;
    drop(policy);
}

#[tokio::test]
async fn an_existing_class_that_is_not_ours_is_left_untouched_and_reported() {
    let (client, operator) = setup("storage-theirs").await;
    let theirs = TestClass::create("e2e-theirs", "example.com/theirs");
    let before = classes(&client).get(&theirs.name).await.unwrap();
    let policy = TestPolicy::create(
        &client,
        &operator,
        "storage-theirs",
        json!({"storage": {"classes": [{"name": theirs.name, "provisioner": "example.com/ours", "reclaimPolicy": "Retain"}]}}),
    )
    .await;

    let status = wait_class_state(&client, &policy, &theirs.name, "NotOwned").await;
    assert!(
        status.failures.iter().any(|f| f.kind == "StorageClass"
            && f.name == theirs.name
            && f.reason.as_str() == "NotOwned"),
        "{:?}",
        status.failures
    );
    let ready = ready_condition(&status);
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "NotOwned")
    );
    wait_event_notes(&client, &policy.name, "NotOwned", |notes| {
        notes.iter().any(|n| n.contains(&theirs.name))
    })
    .await;
    let after = classes(&client).get(&theirs.name).await.unwrap();
    assert_eq!(
        after.metadata.resource_version,
        before.metadata.resource_version
    );
    assert_eq!(after.metadata.uid, before.metadata.uid);
    assert_eq!(after.provisioner, "example.com/theirs");
    assert!(after.labels().get(MANAGED_BY_LABEL).is_none());
    drop(policy);
    assert_eq!(
        classes(&client)
            .get(&theirs.name)
            .await
            .unwrap()
            .metadata
            .resource_version,
        before.metadata.resource_version,
        "deleting the policy leaves it alone too"
    );
}

#[tokio::test]
async fn two_policies_declaring_one_class_the_higher_priority_owns_it() {
    let (client, operator) = setup("storage-conflict").await;
    let name = unique_name("e2e-shared");
    let low = TestPolicy::create(
        &client,
        &operator,
        "storage-low",
        json!({"priority": 1, "storage": {"classes": [class_spec(&name, json!({}))]}}),
    )
    .await;
    wait_class(&client, &name, "owned by the low-priority policy", |c| {
        policy_of(c) == Some(low.name.as_str())
    })
    .await;

    let high = TestPolicy::create(
        &client,
        &operator,
        "storage-high",
        json!({"priority": 5, "storage": {"classes": [class_spec(&name, json!({"allowVolumeExpansion": true}))]}}),
    )
    .await;
    wait_class(&client, &name, "taken over by the higher priority", |c| {
        policy_of(c) == Some(high.name.as_str()) && c.allow_volume_expansion == Some(true)
    })
    .await;
    wait_class_state(&client, &high, &name, "Ready").await;
    let status = wait_class_state(&client, &low, &name, "Shadowed").await;
    let ready = ready_condition(&status);
    assert_eq!(ready.reason, "Shadowed");
    assert!(ready.message.contains(&high.name), "{}", ready.message);
    wait_event_notes(&client, &low.name, "ClassShadowed", |n| !n.is_empty()).await;
    let owners = classes(&client)
        .get(&name)
        .await
        .unwrap()
        .owner_references()
        .iter()
        .filter(|r| r.controller == Some(true))
        .map(|r| r.name.clone())
        .collect::<Vec<_>>();
    assert_eq!(owners, vec![high.name.clone()], "one controller");

    // The winner goes: the other policy owns the class again.
    drop(high);
    wait_class(&client, &name, "back with the low-priority policy", |c| {
        policy_of(c) == Some(low.name.as_str()) && c.allow_volume_expansion.is_none()
    })
    .await;
    wait_class_state(&client, &low, &name, "Ready").await;
    drop(low);
    wait_class_gone(&client, &name).await;
}

#[tokio::test]
async fn the_allow_list_caps_every_other_class_and_the_api_server_judges_claims_by_it() {
    let (client, operator) = setup("storage-allow").await;
    let allowed = TestClass::create("e2e-allowed", "example.com/e2e");
    let denied = TestClass::create("e2e-denied", "example.com/e2e");
    let ns = TestNamespace::create(&client, "e2e-storage").await;
    let policy = TestPolicy::create(
        &client,
        &operator,
        "storage-allow",
        json!({"namespaces": [ns.name], "storage": {
            "allowedClasses": [allowed.name],
            "quotas": {allowed.name.as_str(): {"persistentvolumeclaims": "1", "requests.storage": "5Gi"}}}}),
    )
    .await;
    let quota = wait_storage_caps(
        &client,
        &ns.name,
        &[
            (quota_key(&denied.name, "requests.storage"), "0"),
            (quota_key(&denied.name, "persistentvolumeclaims"), "0"),
            (quota_key(&allowed.name, "persistentvolumeclaims"), "1"),
            (quota_key(&allowed.name, "requests.storage"), "5Gi"),
        ],
    )
    .await;
    assert_eq!(quota.labels().get(POLICY_LABEL), Some(&policy.name));
    policy.wait_ready(&client).await;
    let generation = policy.get(&client).await.metadata.generation;
    ns.wait_for_default_service_account(&client).await;

    // A claim of a disallowed class: refused by the API server with the quota message.
    let refused = create_claim(&client, &ns.name, "denied", Some(&denied.name))
        .await
        .expect_err("a claim of a disallowed class");
    assert!(refused_for_class(&refused, &denied.name), "{refused}");
    // Of the allowed class: accepted, up to its per-class cap.
    create_claim(&client, &ns.name, "allowed", Some(&allowed.name))
        .await
        .expect("a claim of the allowed class");
    let over = create_claim(&client, &ns.name, "allowed-2", Some(&allowed.name))
        .await
        .expect_err("a second claim over the per-class cap of 1");
    assert!(
        over.contains("exceeded quota: tenantry-storage")
            && over.contains(&quota_key(&allowed.name, "persistentvolumeclaims")),
        "{over}"
    );
    // storageClassName "" names no class: not affected.
    create_claim(&client, &ns.name, "no-class", Some(""))
        .await
        .expect("a claim with storageClassName \"\"");

    // A class created later is capped without touching the policy.
    let later = TestClass::create("e2e-later", "example.com/e2e");
    wait_storage_caps(
        &client,
        &ns.name,
        &[(quota_key(&later.name, "persistentvolumeclaims"), "0")],
    )
    .await;
    let refused = create_claim(&client, &ns.name, "later", Some(&later.name))
        .await
        .expect_err("a claim of a class created later");
    assert!(refused_for_class(&refused, &later.name), "{refused}");

    // A claim without a class is judged by the default class: make the new class the default.
    classes(&client)
        .patch(
            &later.name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"storageclass.kubernetes.io/is-default-class": "true"}}})),
        )
        .await
        .unwrap();
    // Admission sees the new default through its informer, a moment later: until then a claim
    // gets no class (and is let through, uncapped); such a claim is removed and the next tried.
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns.name);
    let attempt = std::sync::atomic::AtomicU32::new(0);
    let defaulted = eventually(
        "a claim without a class to be given the default class",
        || {
            let (client, pvcs, ns) = (client.clone(), pvcs.clone(), ns.name.clone());
            let name = format!(
                "defaulted-{}",
                attempt.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            );
            async move {
                match create_claim(&client, &ns, &name, None).await {
                    Err(message) => Some(Err(message)),
                    Ok(()) => {
                        let class = pvcs.get(&name).await.unwrap().spec?.storage_class_name;
                        let _ = pvcs.delete(&name, &DeleteParams::default()).await;
                        class.map(Ok)
                    }
                }
            }
        },
    )
    .await;
    let refused =
        defaulted.expect_err("a claim without a class admitted with the disallowed default");
    assert!(refused_for_class(&refused, &later.name), "{refused}");

    // The class goes: its cap goes with it.
    let later_cap = quota_key(&later.name, "persistentvolumeclaims");
    drop(later);
    let api: Api<ResourceQuota> = Api::namespaced(client.clone(), &ns.name);
    eventually("the deleted class's cap removed", || {
        let api = api.clone();
        let later_cap = later_cap.clone();
        let allowed_cap = quota_key(&allowed.name, "persistentvolumeclaims");
        async move {
            let hard = api.get(STORAGE_QUOTA).await.ok()?.spec?.hard?;
            (hard.contains_key(&allowed_cap) && !hard.contains_key(&later_cap)).then_some(())
        }
    })
    .await;
    assert_eq!(
        policy.get(&client).await.metadata.generation,
        generation,
        "the policy was never changed"
    );
    for name in ["allowed", "no-class"] {
        let _ = pvcs.delete(name, &DeleteParams::default()).await;
    }
    drop(policy);
}

#[tokio::test]
async fn unselection_and_policy_deletion_follow_the_deletion_policy_for_classes_and_storage_quotas()
{
    let (client, operator) = setup("storage-lifecycle").await;
    let other = TestClass::create("e2e-capped", "example.com/e2e");
    let caps = [(quota_key(&other.name, "persistentvolumeclaims"), "0")];

    // Delete: unselecting a namespace removes its storage quota; deleting the policy removes
    // the rest, the class included.
    let kept = TestNamespace::create(&client, "e2e-storage-del").await;
    let dropped = TestNamespace::create(&client, "e2e-storage-unsel").await;
    let class = unique_name("e2e-del-class");
    let spec = |namespaces: Vec<&str>| {
        json!({"namespaces": namespaces, "storage": {
            "classes": [class_spec(&class, json!({}))], "allowedClasses": [class]}})
    };
    let deleting = TestPolicy::create(
        &client,
        &operator,
        "storage-delete",
        spec(vec![&kept.name, &dropped.name]),
    )
    .await;
    wait_storage_caps(&client, &kept.name, &caps).await;
    wait_storage_caps(&client, &dropped.name, &caps).await;
    wait_class(&client, &class, "created", |_| true).await;
    deleting.set_spec(&client, spec(vec![&kept.name])).await;
    wait_gone::<ResourceQuota>(&client, &dropped.name, STORAGE_QUOTA).await;
    drop(deleting);
    wait_class_gone(&client, &class).await;
    wait_gone::<ResourceQuota>(&client, &kept.name, STORAGE_QUOTA).await;

    // Retain: the class and the quota stay, without Tenantry's labels and owner.
    let ns = TestNamespace::create(&client, "e2e-storage-retain").await;
    let class = unique_name("e2e-kept-class");
    let _cleanup = TestClass::named(&class);
    let retaining = TestPolicy::create(
        &client,
        &operator,
        "storage-retain",
        json!({"namespaces": [ns.name], "deletionPolicy": "Retain", "storage": {
            "classes": [class_spec(&class, json!({}))], "allowedClasses": [class]}}),
    )
    .await;
    wait_storage_caps(&client, &ns.name, &caps).await;
    let before = wait_class(&client, &class, "created", |_| true).await;
    drop(retaining);
    let released = wait_class(&client, &class, "released", |c| {
        c.labels().get(MANAGED_BY_LABEL).is_none()
    })
    .await;
    assert_eq!(released.uid(), before.uid(), "the same class, kept");
    assert!(released.owner_references().is_empty());
    let quota: ResourceQuota = wait_present(&client, &ns.name, STORAGE_QUOTA).await;
    assert!(
        quota.labels().get(POLICY_LABEL).is_none(),
        "{:?}",
        quota.labels()
    );
    assert!(quota.owner_references().is_empty());
}
