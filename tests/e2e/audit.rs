//! `tenantry audit` on a namespace as the operations notes found them: BestEffort workloads, no
//! quota or LimitRange, a PDB that blocks every eviction, a workload under two PDBs.

use std::process::Command;

use serde_json::{Value, json};

use kube::api::Api;

use crate::harness::{
    Operator, TestNamespace, TestPolicy, client, eventually, kubeconfig_path, kubectl,
    kubectl_with_input, unique_name,
};

fn audit(ns: &str) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .args(["audit", "-n", ns, "-o", "json"])
        .env("KUBECONFIG", kubeconfig_path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn audit_reports_qos_classes_and_the_field_storys_findings() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "e2e-audit").await;
    ns.wait_for_default_service_account(&client).await;
    let deployment = |name: &str, replicas: i32, resources: Value| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns.name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name, "tier": "backend"}},
                    "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1", "resources": resources}]}}}})
    };
    let pdb = |name: &str, selector: Value, budget: Value| {
        let mut spec = json!({"selector": {"matchLabels": selector}});
        spec.as_object_mut()
            .unwrap()
            .extend(budget.as_object().unwrap().clone());
        json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name, "namespace": ns.name}, "spec": spec})
    };
    for object in [
        deployment("api", 2, json!({})),
        deployment(
            "trino",
            3,
            json!({"requests": {"cpu": "500m", "memory": "2Gi"}, "limits": {"memory": "4Gi"}}),
        ),
        deployment(
            "db",
            1,
            json!({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}),
        ),
        pdb(
            "trino-all",
            json!({"app": "trino"}),
            json!({"minAvailable": 3}),
        ),
        pdb(
            "backend",
            json!({"tier": "backend"}),
            json!({"maxUnavailable": 1}),
        ),
    ] {
        let out = kubectl_with_input(&["apply", "-f", "-"], Some(&object.to_string()));
        assert!(out.success, "{}", out.stderr);
    }
    let name = ns.name.clone();
    let report = eventually("the six pods to exist", || {
        let name = name.clone();
        async move {
            let report = audit(&name);
            (report["namespaces"][0]["pods"] == 6).then_some(report)
        }
    })
    .await;
    let row = &report["namespaces"][0];
    assert_eq!(
        row["qos"],
        json!({"BestEffort": 2, "Burstable": 3, "Guaranteed": 1}),
        "{row}"
    );
    assert_eq!(row["requests"]["cpu"], "2500m");
    let qos: Vec<(String, String)> = report["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["name"].as_str().unwrap().to_owned(),
                w["qos"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        qos,
        [
            ("api".into(), "BestEffort".into()),
            ("db".into(), "Guaranteed".into()),
            ("trino".into(), "Burstable".into())
        ]
    );
    let findings: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    let n = &ns.name;
    for expected in [
        format!("namespace {n} has no ResourceQuota"),
        format!("namespace {n} has no LimitRange"),
        format!("Deployment {n}/api is BestEffort"),
        format!(
            "PodDisruptionBudget {n}/trino-all blocks every voluntary eviction of Deployment trino (3 replicas)"
        ),
        format!("Deployment {n}/trino is matched by 2 PodDisruptionBudgets"),
    ] {
        assert!(
            findings.iter().any(|f| f.starts_with(&expected)),
            "missing {expected:?} in {findings:#?}"
        );
    }
    assert!(
        !findings.iter().any(|f| f.contains("/db is BestEffort")),
        "{findings:#?}"
    );
}

fn apply(object: &Value) {
    let out = kubectl_with_input(&["apply", "-f", "-"], Some(&object.to_string()));
    assert!(out.success, "{}", out.stderr);
}

fn quantity_of(v: &Value) -> i128 {
    tenantry::model::quantity::stored_value(v.as_str().unwrap_or("0"))
        .unwrap()
        .0
}

/// The audit's QoS for each workload's next pod is the class the API server gives the pods the
/// ReplicaSet controller creates: LimitRange defaults, requests defaulting to limits, pod-level
/// resources fed by LimitRange defaults. Its namespace requests are the quota's own count.
#[tokio::test]
async fn audit_judges_new_pods_as_the_api_server_does() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "e2e-audit-next").await;
    ns.wait_for_default_service_account(&client).await;
    let n = ns.name.clone();
    apply(
        &json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "defaults", "namespace": n},
        "spec": {"limits": [{"type": "Container", "default": {"cpu": "300m", "memory": "200Mi"},
            "defaultRequest": {"cpu": "200m", "memory": "100Mi"}}]}}),
    );
    apply(
        &json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "compute", "namespace": n},
        "spec": {"hard": {"requests.cpu": "100", "requests.memory": "100Gi", "limits.cpu": "100", "limits.memory": "100Gi"}}}),
    );
    let deployment = |name: &str, pod: Value| {
        let mut spec = pod;
        spec["containers"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .for_each(|c| c["image"] = json!("registry.invalid/app:1"));
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": n},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}}, "spec": spec}}})
    };
    // (workload, pod template spec, the audit's expected class and template class)
    let cases = [
        (
            "bare",
            json!({"containers": [{"name": "app"}]}),
            "Burstable",
            "BestEffort",
        ),
        (
            "limits-only",
            json!({"containers": [{"name": "app", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}),
            "Guaranteed",
            "Guaranteed",
        ),
        (
            "pod-limits",
            json!({"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}, "containers": [{"name": "app"}, {"name": "log"}]}),
            "Burstable",
            "Guaranteed",
        ),
        (
            "pod-level",
            json!({"resources": {"requests": {"cpu": "1", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
                "containers": [{"name": "app"}, {"name": "log"}]}),
            "Guaranteed",
            "Guaranteed",
        ),
    ];
    for (name, pod, _, _) in &cases {
        apply(&deployment(name, pod.clone()));
    }
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), &n);
    let all = eventually("the eight pods to exist", || {
        let pods = pods.clone();
        async move {
            let list = pods.list(&Default::default()).await.ok()?.items;
            (list.len() == 8).then_some(list)
        }
    })
    .await;
    let report = audit(&n);
    for (name, _, qos, template_qos) in &cases {
        let w = report["workloads"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["name"] == *name)
            .unwrap();
        // What the API server made of the template, for every pod of this workload.
        for pod in all
            .iter()
            .filter(|p| p.metadata.labels.as_ref().unwrap()["app"] == *name)
        {
            let made = pod.status.as_ref().unwrap().qos_class.as_deref();
            assert_eq!(made, w["qos"].as_str(), "{name}: audit {w}");
        }
        assert_eq!(
            (w["qos"].as_str(), w["templateQos"].as_str()),
            (Some(*qos), Some(*template_qos)),
            "{w}"
        );
    }
    let bare = &report["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "bare")
        .unwrap();
    assert_eq!(
        bare["qosNote"],
        "BestEffort in its template, Burstable for new pods: LimitRange defaults"
    );
    // The namespace's requests are what the quota controller counts.
    let quotas: Api<k8s_openapi::api::core::v1::ResourceQuota> =
        Api::namespaced(client.clone(), &n);
    let name = n.clone();
    eventually("the audit's requests to equal the quota's used", || {
        let (quotas, name) = (quotas.clone(), name.clone());
        async move {
            let used = quotas.get("compute").await.ok()?.status?.used?;
            let row = audit(&name)["namespaces"][0].clone();
            let same = ["cpu", "memory"].iter().all(|r| {
                used.get(&format!("requests.{r}"))
                    .map(|q| tenantry::model::quantity::stored_value(&q.0).unwrap().0)
                    == Some(quantity_of(&row["requests"][r]))
            });
            (same && row["pods"] == 8).then_some(())
        }
    })
    .await;
    // 2 x (200m + 1 + 400m + 1): LimitRange defaults, limits as requests, the containers' sum,
    // pod-level requests.
    assert_eq!(audit(&n)["namespaces"][0]["requests"]["cpu"], "5200m");
}

/// A quota that caps requests.cpu refuses pods that do not set it; the audit says so with the
/// API server's own words.
#[tokio::test]
async fn audit_names_the_quota_that_will_refuse_new_pods() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "e2e-audit-refused").await;
    ns.wait_for_default_service_account(&client).await;
    let n = ns.name.clone();
    apply(
        &json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "compute", "namespace": n},
        "spec": {"hard": {"requests.cpu": "4"}}}),
    );
    let spec = json!({"containers": [{"name": "app", "image": "registry.invalid/app:1"}]});
    apply(
        &json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api", "namespace": n},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "api"}},
            "template": {"metadata": {"labels": {"app": "api"}}, "spec": spec}}}),
    );
    // Quota admission judges a quota once kube-controller-manager has written its status.hard.
    let quotas: Api<k8s_openapi::api::core::v1::ResourceQuota> =
        Api::namespaced(client.clone(), &n);
    eventually("the quota's status.hard", || {
        let quotas = quotas.clone();
        async move { quotas.get("compute").await.ok()?.status?.hard }
    })
    .await;
    let report = audit(&n);
    let expected = format!(
        "new pods of Deployment {n}/api are refused by ResourceQuota {n}/compute: must specify requests.cpu for: app"
    );
    assert!(
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == &json!(expected)),
        "{report}"
    );
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe", "namespace": n}, "spec": spec});
    let out = kubectl_with_input(
        &["create", "--dry-run=server", "-f", "-"],
        Some(&pod.to_string()),
    );
    assert!(!out.success);
    assert!(
        out.stderr.contains("must specify requests.cpu for: app"),
        "{}",
        out.stderr
    );
}

/// An in-place resize the kubelet has not actuated: quota counts the larger of desired and
/// allocated, and so does the audit. There is no kubelet here, so the test writes the container
/// status a kubelet would (allocated 500m) and resizes the pod down through `resize`. A second pod,
/// deleted last, makes the quota controller recount after it has seen the resize (600m before,
/// 500m counting the allocation, 200m if it counted the spec).
#[tokio::test]
async fn audit_counts_an_unfinished_resize_as_quota_does() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "e2e-audit-resize").await;
    ns.wait_for_default_service_account(&client).await;
    let n = ns.name.clone();
    apply(
        &json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "compute", "namespace": n},
        "spec": {"hard": {"requests.cpu": "10"}}}),
    );
    let quotas: Api<k8s_openapi::api::core::v1::ResourceQuota> =
        Api::namespaced(client.clone(), &n);
    eventually("the quota's status.hard", || {
        let quotas = quotas.clone();
        async move { quotas.get("compute").await.ok()?.status?.hard }
    })
    .await;
    let pod = |name: &str, cpu: &str| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": n},
            "spec": {"containers": [{"name": "app", "image": "registry.invalid/db:1",
                "resources": {"requests": {"cpu": cpu}, "limits": {"cpu": "1"}}}]}})
    };
    apply(&pod("db", "500m"));
    apply(&pod("marker", "100m"));
    let status = json!({"status": {"phase": "Running", "containerStatuses": [{"name": "app",
        "image": "registry.invalid/db:1", "imageID": "", "ready": true, "restartCount": 0, "started": true,
        "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
        "allocatedResources": {"cpu": "500m"},
        "resources": {"requests": {"cpu": "500m"}, "limits": {"cpu": "1"}}}]}});
    let patch = |subresource: &str, kind: &str, body: &Value| {
        let out = kubectl(&[
            "patch",
            "pod",
            "db",
            "-n",
            &n,
            &format!("--subresource={subresource}"),
            &format!("--type={kind}"),
            "-p",
            &body.to_string(),
        ]);
        assert!(out.success, "{}", out.stderr);
    };
    patch("status", "merge", &status);
    patch(
        "resize",
        "strategic",
        &json!({"spec": {"containers": [{"name": "app", "resources": {"requests": {"cpu": "200m"}}}]}}),
    );
    let out = kubectl(&["delete", "pod", "marker", "-n", &n, "--wait=true"]);
    assert!(out.success, "{}", out.stderr);
    let used = eventually("the quota controller to recount without the marker", || {
        let quotas = quotas.clone();
        async move {
            let q = quotas.get("compute").await.ok()?;
            let used = q.status?.used?.get("requests.cpu")?.0.clone();
            (!["0", "600m"].contains(&used.as_str())).then_some(used)
        }
    })
    .await;
    assert_eq!(used, "500m", "the quota controller counts the allocation");
    let report = audit(&n);
    assert_eq!(
        report["namespaces"][0]["requests"]["cpu"], "500m",
        "{report}"
    );
    let expected = format!("Pod {n}/db is counted by quotas at requests.cpu 500m (spec 200m)");
    assert!(
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f.as_str().unwrap().starts_with(&expected)),
        "{report}"
    );
}

/// Runs `tenantry audit -n <ns>` as text.
fn audit_text(ns: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .args(["audit", "-n", ns])
        .env("KUBECONFIG", kubeconfig_path())
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into()
}

/// A shared budget of 4 pods over two namespaces, with 6 pods wanted in one: the audit sums the
/// parts of both (auditing one of them), reports the budget exhausted, and its allotted parts
/// within it.
#[tokio::test]
async fn audit_shows_a_shared_quotas_total_use_across_its_namespaces() {
    let client = client().await;
    crate::smoke::install_crd(&client).await;
    let operator = Operator::start(&unique_name("audit-sq")).await;
    let team = unique_name("team");
    let a = TestNamespace::create_labelled(&client, "e2e-audit-sq-a", &[("e2e-team", &team)]).await;
    let b = TestNamespace::create_labelled(&client, "e2e-audit-sq-b", &[("e2e-team", &team)]).await;
    a.wait_for_default_service_account(&client).await;
    let policy = TestPolicy::create(
        &client,
        &operator,
        "audit-sq",
        json!({"namespaceSelector": {"matchLabels": {"e2e-team": team}},
            "sharedQuotas": [{"name": "team-pods", "hard": {"pods": "4"}}]}),
    )
    .await;
    policy.wait_ready(&client).await;
    crate::shared_quotas::wait_parts_enforced(&client, &policy.name, 2, "pods").await;
    let web = serde_json::from_value(json!({"metadata": {"name": "web"},
        "spec": {"replicas": 6, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]}}}}))
    .unwrap();
    crate::shared_quotas::create_deployment(&client, &a.name, &web).await;
    let name = a.name.clone();
    let report = eventually("the whole budget in use", || {
        let name = name.clone();
        async move {
            let report = audit(&name);
            let used = &report["sharedQuotas"][0]["resources"]["pods"]["used"];
            (used == "4").then_some(report)
        }
    })
    .await;
    let shared = report["sharedQuotas"].as_array().unwrap();
    assert_eq!(shared.len(), 1, "{report:#}");
    let q = &shared[0];
    assert_eq!(
        (&q["policy"], &q["name"]),
        (&json!(policy.name), &json!("team-pods"))
    );
    let mut both = vec![a.name.clone(), b.name.clone()];
    both.sort();
    assert_eq!(
        q["namespaces"],
        json!(both),
        "auditing a alone sums b's part too"
    );
    let pods = &q["resources"]["pods"];
    assert_eq!(
        (&pods["hard"], &pods["percent"]),
        (&json!("4"), &json!(100))
    );
    let allotted: i128 = pods["allotted"].as_str().unwrap().parse().unwrap();
    assert!(allotted <= 4, "the parts stay within the budget: {pods}");
    let finding = format!(
        "shared quota {}/team-pods: pods is exhausted: 4 used of 4 across 2 namespaces; new requests are refused",
        policy.name
    );
    let findings = report["findings"].as_array().unwrap();
    assert!(findings.contains(&json!(finding)), "{findings:#?}");

    let table = audit_text(&a.name);
    let line = table
        .lines()
        .find(|l| l.starts_with(&format!("{}/team-pods", policy.name)))
        .unwrap_or_else(|| panic!("no shared quota line in\n{table}"));
    println!("{table}");
    assert!(table.contains("\nSHARED QUOTAS "), "{table}");
    for fact in ["pods", " 4 ", "100%", &both.join(",")] {
        assert!(line.contains(fact), "{fact:?} missing in {line:?}");
    }
    assert!(table.contains(&format!("- {finding}\n")), "{table}");
    drop(policy);
}
