//! Reliability under faults, on a control plane of its own (hack/test.sh starts it, in
//! .tenantry-faults): the controller is killed, the API server and etcd restart, writes are
//! refused for a while. Each case checks the final state exactly and prints how long recovery
//! took. Run one at a time: the faults hit the whole control plane.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{LimitRange, ResourceQuota};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tenantry::api::{POLICY_LABEL, TenantPolicy};

use tenantry_testkit::{
    Canary, Existing, Operator, TestPolicy, api_state, client, create_namespaces, eventually,
    kubectl_ok, kubectl_with_input, labels, repo_root, unique_name,
};

const FAULT_LABEL: &str = "faults.tenantry.io/run";

async fn install_crd() {
    kubectl_ok(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        repo_root().join(tenantry::crd::CRD_PATH).to_str().unwrap(),
    ]);
    kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "crd/tenantpolicies.tenantry.io",
        "--timeout=60s",
    ]);
}

fn restart(component: &str, how: &str) {
    let status = std::process::Command::new("bash")
        .arg(repo_root().join("hack/cluster.sh"))
        .args(["restart", component, how])
        .status()
        .expect("hack/cluster.sh restart");
    assert!(status.success(), "restarting {component} failed");
}

/// `count` namespaces labelled for one run, created one after the other.
async fn namespaces(client: &Client, run: &str, count: usize) -> Vec<String> {
    let names: Vec<String> = (0..count).map(|i| format!("{run}-{i}")).collect();
    let label = |_| labels(&[(FAULT_LABEL, run)]);
    create_namespaces(client, &names, label, 1, Existing::Fail)
        .await
        .unwrap();
    names
}

fn spec(run: &str, pods: &str) -> serde_json::Value {
    json!({
        "namespaceSelector": {"matchLabels": {FAULT_LABEL: run}},
        "limitRanges": [{"name": "defaults", "limits": [{"type": "Container", "default": {"cpu": "300m"}, "defaultRequest": {"cpu": "200m"}}]}],
        "resourceQuotas": [{"name": "compute", "hard": {"pods": pods}}, {"name": "objects", "hard": {"services": "5"}}],
        "podDisruptionBudgets": [{"name": "web", "selector": {"matchLabels": {"app": "web"}}, "minAvailable": 1}],
    })
}

/// Every selected namespace holds exactly the policy's objects (no duplicates, nothing missing,
/// nothing else labelled for it anywhere), with the given pods cap.
async fn assert_exact(client: &Client, policy: &str, names: &[String], pods: &str) {
    let selector = ListParams::default().labels(&format!("{POLICY_LABEL}={policy}"));
    let mut found: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for lr in Api::<LimitRange>::all(client.clone())
        .list(&selector)
        .await
        .unwrap()
    {
        found
            .entry(lr.namespace().unwrap())
            .or_default()
            .insert(format!("LimitRange/{}", lr.name_any()));
    }
    for rq in Api::<ResourceQuota>::all(client.clone())
        .list(&selector)
        .await
        .unwrap()
    {
        if rq.name_any() == "compute" {
            let hard = rq.spec.as_ref().and_then(|s| s.hard.as_ref()).unwrap();
            assert_eq!(hard["pods"].0, pods, "{}/compute", rq.namespace().unwrap());
        }
        found
            .entry(rq.namespace().unwrap())
            .or_default()
            .insert(format!("ResourceQuota/{}", rq.name_any()));
    }
    for pdb in Api::<PodDisruptionBudget>::all(client.clone())
        .list(&selector)
        .await
        .unwrap()
    {
        found
            .entry(pdb.namespace().unwrap())
            .or_default()
            .insert(format!("PodDisruptionBudget/{}", pdb.name_any()));
    }
    let expected: BTreeSet<String> = [
        "LimitRange/defaults",
        "ResourceQuota/compute",
        "ResourceQuota/objects",
        "PodDisruptionBudget/web",
    ]
    .map(String::from)
    .into();
    assert_eq!(
        found.len(),
        names.len(),
        "namespaces holding the policy's objects"
    );
    for name in names {
        assert_eq!(found.get(name), Some(&expected), "{name}");
    }
}

async fn ready(client: &Client, policy: &str) -> (Option<i64>, Option<i64>, i32) {
    let p: TenantPolicy = Api::all(client.clone()).get(policy).await.unwrap();
    let status = p.status.unwrap_or_default();
    (
        p.metadata.generation,
        status.observed_generation,
        status.ready_namespaces,
    )
}

async fn wait_converged(client: &Client, policy: &str, n: usize, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let (generation, observed, ready_namespaces) = ready(client, policy).await;
        if generation == observed && ready_namespaces as usize == n {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "not converged within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn faults() {
    // One test, cases in sequence: each fault hits the whole control plane.
    let client = client().await;
    install_crd().await;
    controller_killed_ten_times_while_converging(&client).await;
    api_server_restarted_mid_convergence(&client).await;
    etcd_restarted_mid_convergence(&client).await;
    refused_writes_are_reported_and_retried_with_backoff_until_allowed(&client).await;
    expired_watches_are_relisted_and_drift_from_the_gap_repaired(&client).await;
    competing_writers_are_outlasted_and_writes_return_to_zero(&client).await;
}

fn signal(pid: u32, signal: &str) {
    assert!(
        std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
}

/// POSTs to etcd's JSON gateway (the etcd this control plane runs, on loopback).
fn etcd(path: &str, body: &str) -> serde_json::Value {
    let state = std::env::var("TENANTRY_STATE").expect("TENANTRY_STATE");
    let cmd = std::fs::read_to_string(format!("{state}/etcd.cmd")).unwrap();
    let url = cmd
        .split_whitespace()
        .skip_while(|w| *w != "--listen-client-urls")
        .nth(1)
        .unwrap()
        .to_owned();
    let out = std::process::Command::new("curl")
        .args(["-sf", "-X", "POST", &format!("{url}{path}"), "-d", body])
        .output()
        .unwrap();
    assert!(out.status.success(), "etcd {path}");
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn expired_watches_are_relisted_and_drift_from_the_gap_repaired(client: &Client) {
    let run = unique_name("expired");
    let names = namespaces(client, &run, 20).await;
    let operator = Operator::start(&unique_name("expired-shard")).await;
    let policy = TestPolicy::create(client, &operator, "expired", spec(&run, "10")).await;
    wait_converged(client, &policy.name, names.len(), Duration::from_secs(60)).await;

    // The gap: the controller is frozen while a managed object is deleted, etcd is compacted past
    // it and the API server restarts: the watches cannot resume where they were, and the
    // deletion's event was never seen.
    signal(operator.pid(), "-STOP");
    let ranges: Api<LimitRange> = Api::namespaced(client.clone(), &names[0]);
    ranges
        .delete("defaults", &Default::default())
        .await
        .unwrap();
    let revision = etcd("/v3/kv/range", r#"{"key":"AA=="}"#)["header"]["revision"]
        .as_str()
        .unwrap()
        .to_owned();
    etcd(
        "/v3/kv/compaction",
        &format!(r#"{{"revision":"{revision}","physical":true}}"#),
    );
    restart("kube-apiserver", "term");
    signal(operator.pid(), "-CONT");
    let resumed = Instant::now();
    eventually("drift made during the gap to be repaired", || {
        let ranges = ranges.clone();
        async move { ranges.get_opt("defaults").await.ok().flatten().map(|_| ()) }
    })
    .await;
    println!(
        "watch gap (controller frozen, object deleted, etcd compacted to {revision}, API server restarted): repaired {:.1} s after the controller resumed",
        resumed.elapsed().as_secs_f64()
    );
    wait_converged(client, &policy.name, names.len(), Duration::from_secs(60)).await;
    assert_exact(client, &policy.name, &names, "10").await;
    drop(policy);
    drop(operator);
}

async fn competing_writers_are_outlasted_and_writes_return_to_zero(client: &Client) {
    let run = unique_name("compete");
    let names = namespaces(client, &run, 20).await;
    let operator = Operator::start(&unique_name("compete-shard")).await;
    let canary = Canary::create(client, &operator).await;
    let policy = TestPolicy::create(client, &operator, "compete", spec(&run, "10")).await;
    wait_converged(client, &policy.name, names.len(), Duration::from_secs(60)).await;

    // A competing writer (a cluster admin's script) edits and deletes managed objects for 10 s.
    // Its writes must land: an edit always does, a delete unless the object is not back yet.
    let started = Instant::now();
    let (mut round, mut edits, mut deletes) = (0usize, 0usize, 0usize);
    while started.elapsed() < Duration::from_secs(10) {
        let ns = &names[round % names.len()];
        let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), ns);
        let edited = quotas
            .patch(
                "compute",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(
                    json!({"spec": {"hard": {"pods": format!("{}", 100 + round)}}}),
                ),
            )
            .await
            .unwrap_or_else(|e| panic!("the competitor's edit of {ns}/compute failed: {e}"));
        assert_eq!(
            edited.spec.unwrap().hard.unwrap()["pods"].0,
            format!("{}", 100 + round)
        );
        edits += 1;
        let ranges: Api<LimitRange> = Api::namespaced(client.clone(), ns);
        match ranges.delete("defaults", &Default::default()).await {
            Ok(_) => deletes += 1,
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => panic!("the competitor's delete of {ns}/defaults failed: {e}"),
        }
        round += 1;
    }
    println!(
        "competing writer: {round} rounds in 10 s, {edits} edits and {deletes} deletes landed"
    );
    assert!(
        deletes >= names.len().min(round),
        "{deletes} of {round} deletes landed"
    );
    wait_converged(client, &policy.name, names.len(), Duration::from_secs(60)).await;
    eventually("every namespace restored", || async {
        let ranges: Api<LimitRange> = Api::all(client.clone());
        let count = ranges
            .list(&ListParams::default().labels(&format!("{POLICY_LABEL}={}", policy.name)))
            .await
            .ok()?
            .items
            .len();
        (count == names.len()).then_some(())
    })
    .await;
    // The drift is corrected: every edited quota back at 10 pods, every deleted range back.
    assert_exact(client, &policy.name, &names, "10").await;

    // No hot loop: after a reconcile of both policies that began after the competition, and
    // 10 s, the API server shows no write to any object or the policy.
    let namespaces: Vec<&str> = names.iter().map(String::as_str).collect();
    let before = api_state(client, &namespaces, &[&policy.name]).await;
    let _canary_ns = canary.settle(client, &operator, 2, &namespaces).await;
    assert_eq!(
        api_state(client, &namespaces, &[&policy.name]).await,
        before,
        "writes continued after the competition stopped"
    );
    drop(policy);
    drop(canary);
    drop(operator);
}

async fn controller_killed_ten_times_while_converging(client: &Client) {
    let run = unique_name("kill9");
    let names = namespaces(client, &run, 300).await;
    let shard = unique_name("kill9-shard");
    let mut first = Operator::start(&shard).await;
    let policy = TestPolicy::create(client, &first, "kill9", spec(&run, "10")).await;
    // Deterministic "random" moments: kill -9 after 20 .. 300 ms of work, ten times, so the kills
    // land while objects are still being created.
    let mut state: u64 = 0x9e3779b97f4a7c15;
    for round in 0..10 {
        let pause = {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
            20 + (state >> 33) % 280
        };
        tokio::time::sleep(Duration::from_millis(pause)).await; // the fault's timing, not a wait for a condition
        first.kill9();
        let created = Api::<LimitRange>::all(client.clone())
            .list(&ListParams::default().labels(&format!("{POLICY_LABEL}={}", policy.name)))
            .await
            .map(|l| l.items.len())
            .unwrap_or(0);
        println!(
            "kill -9 #{} after {pause} ms; LimitRanges so far: {created}/300",
            round + 1
        );
        first = Operator::start(&shard).await;
    }
    let took = wait_converged(client, &policy.name, names.len(), Duration::from_secs(120)).await;
    println!(
        "kill -9 x10 while converging 300 namespaces: converged {:.1} s after the last restart",
        took.as_secs_f64()
    );
    assert_exact(client, &policy.name, &names, "10").await;
    drop(policy);
    drop(first);
}

async fn restart_mid_convergence(client: &Client, component: &str, how: &str) {
    let run = unique_name(component);
    let names = namespaces(client, &run, 300).await;
    let operator = Operator::start(&unique_name("restart-shard")).await;
    let policy = TestPolicy::create(client, &operator, component, spec(&run, "10")).await;
    eventually("the controller to be under way", || async {
        (operator.metric("tenantry_api_writes_total", &["verb=\"create\""]) >= 100.0).then_some(())
    })
    .await;
    restart(component, how);
    // The controller is not restarted: the same process recovers.
    let took = wait_converged(client, &policy.name, names.len(), Duration::from_secs(30)).await;
    println!(
        "{component} restarted ({how}) mid-convergence: converged {:.1} s after it served again",
        took.as_secs_f64()
    );
    assert_exact(client, &policy.name, &names, "10").await;
    drop(policy);
    drop(operator);
}

async fn api_server_restarted_mid_convergence(client: &Client) {
    restart_mid_convergence(client, "kube-apiserver", "term").await;
}

async fn etcd_restarted_mid_convergence(client: &Client) {
    restart_mid_convergence(client, "etcd", "kill").await;
}

async fn refused_writes_are_reported_and_retried_with_backoff_until_allowed(client: &Client) {
    // Refuse every write of a managed LimitRange, whoever makes it.
    let refusal = json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": "faults-refuse-limitranges"},
        "spec": {"failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["limitranges"]}]},
            "validations": [{"expression": "!has(object.metadata.labels) || object.metadata.labels[?'app.kubernetes.io/managed-by'].orValue('') != 'tenantry'", "message": "refused by the fault test"}]}
    });
    let binding = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": "faults-refuse-limitranges"}, "spec": {"policyName": "faults-refuse-limitranges", "validationActions": ["Deny"]}});
    for object in [&refusal, &binding] {
        let out = kubectl_with_input(
            &["apply", "--server-side", "-f", "-"],
            Some(&object.to_string()),
        );
        assert!(out.success, "{}", out.stderr);
    }
    // The binding takes effect asynchronously: wait until a probe is refused.
    let probe_ns = unique_name("refuse-probe");
    namespaces(client, &probe_ns, 1).await;
    let probe: LimitRange = serde_json::from_value(json!({"metadata": {"name": "probe", "labels": {"app.kubernetes.io/managed-by": "tenantry"}},
        "spec": {"limits": [{"type": "Container", "max": {"cpu": "1"}}]}})).unwrap();
    let probes: Api<LimitRange> = Api::namespaced(client.clone(), &format!("{probe_ns}-0"));
    eventually("the refusal to take effect", || {
        let probes = probes.clone();
        let probe = probe.clone();
        async move {
            match probes
                .create(
                    &PostParams {
                        dry_run: true,
                        ..Default::default()
                    },
                    &probe,
                )
                .await
            {
                Err(kube::Error::Api(e)) if e.message.contains("refused by the fault test") => {
                    Some(())
                }
                _ => None,
            }
        }
    })
    .await;

    let run = unique_name("refused");
    let names = namespaces(client, &run, 5).await;
    let operator = Operator::start(&unique_name("refused-shard")).await;
    let policy = TestPolicy::create(client, &operator, "refused", spec(&run, "10")).await;
    let status = policy.wait_condition(client, "Reconciling", "True").await;
    assert_eq!(status.failed_namespaces, 5, "{:?}", status.failures);
    assert!(
        status
            .failures
            .iter()
            .all(|f| f.kind == "LimitRange" && f.message.contains("refused by the fault test")),
        "{:?}",
        status.failures
    );
    // Backing off: over 12 s, retries at 1, 2, 4, 8 s make a handful of reconciles, not one a second.
    let before = operator.reconciles();
    tokio::time::sleep(Duration::from_secs(12)).await; // observing the retry rate over a fixed window
    let retries = operator.reconciles() - before;
    println!("refused writes: {retries} reconciles in 12 s while refused");
    assert!(
        retries <= 6.0,
        "retries did not back off: {retries} reconciles in 12 s"
    );

    kubectl_ok(&[
        "delete",
        "validatingadmissionpolicybinding",
        "faults-refuse-limitranges",
    ]);
    kubectl_ok(&[
        "delete",
        "validatingadmissionpolicy",
        "faults-refuse-limitranges",
    ]);
    let lifted = Instant::now();
    let took = wait_converged(client, &policy.name, names.len(), Duration::from_secs(300)).await;
    println!(
        "refused writes: recovered {:.1} s after the refusal was lifted",
        lifted.elapsed().as_secs_f64().max(took.as_secs_f64())
    );
    let status = policy.wait_ready(client).await;
    assert!(status.failures.is_empty());
    assert_exact(client, &policy.name, &names, "10").await;
    drop(policy);
    drop(operator);
}
