//! What the benchmark declares and writes: its labels, the 4 objects per namespace (1
//! LimitRange, 2 ResourceQuotas, 1 PDB) the policy declares and the floor writes, the policies
//! (one over all namespaces; in the fleet a baseline and team policies), and the checks of an end
//! state against them.

use std::collections::{BTreeMap, BTreeSet};

use kube::core::ApiResource;
use serde_json::{Value, json};
use tenantry::api::TenantPolicy;
use tenantry_testkit::managed_kinds;

pub const BENCH_LABEL: &str = "bench.tenantry.io/run";
pub const FLOOR_LABEL: &str = "bench.tenantry.io/floor";
pub const CANARY_LABEL: &str = "bench.tenantry.io/canary";
pub const TEAM_LABEL: &str = "bench.tenantry.io/team";
/// The value of [`BENCH_LABEL`] on the policies the measured controller handles (its
/// `--policy-selector`).
pub const POLICY_SHARD: &str = "policy";

pub fn lr_limits(cpu: &str) -> Value {
    json!([{"type": "Container", "default": {"cpu": cpu, "memory": "200Mi"}, "defaultRequest": {"cpu": "200m", "memory": "100Mi"}}])
}

fn compute_hard(pods: &str) -> Value {
    json!({"pods": pods, "requests.cpu": "4", "requests.memory": "8Gi"})
}

/// The 4 objects per namespace the policy declares (and the floor writes, with its prefix):
/// 1 LimitRange, 2 ResourceQuotas, 1 PDB. (kind, name, spec).
pub fn declared(pods: &str) -> Vec<(ApiResource, String, Value)> {
    let [lr, rq, pdb] = managed_kinds();
    vec![
        (lr, "defaults".into(), json!({"limits": lr_limits("300m")})),
        (
            rq.clone(),
            "compute".into(),
            json!({"hard": compute_hard(pods)}),
        ),
        (
            rq,
            "objects".into(),
            json!({"hard": {"services": "10", "configmaps": "100"}}),
        ),
        (
            pdb,
            "web".into(),
            json!({"selector": {"matchLabels": {"app": "web"}}, "minAvailable": 1}),
        ),
    ]
}

/// [`declared`] as a policy's spec, over the namespaces `selector` matches.
pub fn policy_spec(selector: Value, pods: &str) -> Value {
    json!({
        "namespaceSelector": {"matchLabels": selector},
        "limitRanges": [{"name": "defaults", "limits": lr_limits("300m")}],
        "resourceQuotas": [
            {"name": "compute", "hard": compute_hard(pods)},
            {"name": "objects", "hard": {"services": "10", "configmaps": "100"}}
        ],
        "podDisruptionBudgets": [{"name": "web", "selector": {"matchLabels": {"app": "web"}}, "minAvailable": 1}],
    })
}

/// A policy the measured controller handles.
pub fn policy_object(name: &str, spec: Value) -> anyhow::Result<TenantPolicy> {
    let labels = BTreeMap::from([(BENCH_LABEL.to_string(), POLICY_SHARD.to_string())]);
    tenantry_testkit::policy(name, labels, spec)
}

/// `expected` is contained in `live`: every field declared has the declared value (the API
/// server may add defaults).
pub fn subset(expected: &Value, live: &Value) -> bool {
    match (expected, live) {
        (Value::Object(e), Value::Object(l)) => e
            .iter()
            .all(|(k, v)| l.get(k).is_some_and(|lv| subset(v, lv))),
        (Value::Array(e), Value::Array(l)) => {
            e.len() == l.len() && e.iter().zip(l).all(|(a, b)| subset(a, b))
        }
        _ => expected == live,
    }
}

/// The fleet: expected (kind/name -> winning policy) in a namespace of `team`. Team policies win
/// the ResourceQuota kind everywhere and the LimitRange kind in even teams; the PDB is the
/// baseline's.
pub fn fleet_expected(baseline: &str, team: usize, run: &str) -> BTreeSet<(String, String)> {
    let team_policy = format!("team-{run}-{team}");
    let mut want = BTreeSet::from([
        (
            "ResourceQuota/team-compute".to_string(),
            team_policy.clone(),
        ),
        ("PodDisruptionBudget/web".to_string(), baseline.to_string()),
    ]);
    if team.is_multiple_of(2) {
        want.insert(("LimitRange/team-defaults".into(), team_policy));
    } else {
        want.insert(("LimitRange/defaults".into(), baseline.into()));
    }
    want
}

/// The fleet: the policy of `team`, over its 20 namespaces, winning over the baseline.
pub fn team_spec(run: &str, team: usize) -> Value {
    let mut spec = json!({
        "priority": 10,
        "namespaceSelector": {"matchLabels": {TEAM_LABEL: format!("{run}-{team}")}},
        "resourceQuotas": [{"name": "team-compute", "hard": compute_hard("30")}],
    });
    if team.is_multiple_of(2) {
        spec["limitRanges"] = json!([{"name": "team-defaults", "limits": lr_limits("500m")}]);
    }
    spec
}
