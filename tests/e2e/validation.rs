//! Bad input: rejected by `kubectl apply` itself, naming the field; what admission cannot check is
//! caught by the controller as InvalidSpec without touching any namespace.

use k8s_openapi::api::core::v1::{LimitRange, ResourceQuota};
use kube::api::Api;
use serde_json::{Value, json};

use crate::harness::{
    Operator, TestNamespace, TestPolicy, client, event_notes, kubectl, kubectl_with_input,
    repo_root, unique_name,
};
use crate::smoke::install_crd;

fn lr(limits: Value) -> Value {
    json!({"limitRanges": [{"name": "defaults", "limits": [limits]}]})
}

fn pdb(budget: Value) -> Value {
    let mut item = json!({"name": "web", "selector": {"matchLabels": {"app": "web"}}});
    item.as_object_mut()
        .unwrap()
        .extend(budget.as_object().unwrap().clone());
    json!({"podDisruptionBudgets": [item]})
}

fn sc(class: Value) -> Value {
    json!({"storage": {"classes": [class]}})
}

fn shared(item: Value) -> Value {
    json!({"sharedQuotas": [item]})
}

/// (case, spec, the field the message must name, a fragment of the message).
fn malformed() -> Vec<(&'static str, Value, &'static str, &'static str)> {
    let container = |extra: Value| {
        let mut item = json!({"type": "Container"});
        item.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        lr(item)
    };
    let many: Vec<Value> = (0..21).map(|i| json!({"name": format!("lr-{i}"), "limits": [{"type": "Pod", "max": {"cpu": "1"}}]})).collect();
    vec![
        (
            "quantity the pattern admits and the parser refuses",
            json!({"resourceQuotas": [{"name": "q", "hard": {"pods": "1e1.5"}}]}),
            "spec.resourceQuotas[0].hard[pods]",
            "must be a quantity",
        ),
        (
            "shared budget quantity the parser refuses",
            shared(json!({"name": "team", "hard": {"requests.cpu": "2e0.5"}})),
            "spec.sharedQuotas[0].hard[requests.cpu]",
            "must be a quantity",
        ),
        (
            "quota resource name that is not a qualified name",
            json!({"resourceQuotas": [{"name": "q", "hard": {"bad key!": "1"}}]}),
            "spec.resourceQuotas[0].hard",
            "every key must be a resource name",
        ),
        (
            "limit resource name that is not a qualified name",
            container(json!({"max": {"-cpu": "1"}})),
            "spec.limitRanges[0].limits[0].max",
            "every key must be a resource name",
        ),
        (
            "unknown label selector operator",
            json!({"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Near"}]}}),
            "spec.namespaceSelector.matchExpressions[0].operator",
            "Unsupported value",
        ),
        (
            "Exists with values",
            json!({"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Exists", "values": ["a"]}]}}),
            "spec.namespaceSelector.matchExpressions[0].values",
            "empty for Exists",
        ),
        (
            "In without values",
            json!({"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "In"}]}}),
            "spec.namespaceSelector.matchExpressions[0].values",
            "must be set for In",
        ),
        (
            "quota scope selector with an unknown operator",
            json!({"resourceQuotas": [{"name": "q", "hard": {"pods": "1"},
                "scopeSelector": {"matchExpressions": [{"scopeName": "PriorityClass", "operator": "Near", "values": ["high"]}]}}]}),
            "spec.resourceQuotas[0].scopeSelector.matchExpressions[0].operator",
            "Unsupported value",
        ),
        (
            "quota scope selector: Exists with values",
            json!({"resourceQuotas": [{"name": "q", "hard": {"pods": "1"},
                "scopeSelector": {"matchExpressions": [{"scopeName": "PriorityClass", "operator": "Exists", "values": ["high"]}]}}]}),
            "spec.resourceQuotas[0].scopeSelector.matchExpressions[0].values",
            "empty for Exists",
        ),
        (
            "quota scope selector: a presence scope with In",
            json!({"resourceQuotas": [{"name": "q", "hard": {"pods": "1"},
                "scopeSelector": {"matchExpressions": [{"scopeName": "BestEffort", "operator": "In", "values": ["x"]}]}}]}),
            "spec.resourceQuotas[0].scopeSelector.matchExpressions[0].operator",
            "only the operators Exists and DoesNotExist",
        ),
        (
            "quota scope selector: an unknown scope",
            json!({"resourceQuotas": [{"name": "q", "hard": {"pods": "1"},
                "scopeSelector": {"matchExpressions": [{"scopeName": "Expensive", "operator": "Exists"}]}}]}),
            "spec.resourceQuotas[0].scopeSelector.matchExpressions[0].scopeName",
            "Unsupported value",
        ),
        (
            "empty label key in a PDB selector",
            json!({"podDisruptionBudgets": [{"name": "p", "minAvailable": 1, "selector": {"matchLabels": {"": "web"}}}]}),
            "spec.podDisruptionBudgets[0].selector.matchLabels",
            "a label key must not be empty",
        ),
        (
            "empty label key in a PDB selector expression",
            json!({"podDisruptionBudgets": [{"name": "p", "minAvailable": 1, "selector": {"matchExpressions": [{"key": "", "operator": "Exists"}]}}]}),
            "spec.podDisruptionBudgets[0].selector.matchExpressions[0].key",
            "at least 1 chars long",
        ),
        (
            "malformed limit quantity",
            container(json!({"default": {"cpu": "3 cores"}})),
            "spec.limitRanges[0].limits[0].default.cpu",
            "should match",
        ),
        (
            "malformed quota quantity",
            json!({"resourceQuotas": [{"name": "q", "hard": {"pods": "lots"}}]}),
            "spec.resourceQuotas[0].hard.pods",
            "should match",
        ),
        (
            "overlong quantity",
            json!({"resourceQuotas": [{"name": "q", "hard": {"pods": "1".repeat(40)}}]}),
            "spec.resourceQuotas[0].hard.pods",
            "32",
        ),
        (
            "unknown spec field",
            json!({"limitRange": []}),
            "spec.limitRange",
            "unknown field",
        ),
        (
            "unknown item field",
            container(json!({"maximum": {"cpu": "1"}})),
            "spec.limitRanges[0].limits[0].maximum",
            "unknown field",
        ),
        (
            "limit type",
            lr(json!({"type": "Node", "max": {"cpu": "1"}})),
            "spec.limitRanges[0].limits[0].type",
            "Unsupported value",
        ),
        (
            "min above max",
            container(json!({"min": {"cpu": "2"}, "max": {"cpu": "1"}})),
            "spec.limitRanges[0].limits[0]",
            "min must not exceed max",
        ),
        (
            "defaultRequest above default",
            container(
                json!({"default": {"memory": "100Mi"}, "defaultRequest": {"memory": "200Mi"}}),
            ),
            "spec.limitRanges[0].limits[0]",
            "defaultRequest must not exceed default for",
        ),
        (
            "default above max",
            container(json!({"default": {"cpu": "3"}, "max": {"cpu": "2"}})),
            "spec.limitRanges[0].limits[0]",
            "default must not exceed max",
        ),
        (
            "min above defaultRequest",
            container(json!({"min": {"cpu": "300m"}, "defaultRequest": {"cpu": "200m"}})),
            "spec.limitRanges[0].limits[0]",
            "min must not exceed defaultRequest",
        ),
        (
            "defaultRequest above max",
            container(json!({"defaultRequest": {"cpu": "3"}, "max": {"cpu": "2"}})),
            "spec.limitRanges[0].limits[0]",
            "defaultRequest must not exceed max",
        ),
        (
            "min above default",
            container(json!({"min": {"memory": "1Gi"}, "default": {"memory": "512Mi"}})),
            "spec.limitRanges[0].limits[0]",
            "min must not exceed default for",
        ),
        (
            "ratio below one",
            container(json!({"maxLimitRequestRatio": {"cpu": "500m"}})),
            "spec.limitRanges[0].limits[0]",
            "maxLimitRequestRatio must be at least 1",
        ),
        (
            "default on a Pod item",
            lr(json!({"type": "Pod", "default": {"cpu": "1"}})),
            "spec.limitRanges[0].limits[0]",
            "only allowed on Container items",
        ),
        (
            "defaultRequest on a Pod item",
            lr(json!({"type": "Pod", "defaultRequest": {"cpu": "1"}})),
            "spec.limitRanges[0].limits[0]",
            "only allowed on Container items",
        ),
        (
            "default on a PVC item",
            lr(json!({"type": "PersistentVolumeClaim", "default": {"storage": "1Gi"}})),
            "spec.limitRanges[0].limits[0]",
            "only allowed on Container items",
        ),
        (
            "no limits",
            json!({"limitRanges": [{"name": "d", "limits": []}]}),
            "spec.limitRanges[0].limits",
            "at least 1",
        ),
        (
            "both budgets",
            pdb(json!({"minAvailable": 1, "maxUnavailable": 1})),
            "spec.podDisruptionBudgets[0]",
            "exactly one of minAvailable and maxUnavailable",
        ),
        (
            "no budget",
            pdb(json!({})),
            "spec.podDisruptionBudgets[0]",
            "exactly one of minAvailable and maxUnavailable",
        ),
        (
            "budget string without percent",
            pdb(json!({"minAvailable": "50"})),
            "spec.podDisruptionBudgets[0].minAvailable",
            "should match",
        ),
        (
            "negative budget",
            pdb(json!({"maxUnavailable": -1})),
            "spec.podDisruptionBudgets[0].maxUnavailable",
            "greater than or equal to 0",
        ),
        (
            "eviction policy",
            pdb(json!({"minAvailable": 1, "unhealthyPodEvictionPolicy": "Never"})),
            "spec.podDisruptionBudgets[0].unhealthyPodEvictionPolicy",
            "Unsupported value",
        ),
        (
            "PDB without selector",
            json!({"podDisruptionBudgets": [{"name": "web", "minAvailable": 1}]}),
            "spec.podDisruptionBudgets[0].selector",
            "Required value",
        ),
        (
            "duplicate LimitRange names",
            json!({"limitRanges": [{"name": "d", "limits": [{"type": "Pod", "max": {"cpu": "1"}}]}, {"name": "d", "limits": [{"type": "Pod", "max": {"cpu": "2"}}]}]}),
            "spec.limitRanges[1]",
            "Duplicate value",
        ),
        (
            "duplicate quota names",
            json!({"resourceQuotas": [{"name": "q", "hard": {"pods": "1"}}, {"name": "q", "hard": {"pods": "2"}}]}),
            "spec.resourceQuotas[1]",
            "Duplicate value",
        ),
        (
            "duplicate PDB names",
            json!({"podDisruptionBudgets": [{"name": "p", "selector": {}, "minAvailable": 1}, {"name": "p", "selector": {}, "minAvailable": 2}]}),
            "spec.podDisruptionBudgets[1]",
            "Duplicate value",
        ),
        (
            "LimitRange name not DNS-1123",
            json!({"limitRanges": [{"name": "Bad_Name", "limits": [{"type": "Pod", "max": {"cpu": "1"}}]}]}),
            "spec.limitRanges[0].name",
            "should match",
        ),
        (
            "quota name with capitals",
            json!({"resourceQuotas": [{"name": "Compute", "hard": {"pods": "1"}}]}),
            "spec.resourceQuotas[0].name",
            "should match",
        ),
        (
            "PDB name too long",
            json!({"podDisruptionBudgets": [{"name": "a".repeat(254), "selector": {}, "minAvailable": 1}]}),
            "spec.podDisruptionBudgets[0].name",
            "253",
        ),
        (
            "namespace name not DNS-1123",
            json!({"namespaces": ["Not_A_Namespace"]}),
            "spec.namespaces[0]",
            "should match",
        ),
        (
            "duplicate namespace",
            json!({"namespaces": ["a", "a"]}),
            "spec.namespaces[1]",
            "Duplicate value",
        ),
        (
            "deletion policy",
            json!({"deletionPolicy": "Keep"}),
            "spec.deletionPolicy",
            "Unsupported value",
        ),
        (
            "StorageClass without provisioner",
            sc(json!({"name": "fast"})),
            "spec.storage.classes[0].provisioner",
            "Required value",
        ),
        (
            "StorageClass with empty provisioner",
            sc(json!({"name": "fast", "provisioner": ""})),
            "spec.storage.classes[0].provisioner",
            "at least 1",
        ),
        (
            "reclaim policy",
            sc(json!({"name": "fast", "provisioner": "x.io/ssd", "reclaimPolicy": "Recycle"})),
            "spec.storage.classes[0].reclaimPolicy",
            "Unsupported value",
        ),
        (
            "volume binding mode",
            sc(json!({"name": "fast", "provisioner": "x.io/ssd", "volumeBindingMode": "Later"})),
            "spec.storage.classes[0].volumeBindingMode",
            "Unsupported value",
        ),
        (
            "StorageClass name",
            sc(json!({"name": "Fast_SSD", "provisioner": "x.io/ssd"})),
            "spec.storage.classes[0].name",
            "should match",
        ),
        (
            "duplicate StorageClass names",
            json!({"storage": {"classes": [{"name": "f", "provisioner": "a"}, {"name": "f", "provisioner": "b"}]}}),
            "spec.storage.classes[1]",
            "Duplicate value",
        ),
        (
            "duplicate allowed class",
            json!({"storage": {"allowedClasses": ["fast", "fast"]}}),
            "spec.storage.allowedClasses[1]",
            "Duplicate value",
        ),
        (
            "per-class quota key",
            json!({"storage": {"quotas": {"fast": {"requests.cpu": "1"}}}}),
            "spec.storage.quotas.fast.requests.cpu",
            "unknown field",
        ),
        (
            "per-class quota quantity",
            json!({"storage": {"quotas": {"fast": {"requests.storage": "lots"}}}}),
            "spec.storage.quotas.fast.requests.storage",
            "should match",
        ),
        (
            "empty per-class quota",
            json!({"storage": {"quotas": {"fast": {}}}}),
            "spec.storage.quotas.fast",
            "at least 1",
        ),
        (
            "per-class quota for a class outside the allow-list",
            json!({"storage": {"allowedClasses": ["fast"], "quotas": {"slow": {"persistentvolumeclaims": "1"}}}}),
            "spec.storage.quotas",
            "must be in allowedClasses",
        ),
        (
            "per-class quota keyed by an invalid class name",
            json!({"storage": {"quotas": {"Fast_SSD": {"persistentvolumeclaims": "1"}}}}),
            "spec.storage.quotas",
            "keyed by StorageClass name",
        ),
        (
            "quota named like the storage section's",
            json!({"resourceQuotas": [{"name": "tenantry-storage", "hard": {"pods": "1"}}]}),
            "spec.resourceQuotas[0].name",
            "reserved",
        ),
        (
            "quota scope",
            json!({"resourceQuotas": [{"name": "q", "hard": {"pods": "1"}, "scopes": ["Sometimes"]}]}),
            "spec.resourceQuotas[0].scopes[0]",
            "Unsupported value",
        ),
        (
            "BestEffort scope with compute",
            json!({"resourceQuotas": [{"name": "q", "hard": {"requests.cpu": "1"}, "scopes": ["BestEffort"]}]}),
            "spec.resourceQuotas[0]",
            "BestEffort scope can only track pods",
        ),
        (
            "too many LimitRanges",
            json!({"limitRanges": many}),
            "spec.limitRanges",
            "20",
        ),
        // Over 100% and below zero: the API server would refuse the built PDB, LimitRange or
        // ResourceQuota; admission says so before any namespace is selected (issue 16).
        (
            "PDB minAvailable over 100%",
            pdb(json!({"minAvailable": "150%"})),
            "spec.podDisruptionBudgets[0].minAvailable",
            "a percentage must be at most 100%",
        ),
        (
            "PDB maxUnavailable over 100%",
            pdb(json!({"maxUnavailable": "101%"})),
            "spec.podDisruptionBudgets[0].maxUnavailable",
            "a percentage must be at most 100%",
        ),
        (
            "PDB fractional percentage",
            pdb(json!({"minAvailable": "12.5%"})),
            "spec.podDisruptionBudgets[0].minAvailable",
            "should match",
        ),
        (
            "PDB negative percentage",
            pdb(json!({"maxUnavailable": "-10%"})),
            "spec.podDisruptionBudgets[0].maxUnavailable",
            "should match",
        ),
        (
            "negative LimitRange min",
            container(json!({"min": {"cpu": "-1"}})),
            "spec.limitRanges[0].limits[0].min[cpu]",
            "must not be negative",
        ),
        (
            "negative LimitRange max",
            lr(json!({"type": "Pod", "max": {"memory": "-1Gi"}})),
            "spec.limitRanges[0].limits[0].max[memory]",
            "must not be negative",
        ),
        (
            "negative LimitRange default",
            container(json!({"default": {"cpu": "-100m"}})),
            "spec.limitRanges[0].limits[0].default[cpu]",
            "must not be negative",
        ),
        (
            "negative LimitRange defaultRequest",
            container(json!({"defaultRequest": {"memory": "-5Mi"}})),
            "spec.limitRanges[0].limits[0].defaultRequest[memory]",
            "must not be negative",
        ),
        (
            "negative maxLimitRequestRatio",
            container(json!({"maxLimitRequestRatio": {"cpu": "-2"}})),
            "spec.limitRanges[0].limits[0].maxLimitRequestRatio[cpu]",
            "must not be negative",
        ),
        (
            "negative quota",
            json!({"resourceQuotas": [{"name": "q", "hard": {"requests.cpu": "-4"}}]}),
            "spec.resourceQuotas[0].hard[requests.cpu]",
            "must not be negative",
        ),
        (
            "negative quota as an integer",
            json!({"resourceQuotas": [{"name": "q", "hard": {"pods": -5}}]}),
            "spec.resourceQuotas[0].hard[pods]",
            "must not be negative",
        ),
        (
            "negative storage quota",
            json!({"storage": {"quotas": {"fast-ssd": {"requests.storage": "-10Gi"}}}}),
            "spec.storage.quotas[fast-ssd].requests.storage",
            "must not be negative",
        ),
        (
            "negative storage claim count",
            json!({"storage": {"quotas": {"fast-ssd": {"persistentvolumeclaims": "-1"}}}}),
            "spec.storage.quotas[fast-ssd].persistentvolumeclaims",
            "must not be negative",
        ),
        (
            "malformed shared quantity",
            shared(json!({"name": "team", "hard": {"pods": "lots"}})),
            "spec.sharedQuotas[0].hard.pods",
            "should match",
        ),
        (
            "negative shared quantity",
            shared(json!({"name": "team", "hard": {"pods": "10", "requests.cpu": "-1"}})),
            "spec.sharedQuotas[0].hard",
            // The rule every spec quantity carries (crd.rs), naming the key.
            "must not be negative",
        ),
        (
            "shared quota without hard",
            shared(json!({"name": "team"})),
            "spec.sharedQuotas[0].hard",
            "Required value",
        ),
        (
            "shared quota with an empty hard",
            shared(json!({"name": "team", "hard": {}})),
            "spec.sharedQuotas[0].hard",
            "at least 1",
        ),
        (
            "duplicate shared quota names",
            json!({"sharedQuotas": [{"name": "team", "hard": {"pods": "1"}}, {"name": "team", "hard": {"pods": "2"}}]}),
            "spec.sharedQuotas[1]",
            "Duplicate value",
        ),
        (
            "shared quota name not DNS-1123",
            shared(json!({"name": "Team_Budget", "hard": {"pods": "1"}})),
            "spec.sharedQuotas[0].name",
            "should match",
        ),
        (
            "shared quota named like the storage section's",
            shared(json!({"name": "tenantry-storage", "hard": {"pods": "1"}})),
            "spec.sharedQuotas[0].name",
            "reserved",
        ),
        (
            "shared quota named like a resourceQuotas item",
            json!({"resourceQuotas": [{"name": "compute", "hard": {"pods": "1"}}],
                   "sharedQuotas": [{"name": "compute", "hard": {"pods": "10"}}]}),
            "spec.sharedQuotas",
            "must differ from every resourceQuotas name",
        ),
        (
            "shared quota scope",
            shared(json!({"name": "team", "hard": {"pods": "1"}, "scopes": ["Sometimes"]})),
            "spec.sharedQuotas[0].scopes[0]",
            "Unsupported value",
        ),
        (
            "shared BestEffort scope with compute",
            shared(
                json!({"name": "team", "hard": {"requests.cpu": "1"}, "scopes": ["BestEffort"]}),
            ),
            "spec.sharedQuotas[0]",
            "BestEffort scope can only track pods",
        ),
        (
            "unknown shared quota field",
            shared(json!({"name": "team", "hard": {"pods": "1"}, "soft": {"pods": "1"}})),
            "spec.sharedQuotas[0].soft",
            "unknown field",
        ),
        (
            "priority not a number",
            json!({"priority": "high"}),
            "spec.priority",
            "integer",
        ),
    ]
}

#[tokio::test]
async fn malformed_policies_are_rejected_by_kubectl_apply_naming_the_field() {
    let client = client().await;
    install_crd(&client).await;
    let cases = malformed();
    assert!(cases.len() >= 30, "the contract asks for at least 30 cases");
    let mut wrong = Vec::new();
    for (case, spec, field, fragment) in &cases {
        let name = unique_name("malformed");
        let policy = json!({"apiVersion": "tenantry.io/v1alpha1", "kind": "TenantPolicy", "metadata": {"name": name}, "spec": spec});
        let out = kubectl_with_input(&["apply", "-f", "-"], Some(&policy.to_string()));
        if out.success {
            let _ = kubectl(&["delete", "tenantpolicy", &name, "--wait=false"]);
            wrong.push(format!("{case}: accepted"));
        } else if !out.stderr.contains(field) || !out.stderr.contains(fragment) {
            wrong.push(format!(
                "{case}: expected {field:?} and {fragment:?} in: {}",
                out.stderr.trim()
            ));
        } else if kubectl(&["get", "tenantpolicy", &name]).success {
            wrong.push(format!("{case}: rejected, yet stored"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases wrong:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
}

/// The bounds themselves pass: budgets of 100% and 0%, quantities of zero (also spelled -0).
#[tokio::test]
async fn boundary_values_are_accepted() {
    let client = client().await;
    install_crd(&client).await;
    let specs = [
        pdb(json!({"minAvailable": "100%"})),
        pdb(json!({"maxUnavailable": "0%"})),
        pdb(json!({"maxUnavailable": 0})),
        lr(
            json!({"type": "Container", "min": {"cpu": "0"}, "defaultRequest": {"cpu": "-0"}, "maxLimitRequestRatio": {"cpu": "1"}}),
        ),
        json!({"resourceQuotas": [{"name": "q", "hard": {"pods": 0, "requests.cpu": "0m"}}]}),
        json!({"storage": {"quotas": {"fast-ssd": {"requests.storage": "0", "persistentvolumeclaims": "0"}}}}),
    ];
    for spec in specs {
        let policy = json!({"apiVersion": "tenantry.io/v1alpha1", "kind": "TenantPolicy",
            "metadata": {"name": unique_name("boundary")}, "spec": spec});
        let out = kubectl_with_input(
            &["apply", "--dry-run=server", "-f", "-"],
            Some(&policy.to_string()),
        );
        assert!(out.success, "{spec}: {}", out.stderr);
    }
}

#[tokio::test]
async fn every_sample_policy_is_accepted() {
    let client = client().await;
    install_crd(&client).await;
    let samples = repo_root().join("config/samples");
    let mut count = 0;
    for entry in std::fs::read_dir(&samples).unwrap() {
        let path = entry.unwrap().path();
        let out = kubectl(&["apply", "--dry-run=server", "-f", path.to_str().unwrap()]);
        assert!(out.success, "{}: {}", path.display(), out.stderr);
        count += 1;
    }
    assert!(count >= 4, "samples found: {count}");
}

#[tokio::test]
async fn well_formed_shared_quotas_are_accepted() {
    let client = client().await;
    install_crd(&client).await;
    let name = unique_name("shared-ok");
    // Integer and suffixed quantities, a zero, scopes and a scope selector, beside a
    // resourceQuotas item of another name.
    let policy = json!({"apiVersion": "tenantry.io/v1alpha1", "kind": "TenantPolicy",
        "metadata": {"name": name},
        "spec": {"namespaces": ["mia"],
            "resourceQuotas": [{"name": "compute", "hard": {"pods": "20"}}],
            "sharedQuotas": [
                {"name": "team-budget", "hard": {"requests.cpu": "40", "requests.memory": "80Gi", "pods": 200},
                 "scopes": ["NotBestEffort"]},
                {"name": "best-effort", "hard": {"pods": "0"}, "scopes": ["BestEffort"]},
                {"name": "high", "hard": {"requests.cpu": "500m"},
                 "scopeSelector": {"matchExpressions": [{"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}}]}});
    let out = kubectl_with_input(
        &["apply", "--dry-run=server", "-f", "-"],
        Some(&policy.to_string()),
    );
    assert!(out.success, "{}", out.stderr);
}

async fn assert_untouched(client: &kube::Client, ns: &str) {
    let ranges: Api<LimitRange> = Api::namespaced(client.clone(), ns);
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), ns);
    assert!(
        ranges
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "a LimitRange was created in {ns}"
    );
    assert!(
        quotas
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "a ResourceQuota was created in {ns}"
    );
}

#[tokio::test]
async fn what_admission_cannot_check_stalls_the_policy_without_touching_namespaces_until_fixed() {
    let client = client().await;
    install_crd(&client).await;
    let operator = Operator::start(&unique_name("invalid")).await;
    let ns = TestNamespace::create(&client, "e2e-invalid").await;
    let quota = json!({"name": "compute", "hard": {"pods": "10"}});

    // 1. default/defaultRequest above maxLimitRequestRatio: CEL cannot divide quantities.
    let ratio = |max_ratio: &str| {
        json!({"namespaces": [ns.name], "resourceQuotas": [quota],
            "limitRanges": [{"name": "defaults", "limits": [{"type": "Container",
                "default": {"cpu": "1"}, "defaultRequest": {"cpu": "100m"}, "maxLimitRequestRatio": {"cpu": max_ratio}}]}]})
    };
    let policy = TestPolicy::create(&client, &operator, "ratio", ratio("5")).await;
    let status = policy.wait_condition(&client, "Stalled", "True").await;
    let stalled = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Stalled")
        .unwrap();
    assert_eq!(stalled.reason, "InvalidSpec");
    assert!(stalled.message.starts_with("spec.limitRanges[0].limits[0]: default cpu limit 1 over default request 100m exceeds maxLimitRequestRatio 5"), "{}", stalled.message);
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "False" && c.reason == "InvalidSpec")
    );
    assert_untouched(&client, &ns.name).await;
    assert!(
        !event_notes(&client, &policy.name, "InvalidSpec")
            .await
            .is_empty()
    );

    policy.set_spec(&client, ratio("10")).await;
    let status = policy.wait_ready(&client).await;
    assert_eq!(status.ready_namespaces, 1);
    let ranges: Api<LimitRange> = Api::namespaced(client.clone(), &ns.name);
    assert!(ranges.get_opt("defaults").await.unwrap().is_some());
    drop(policy);

    // 2. A PDB selector with a label value the API server refuses: found by a server dry run
    //    before any write, so the LimitRange and quota of the same policy are not created either.
    let other = TestNamespace::create(&client, "e2e-invalid-pdb").await;
    let bad_selector = |value: &str| {
        json!({"namespaces": [other.name], "resourceQuotas": [quota],
            "limitRanges": [{"name": "defaults", "limits": [{"type": "Container", "default": {"cpu": "1"}}]}],
            "podDisruptionBudgets": [{"name": "web", "selector": {"matchLabels": {"app": value}}, "minAvailable": 1}]})
    };
    let policy = TestPolicy::create(
        &client,
        &operator,
        "dryrun",
        bad_selector("not a label value!"),
    )
    .await;
    let status = policy.wait_condition(&client, "Stalled", "True").await;
    let stalled = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Stalled")
        .unwrap();
    assert_eq!(stalled.reason, "InvalidSpec");
    assert!(
        stalled
            .message
            .starts_with("spec.podDisruptionBudgets[name=web]"),
        "{}",
        stalled.message
    );
    assert!(
        stalled.message.contains("spec.selector"),
        "{}",
        stalled.message
    );
    assert_untouched(&client, &other.name).await;
    let creates = operator.metric("tenantry_api_writes_total", &["verb=\"create\""]);
    assert_eq!(
        creates, 2.0,
        "only the fixed first policy's LimitRange and quota were ever created"
    );

    policy.set_spec(&client, bad_selector("web")).await;
    assert_eq!(policy.wait_ready(&client).await.ready_namespaces, 1);

    // 3. A namespace selector with an unknown operator: refused at admission now (the CRD's
    // enum), so it never reaches the controller; nothing of it is stored.
    let refused = Api::<tenantry::api::TenantPolicy>::all(client.clone())
        .create(
            &kube::api::PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "tenantry.io/v1alpha1", "kind": "TenantPolicy",
                "metadata": {"name": unique_name("selector")},
                "spec": {
                    "namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Near"}]},
                    "resourceQuotas": [quota],
                },
            }))
            .unwrap(),
        )
        .await;
    match refused {
        Err(kube::Error::Api(s)) => assert!(
            s.code == 422
                && s.message
                    .contains("spec.namespaceSelector.matchExpressions[0].operator"),
            "{s:?}"
        ),
        other => panic!("expected a refusal naming the operator, got {other:?}"),
    }
}

/// The dry run does not wait for a namespace: a policy selecting none whose template the API
/// server refuses (a PDB selector's label value, which CEL does not check) is Stalled/InvalidSpec
/// at once, not when a namespace created next month first selects it; and nothing is stored.
#[tokio::test]
async fn a_policy_selecting_no_namespace_is_still_judged_by_the_api_servers_dry_run() {
    use k8s_openapi::api::policy::v1::PodDisruptionBudget;
    let client = client().await;
    install_crd(&client).await;
    let operator = Operator::start(&unique_name("invalid-none")).await;
    let name = unique_name("nowhere-pdb");
    let spec = |value: &str| {
        json!({"namespaceSelector": {"matchLabels": {"e2e.tenantry.io/never": "matches"}},
            "podDisruptionBudgets": [{"name": name, "selector": {"matchLabels": {"app": value}}, "minAvailable": 1}]})
    };
    let policy =
        TestPolicy::create(&client, &operator, "nowhere", spec("not a label value!")).await;
    let status = policy.wait_condition(&client, "Stalled", "True").await;
    assert_eq!(status.selected_namespaces, 0);
    let stalled = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Stalled")
        .unwrap();
    assert_eq!(stalled.reason, "InvalidSpec");
    assert!(
        stalled
            .message
            .starts_with(&format!("spec.podDisruptionBudgets[name={name}]")),
        "{}",
        stalled.message
    );
    assert!(
        stalled.message.contains("spec.selector"),
        "{}",
        stalled.message
    );
    // Judged in `default` by a dry run: nothing was stored there.
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "default");
    assert!(pdbs.get_opt(&name).await.unwrap().is_none());
    assert_eq!(
        operator.metric("tenantry_api_writes_total", &["verb=\"create\""]),
        0.0
    );

    policy.set_spec(&client, spec("web")).await;
    let status = policy.wait_ready(&client).await;
    assert_eq!(
        (status.selected_namespaces, status.ready_namespaces),
        (0, 0)
    );
}

/// Quantity comparison agrees with the API server's own canonical form: 200 generated quantities
/// are stored in ResourceQuotas and read back; each stored spelling must compare equal to what was
/// sent and unequal to every value that differs. (If the server rounded where the controller does
/// not, a converged object would look changed forever.)
#[tokio::test]
async fn quantity_comparison_agrees_with_the_api_servers_canonical_form() {
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use kube::api::PostParams;
    use tenantry::model::quantity;

    let client = client().await;
    let ns = TestNamespace::create(&client, "e2e-quantities").await;
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), &ns.name);
    let keys = [
        "requests.cpu",
        "limits.cpu",
        "requests.memory",
        "limits.memory",
        "cpu",
        "memory",
        "requests.storage",
        "requests.ephemeral-storage",
    ];
    let suffixes = [
        "", "m", "k", "M", "G", "T", "Ki", "Mi", "Gi", "Ti", "u", "n", "e3", "E-2",
    ];
    // A fixed linear congruential sequence: varied, and the same on every run.
    let mut state: u64 = 0x5eed;
    let mut next = move |bound: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % bound
    };
    let mut sent = Vec::new();
    for q in 0..25 {
        let mut hard = std::collections::BTreeMap::new();
        for key in keys {
            let whole = next(100_000);
            let text = match next(3) {
                0 => format!("{whole}{}", suffixes[next(suffixes.len() as u64) as usize]),
                1 => format!("{whole}.{}{}", next(1000), suffixes[next(10) as usize]),
                _ => format!(
                    "{}{}",
                    whole * 1024,
                    ["Ki", "Mi", "", "m"][next(4) as usize]
                ),
            };
            hard.insert(key.to_owned(), Quantity(text.clone()));
            sent.push((format!("q{q}"), key, text));
        }
        let quota: ResourceQuota = serde_json::from_value(
            json!({"metadata": {"name": format!("q{q}")}, "spec": {"hard": hard}}),
        )
        .unwrap();
        quotas
            .create(&PostParams::default(), &quota)
            .await
            .unwrap_or_else(|e| panic!("{hard:?}: {e}"));
    }
    let mut stored = Vec::new();
    for (name, key, text) in &sent {
        let quota = quotas.get(name).await.unwrap();
        let back = quota.spec.unwrap().hard.unwrap()[*key].0.clone();
        assert!(
            quantity::same(text, &back),
            "sent {text}, the API server stored {back}: they must compare equal"
        );
        stored.push((text.clone(), back));
    }
    for (i, (text, _)) in stored.iter().enumerate() {
        for (other_text, other_back) in stored.iter().skip(i + 1) {
            if quantity::stored_value(text) != quantity::stored_value(other_text) {
                assert!(
                    !quantity::same(text, other_back),
                    "{text} must differ from {other_text} (stored {other_back})"
                );
            }
        }
    }
}
