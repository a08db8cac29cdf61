//! `tenantry audit` on a namespace as the operations notes found them: BestEffort workloads, no
//! quota or LimitRange, a PDB that blocks every eviction, a workload under two PDBs.

use std::process::Command;

use serde_json::{Value, json};

use crate::harness::{TestNamespace, client, eventually, kubeconfig_path, kubectl_with_input};

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
