//! Quantities as the API server reads them: Tenantry's parser against the API server on a table
//! of edge cases (caps, any number of digits, forms that read as zero, malformed ones), each
//! round-tripped through a real object; and a converged policy holding such quantities makes no
//! write at all on further reconciles, counted from the API server's audit log.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, ResourceQuota};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tenantry::model::quantity;

use crate::harness::{Operator, TestNamespace, TestPolicy, client, eventually, unique_name};
use crate::install::state_dir;
use crate::smoke::install_crd;

/// Accepted by the API server (values that a quota may hold: not negative).
const ACCEPTED: [&str; 31] = [
    "1000000000000000000000",
    "1000E",
    "1e21",
    "8Ei",
    "9223372036854775807",
    "9223372036854775808",
    "1e100",
    "99999999999999999999999999999999Ki",
    "1.000000000000000000000000000001",
    "0.000000000000000000000000000001",
    "1e-100",
    "0.0000000001Ki",
    "1.5Gi",
    "0.5",
    ".5",
    "5.",
    "1e+3",
    "2E-3",
    "12e-10",
    "1127.234m",
    "5n",
    "+4",
    "0",
    "00",
    "0.0",
    "0Gi",
    "1E",
    "7Ei",
    "1023Mi",
    "1000000000000000000000000000000000000000m",
    "123456789012345678901234567890.5",
];

/// Refused by the API server's parser.
const REFUSED: [&str; 10] = [
    "1e1.5", "1.2.3", "1Gb", "--1", "1e", "1K", "1mi", "1KiB", "1..2", "1e+",
];

fn quota(name: &str, value: &str) -> ResourceQuota {
    serde_json::from_value(json!({"metadata": {"name": name},
        "spec": {"hard": {"requests.memory": value}}}))
    .unwrap()
}

#[tokio::test]
async fn the_parser_agrees_with_the_api_server_on_every_edge_of_the_table() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "e2e-quantity-edges").await;
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), &ns.name);
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let mut wrong = Vec::new();
    for (i, text) in ACCEPTED.iter().enumerate() {
        // A server-side dry run answers with the object as it would be stored.
        match quotas
            .create(&dry_run, &quota(&format!("q{i}"), text))
            .await
        {
            Ok(stored) => {
                let back = stored.spec.unwrap().hard.unwrap()["requests.memory"]
                    .0
                    .clone();
                // Exact comparison, whatever the size: what the server stores is what Tenantry
                // compares the declared value with.
                if quantity::parse(text).is_none() || !quantity::same(text, &back) {
                    let ours = quantity::canonical(text);
                    wrong.push(format!("{text}: stored as {back}, Tenantry reads {ours}"));
                }
            }
            Err(e) => wrong.push(format!("{text}: expected accepted, refused: {e}")),
        }
    }
    for (i, text) in REFUSED.iter().enumerate() {
        let refused = quotas
            .create(&dry_run, &quota(&format!("r{i}"), text))
            .await;
        if refused.is_ok() {
            wrong.push(format!(
                "{text}: expected refused, the API server accepted it"
            ));
        }
        if quantity::parse(text).is_some() {
            wrong.push(format!(
                "{text}: refused by the API server, Tenantry parses it"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Quota writes (create, patch: server-side apply and merge patch) in `namespaces`, from byte
/// `from` of the audit log, which records them for every user.
fn quota_writes(from: u64, namespaces: &[&str]) -> Vec<String> {
    let text = std::fs::read(state_dir().join("logs/audit.log")).expect("the audit log");
    String::from_utf8_lossy(&text[from as usize..])
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| {
            e["stage"] == "ResponseComplete"
                && e["objectRef"]["resource"] == "resourcequotas"
                && (e["verb"] == "create" || e["verb"] == "patch")
                && namespaces
                    .iter()
                    .any(|ns| e["objectRef"]["namespace"] == *ns)
        })
        .map(|e| {
            format!(
                "{} {} by {}",
                e["verb"], e["objectRef"]["namespace"], e["user"]["username"]
            )
        })
        .collect()
}

fn audit_log_size() -> u64 {
    std::fs::metadata(state_dir().join("logs/audit.log"))
        .expect("the audit log")
        .len()
}

#[tokio::test]
async fn a_converged_policy_with_capped_and_long_quantities_writes_nothing_more() {
    let client = client().await;
    install_crd(&client).await;
    let team = unique_name("edges");
    let a = TestNamespace::create_labelled(&client, "e2e-edges-a", &[("edges", &team)]).await;
    let b = TestNamespace::create_labelled(&client, "e2e-edges-b", &[("edges", &team)]).await;
    let operator = Operator::start(&unique_name("edges")).await;
    let hard = json!({
        "requests.memory": "8Ei",
        "requests.cpu": "1.000000000000000000000000000001",
        "limits.cpu": "1e100",
        "limits.memory": "1000000000000000000000",
        "pods": "10",
    });
    let spec = json!({
        "namespaceSelector": {"matchLabels": {"edges": team}},
        "resourceQuotas": [{"name": "edges", "hard": hard}],
    });
    let policy = TestPolicy::create(&client, &operator, "edges", spec).await;
    policy.wait_ready(&client).await;
    // What the API server stores: capped, and rounded up to milli precision.
    let stored = Api::<ResourceQuota>::namespaced(client.clone(), &a.name)
        .get("edges")
        .await
        .unwrap();
    let stored: BTreeMap<String, Quantity> = stored.spec.unwrap().hard.unwrap();
    assert_eq!(stored["requests.memory"].0, "9223372036854775807");
    assert_eq!(stored["requests.cpu"].0, "1001m");

    let from = audit_log_size();
    let namespaces = Api::<Namespace>::all(client.clone());
    for round in 0..6 {
        let reconciled = operator.reconciles_finished();
        for ns in [&a.name, &b.name] {
            let touch = json!({"metadata": {"labels": {"touched": round.to_string()}}});
            namespaces
                .patch(ns, &PatchParams::default(), &Patch::Merge(&touch))
                .await
                .unwrap();
        }
        // The controller's own counter only says when to look; what it wrote is read from the
        // API server's audit log.
        eventually("a reconcile after the label change", || async {
            (operator.reconciles_finished() > reconciled).then_some(())
        })
        .await;
    }
    let writes = quota_writes(from, &[&a.name, &b.name]);
    assert!(
        writes.is_empty(),
        "a converged policy wrote {} quota requests (no-op writes included): {writes:?}",
        writes.len()
    );
}
