//! Pods that run: on a control plane of its own with three simulated nodes (the real
//! kube-scheduler binds pods, KWOK makes them Running and Ready), a PodDisruptionBudget that a
//! policy governs holds a real `kubectl drain` to its budget, and the namespace's LimitRange
//! defaults make the Deployment's pods Burstable. Containers are simulated; the scheduler, the
//! disruption controller and the eviction API are real.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Client;
use kube::api::{Api, ListParams};
use serde_json::json;

use crate::harness::{Operator, OwnControlPlane, TestPolicy, eventually_within, unique_name};

const REPLICAS: usize = 3;
const MIN_AVAILABLE: usize = 2;

/// The Ready pods of app=web and the nodes they are on.
async fn ready_pods(client: &Client, ns: &str) -> Vec<(String, String)> {
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("list pods");
    pods.items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            let conditions = p.status.as_ref().and_then(|s| s.conditions.as_ref());
            conditions.is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .map(|p| {
            let node = p.spec.and_then(|s| s.node_name).unwrap_or_default();
            (p.metadata.name.unwrap_or_default(), node)
        })
        .collect()
}

#[tokio::test]
async fn a_governed_pdb_holds_a_real_drain_to_its_budget_and_the_pods_come_back_ready() {
    let plane = OwnControlPlane::up(&unique_name("nodes"), 3);
    plane.install_crd();
    let client = plane.client().await;
    let ns = unique_name("e2e-drain");
    plane.kubectl(&["create", "namespace", &ns]);
    plane.kubectl(&["label", "namespace", &ns, &format!("drain={ns}")]);
    let operator = Operator::start_with(&unique_name("nodes"), &[], Some(&plane.kubeconfig)).await;
    let spec = json!({
        "namespaceSelector": {"matchLabels": {"drain": ns}},
        "limitRanges": [{"name": "defaults", "limits": [{"type": "Container",
            "defaultRequest": {"cpu": "100m", "memory": "64Mi"},
            "default": {"cpu": "200m", "memory": "128Mi"}}]}],
        "podDisruptionBudgets": [{"name": "web", "selector": {"matchLabels": {"app": "web"}},
            "minAvailable": MIN_AVAILABLE}],
    });
    let policy = TestPolicy::create(&client, &operator, "drain", spec).await;
    policy.wait_ready(&client).await;
    plane.kubectl(&[
        "create",
        "deployment",
        "web",
        "-n",
        &ns,
        "--image=registry.k8s.io/pause:3.10",
        &format!("--replicas={REPLICAS}"),
    ]);
    let limit = Duration::from_secs(120);
    eventually_within(
        limit,
        "the Deployment's pods Ready on the nodes",
        || async { (ready_pods(&client, &ns).await.len() == REPLICAS).then_some(()) },
    )
    .await;
    // The LimitRange defaults made them Burstable (they declare no resources).
    let pods = Api::<Pod>::namespaced(client.clone(), &ns)
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();
    for pod in &pods.items {
        let qos = pod.status.as_ref().and_then(|s| s.qos_class.as_deref());
        assert_eq!(qos, Some("Burstable"), "{:?}", pod.metadata.name);
    }
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &ns);
    eventually_within(limit, "the governed PDB allowing disruptions", || async {
        let pdb = pdbs.get("web").await.ok();
        let allowed = pdb
            .and_then(|p| p.status)
            .and_then(|s| s.disruptions_allowed);
        (allowed == Some((REPLICAS - MIN_AVAILABLE) as i32)).then_some(())
    })
    .await;

    // Drain the node holding the most of them while a sampler watches what stays available.
    let node = {
        let placed = ready_pods(&client, &ns).await;
        let mut counts = std::collections::BTreeMap::<String, usize>::new();
        placed
            .iter()
            .for_each(|(_, n)| *counts.entry(n.clone()).or_default() += 1);
        counts.into_iter().max_by_key(|(_, c)| *c).unwrap().0
    };
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (client, ns, stop) = (client.clone(), ns.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut fewest, mut samples) = (usize::MAX, 0);
            while !stop.load(Ordering::Relaxed) {
                fewest = fewest.min(ready_pods(&client, &ns).await.len());
                samples += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (fewest, samples)
        })
    };
    // kubectl drain blocks: off the runtime's thread, so the sampler keeps sampling meanwhile.
    let (kubectl, kubeconfig, target) = (
        plane.state.join("bin/kubectl"),
        plane.kubeconfig.clone(),
        node.clone(),
    );
    let drained = tokio::task::spawn_blocking(move || {
        std::process::Command::new(kubectl)
            .args([
                "drain",
                &target,
                "--ignore-daemonsets",
                "--delete-emptydir-data",
            ])
            .arg("--timeout=120s")
            .env("KUBECONFIG", kubeconfig)
            .output()
            .expect("kubectl drain")
    })
    .await
    .unwrap();
    let drained = crate::harness::Output {
        success: drained.status.success(),
        stdout: String::from_utf8_lossy(&drained.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&drained.stderr).into_owned(),
    };
    assert!(drained.success, "kubectl drain {node}: {}", drained.stderr);
    eventually_within(
        limit,
        "the pods Ready again, none on the drained node",
        || async {
            let placed = ready_pods(&client, &ns).await;
            (placed.len() == REPLICAS && placed.iter().all(|(_, n)| *n != node)).then_some(())
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let (fewest, samples) = sampler.await.unwrap();
    println!(
        "drain of {node}: {samples} samples, at least {fewest} of {REPLICAS} pods Ready throughout"
    );
    assert!(samples >= 5, "the sampler ran {samples} times");
    assert!(
        fewest >= MIN_AVAILABLE,
        "fewer than minAvailable {MIN_AVAILABLE} pods Ready during the drain: {fewest}"
    );
}
