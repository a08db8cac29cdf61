//! Tenants cannot bypass governance: the ValidatingAdmissionPolicy in config/admission refuses
//! every change to a managed object, whatever RBAC allows, while cluster machinery and Tenantry
//! keep working. Users are impersonated with kubectl --as.

use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::harness::{
    Operator, TestClass, TestNamespace, TestPolicy, client, eventually, kubectl, kubectl_ok,
    kubectl_with_input, repo_root, unique_name, wait_gone,
};
use crate::smoke::install_crd;
use crate::storage::wait_storage_caps;

/// (user, attempt, kubectl arguments, stdin, the refusal expected in stderr)
type Attempt<'a> = (&'a str, &'a str, Vec<&'a str>, Option<&'a str>, String);

pub(crate) fn install_admission_policy() {
    kubectl_ok(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-k",
        repo_root().join("config/admission").to_str().unwrap(),
    ]);
}

async fn resource_versions(client: &Client, ns: &str) -> Vec<String> {
    vec![
        Api::<LimitRange>::namespaced(client.clone(), ns)
            .get("defaults")
            .await
            .unwrap()
            .resource_version()
            .unwrap(),
        Api::<ResourceQuota>::namespaced(client.clone(), ns)
            .get("compute")
            .await
            .unwrap()
            .resource_version()
            .unwrap(),
        Api::<PodDisruptionBudget>::namespaced(client.clone(), ns)
            .get("web")
            .await
            .unwrap()
            .resource_version()
            .unwrap(),
    ]
}

#[tokio::test]
async fn tenants_cannot_change_governed_objects_but_cluster_machinery_and_admins_can() {
    let client = client().await;
    install_crd(&client).await;
    install_admission_policy();
    let operator = Operator::start(&unique_name("security")).await;
    let ns = TestNamespace::create(&client, "e2e-security").await;
    let n = ns.name.as_str();
    let admin_user = unique_name("alice");
    let owner_user = unique_name("carol");
    kubectl_ok(&[
        "create",
        "rolebinding",
        "tenant-admin",
        "--clusterrole=admin",
        &format!("--user={admin_user}"),
        "-n",
        n,
    ]);
    // What many platforms hand a namespace's owners: full control of these kinds in it.
    kubectl_ok(&[
        "create",
        "role",
        "namespace-owner",
        "-n",
        n,
        "--verb=*",
        "--resource=limitranges,resourcequotas,poddisruptionbudgets.policy",
    ]);
    kubectl_ok(&[
        "create",
        "rolebinding",
        "namespace-owner",
        "--role=namespace-owner",
        &format!("--user={owner_user}"),
        "-n",
        n,
    ]);

    // A class the namespace may not use (the allow-list is empty).
    let disallowed = TestClass::create("e2e-sec-class", "example.com/e2e");
    let policy = TestPolicy::create(&client, &operator, "secure", json!({
        "namespaces": [n],
        "limitRanges": [{"name": "defaults", "limits": [{"type": "Container", "default": {"cpu": "300m"}, "defaultRequest": {"cpu": "200m"}}]}],
        "resourceQuotas": [{"name": "compute", "hard": {"pods": "10"}}],
        "podDisruptionBudgets": [{"name": "web", "selector": {"matchLabels": {"app": "web"}}, "minAvailable": 1}],
        "storage": {"allowedClasses": []},
    }))
    .await;
    policy.wait_ready(&client).await;
    let class_cap = format!(
        "{}.storageclass.storage.k8s.io/persistentvolumeclaims",
        disallowed.name
    );
    wait_storage_caps(&client, n, &[(class_cap.clone(), "0")]).await;
    ns.wait_for_default_service_account(&client).await;
    let claim = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data"},
        "spec": {"storageClassName": disallowed.name, "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}}}})
    .to_string();
    let before = resource_versions(&client, n).await;
    let governed = |kind: &str, name: &str| {
        format!(
            "{kind} {name} is governed by TenantPolicy {}: change it in that policy, in git",
            policy.name
        )
    };
    let forged = json!({"apiVersion": "v1", "kind": "LimitRange",
        "metadata": {"name": "forged", "labels": {"app.kubernetes.io/managed-by": "tenantry", "tenantry.io/policy": policy.name}},
        "spec": {"limits": [{"type": "Container", "max": {"cpu": "64"}}]}})
    .to_string();

    let rbac = "forbidden: User";
    let attempts: Vec<Attempt> = vec![
        (
            &admin_user,
            "delete the LimitRange",
            vec!["delete", "limitrange", "defaults"],
            None,
            rbac.into(),
        ),
        (
            &admin_user,
            "raise the quota's hard",
            vec![
                "patch",
                "resourcequota",
                "compute",
                "--type=merge",
                "-p",
                r#"{"spec":{"hard":{"pods":"1000"}}}"#,
            ],
            None,
            rbac.into(),
        ),
        (
            &admin_user,
            "delete the storage quota",
            vec!["delete", "resourcequota", "tenantry-storage"],
            None,
            rbac.into(),
        ),
        (
            &admin_user,
            "create a PVC of a disallowed class",
            vec!["create", "-f", "-"],
            Some(claim.as_str()),
            format!(
                "StorageClass {} may not be used in namespace {n}: TenantPolicy {} caps it at zero claims",
                disallowed.name, policy.name
            ),
        ),
        (
            &admin_user,
            "delete the PDB",
            vec!["delete", "pdb", "web"],
            None,
            governed("PodDisruptionBudget", "web"),
        ),
        (
            &admin_user,
            "edit the PDB",
            vec![
                "patch",
                "pdb",
                "web",
                "--type=merge",
                "-p",
                r#"{"spec":{"minAvailable":0}}"#,
            ],
            None,
            governed("PodDisruptionBudget", "web"),
        ),
        (
            &admin_user,
            "remove the PDB's managed-by label",
            vec!["label", "pdb", "web", "app.kubernetes.io/managed-by-"],
            None,
            governed("PodDisruptionBudget", "web"),
        ),
        (
            &admin_user,
            "delete all PDBs",
            vec!["delete", "pdb", "--all"],
            None,
            governed("PodDisruptionBudget", "web"),
        ),
        (
            &owner_user,
            "delete the LimitRange",
            vec!["delete", "limitrange", "defaults"],
            None,
            governed("LimitRange", "defaults"),
        ),
        (
            &owner_user,
            "edit the LimitRange",
            vec![
                "patch",
                "limitrange",
                "defaults",
                "--type=merge",
                "-p",
                r#"{"spec":{"limits":[{"type":"Container","max":{"cpu":"64"}}]}}"#,
            ],
            None,
            governed("LimitRange", "defaults"),
        ),
        (
            &owner_user,
            "raise the quota's hard",
            vec![
                "patch",
                "resourcequota",
                "compute",
                "--type=merge",
                "-p",
                r#"{"spec":{"hard":{"pods":"1000"}}}"#,
            ],
            None,
            governed("ResourceQuota", "compute"),
        ),
        (
            &owner_user,
            "remove the quota's managed-by label",
            vec![
                "label",
                "resourcequota",
                "compute",
                "app.kubernetes.io/managed-by-",
            ],
            None,
            governed("ResourceQuota", "compute"),
        ),
        (
            &owner_user,
            "delete the storage quota",
            vec!["delete", "resourcequota", "tenantry-storage"],
            None,
            governed("ResourceQuota", "tenantry-storage"),
        ),
        (
            &owner_user,
            "delete the PDB",
            vec!["delete", "pdb", "web"],
            None,
            governed("PodDisruptionBudget", "web"),
        ),
        (
            &owner_user,
            "create an object labelled as Tenantry's",
            vec!["apply", "-f", "-"],
            Some(forged.as_str()),
            governed("LimitRange", "forged"),
        ),
    ];
    let mut matrix = Vec::new();
    let mut wrong = Vec::new();
    for (user, attempt, args, input, refusal) in &attempts {
        let mut full: Vec<&str> = args.clone();
        full.extend(["-n", n, "--as", user]);
        let out = kubectl_with_input(&full, *input);
        let outcome = if out.success {
            "ALLOWED".to_owned()
        } else {
            out.stderr.trim().lines().last().unwrap_or("").to_owned()
        };
        matrix.push(format!("{user:<24} {attempt:<38} {outcome}"));
        if out.success || !out.stderr.contains(refusal.as_str()) {
            wrong.push(format!(
                "{user} / {attempt}: expected {refusal:?}, got {outcome:?}"
            ));
        }
    }
    println!("attempt matrix:\n{}", matrix.join("\n"));
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(
        resource_versions(&client, n).await,
        before,
        "a refused attempt changed something"
    );
    assert!(
        Api::<LimitRange>::namespaced(client.clone(), n)
            .get_opt("forged")
            .await
            .unwrap()
            .is_none()
    );

    // A cluster admin (system:masters) may edit: break-glass, reverted by Tenantry as drift.
    kubectl_ok(&[
        "patch",
        "resourcequota",
        "compute",
        "-n",
        n,
        "--type=merge",
        "-p",
        r#"{"spec":{"hard":{"pods":"999"}}}"#,
    ]);
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), n);
    eventually("the cluster admin's edit to be reverted", || {
        let quotas = quotas.clone();
        async move {
            (quotas.get("compute").await.ok()?.spec?.hard?.get("pods")?.0 == "10").then_some(())
        }
    })
    .await;

    // Namespace deletion still completes (namespace controller), policy deletion still
    // garbage-collects (garbage collector).
    let doomed = TestNamespace::create(&client, "e2e-security-doomed").await;
    policy.set_spec(&client, json!({"namespaces": [n, doomed.name],
        "limitRanges": [{"name": "defaults", "limits": [{"type": "Container", "default": {"cpu": "300m"}, "defaultRequest": {"cpu": "200m"}}]}],
        "resourceQuotas": [{"name": "compute", "hard": {"pods": "10"}}],
        "podDisruptionBudgets": [{"name": "web", "selector": {"matchLabels": {"app": "web"}}, "minAvailable": 1}]}))
    .await;
    assert_eq!(policy.wait_ready(&client).await.ready_namespaces, 2);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .delete(&doomed.name, &DeleteParams::default())
        .await
        .unwrap();
    let gone = doomed.name.clone();
    eventually("the governed namespace to finish terminating", || {
        let namespaces = namespaces.clone();
        let gone = gone.clone();
        async move {
            namespaces
                .get_opt(&gone)
                .await
                .unwrap()
                .is_none()
                .then_some(())
        }
    })
    .await;
    drop(policy);
    // The garbage collector removes the deleted policy's children.
    wait_gone::<LimitRange>(&client, n, "defaults").await;
}

#[tokio::test]
async fn the_tenantry_service_account_cannot_touch_what_it_does_not_manage() {
    let client = client().await;
    install_crd(&client).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let _ = namespaces
        .create(
            &Default::default(),
            &serde_json::from_value(json!({"metadata": {"name": "tenantry-system"}})).unwrap(),
        )
        .await;
    kubectl_ok(&[
        "apply",
        "--server-side",
        "-k",
        repo_root().join("config/rbac").to_str().unwrap(),
    ]);
    let sa = "system:serviceaccount:tenantry-system:tenantry";
    let expectations: &[(&str, &str, &str, bool)] = &[
        ("list", "namespaces", "", true),
        ("watch", "tenantpolicies.tenantry.io", "", true),
        ("patch", "tenantpolicies.tenantry.io/status", "", true),
        ("create", "limitranges", "default", true),
        ("patch", "resourcequotas", "default", true),
        ("delete", "poddisruptionbudgets.policy", "default", true),
        ("create", "events.events.k8s.io", "default", true),
        (
            "update",
            "leases.coordination.k8s.io",
            "tenantry-system",
            true,
        ),
        ("get", "secrets", "default", false),
        ("list", "secrets", "", false),
        ("get", "secrets", "tenantry-system", false),
        ("update", "tenantpolicies.tenantry.io", "", false),
        ("delete", "tenantpolicies.tenantry.io", "", false),
        ("create", "pods", "default", false),
        ("update", "configmaps", "default", false),
        ("create", "deployments.apps", "default", false),
        ("delete", "namespaces", "", false),
        ("update", "namespaces", "", false),
        ("get", "nodes", "", false),
        (
            "create",
            "clusterrolebindings.rbac.authorization.k8s.io",
            "",
            false,
        ),
        (
            "escalate",
            "clusterroles.rbac.authorization.k8s.io",
            "",
            false,
        ),
        ("impersonate", "users", "", false),
        ("create", "serviceaccounts/token", "tenantry-system", false),
        ("update", "leases.coordination.k8s.io", "kube-system", false),
        // StorageClasses are governed too (storage.classes).
        ("create", "storageclasses.storage.k8s.io", "", true),
        ("update", "storageclasses.storage.k8s.io", "", false),
        ("create", "persistentvolumeclaims", "default", false),
        ("delete", "persistentvolumes", "", false),
    ];
    let mut matrix = Vec::new();
    let mut wrong = Vec::new();
    for (verb, resource, ns, expected) in expectations {
        let mut args = vec!["auth", "can-i", verb, resource, "--as", sa];
        if ns.is_empty() {
            args.push("--all-namespaces");
        } else {
            args.extend(["-n", ns]);
        }
        let answer = kubectl(&args).stdout.trim() == "yes";
        matrix.push(format!(
            "{verb:<12} {resource:<48} {:<16} {}",
            if ns.is_empty() { "(all)" } else { ns },
            if answer { "yes" } else { "no" }
        ));
        if answer != *expected {
            wrong.push(format!(
                "can-i {verb} {resource} in {ns:?}: {answer}, expected {expected}"
            ));
        }
    }
    println!("kubectl auth can-i for {sa}:\n{}", matrix.join("\n"));
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
