//! The report from the inputs: pure (no client), so that every finding is unit-tested. This
//! file drives it and judges namespaces (pods, quotas, LimitRanges) and nodes; [`workloads`]
//! judges each workload's next pod and its PodDisruptionBudgets, [`shared`] the shared quotas.

mod shared;
mod workloads;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{LimitRange, Namespace, Pod, PodSpec, PodStatus, ResourceQuota};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::ResourceExt;

use super::{AuditReport, Inputs, NamespaceReport, QuotaUsage};
use crate::api::{MANAGED_BY_LABEL, MANAGED_BY_VALUE, POLICY_LABEL};
use crate::model::quantity;
use crate::pipeline::pod_resources::{self as pr, Amounts};

/// QoS class of an admitted pod's spec, by the API server's rules (see [`pr::qos`]).
pub fn qos_class(spec: &PodSpec) -> &'static str {
    pr::qos(spec).as_str()
}

fn governed(labels: &BTreeMap<String, String>) -> Option<String> {
    (labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY_VALUE))
        .then(|| labels.get(POLICY_LABEL).cloned())
        .flatten()
}

/// cpu in millicores; memory in the largest binary unit that is exact, else Gi to one decimal.
fn format_amount(nanos: i128, memory: bool) -> String {
    if !memory {
        return format!("{}m", nanos / 1_000_000);
    }
    let bytes = nanos / 1_000_000_000;
    if bytes == 0 {
        "0".into()
    } else if bytes % (1 << 30) == 0 {
        format!("{}Gi", bytes >> 30)
    } else if bytes % (1 << 20) == 0 {
        format!("{}Mi", bytes >> 20)
    } else {
        format!("{:.1}Gi", bytes as f64 / (1u64 << 30) as f64)
    }
}

fn cpu_memory(amounts: &Amounts) -> BTreeMap<String, String> {
    ["cpu", "memory"]
        .into_iter()
        .filter_map(|r| Some((r.to_owned(), format_amount(*amounts.get(r)?, r == "memory"))))
        .collect()
}

/// What one namespace holds that the audit judges pods and workloads against.
struct Scope<'a> {
    name: &'a str,
    quotas: Vec<&'a ResourceQuota>,
    /// By name: LimitRanger applies each in turn, so with several defaulting one resource the
    /// first wins (the API server's order is its cache's; two LimitRanges defaulting the same
    /// resource is itself a finding).
    limit_ranges: Vec<&'a LimitRange>,
    pdbs: Vec<&'a PodDisruptionBudget>,
}

/// The report, for the namespaces `keep` accepts.
pub fn audit(inputs: &Inputs, keep: &dyn Fn(&Namespace) -> bool) -> AuditReport {
    let mut report = AuditReport::default();
    let mut quota_totals: BTreeMap<&str, i128> = BTreeMap::new();
    let audited: Vec<String> = (inputs.namespaces.iter().filter(|n| keep(n)))
        .map(|n| n.name_any())
        .collect();
    for ns in inputs.namespaces.iter().filter(|n| keep(n)) {
        let name = ns.name_any();
        let here = |namespace: Option<String>| namespace.as_deref() == Some(name.as_str());
        let mut limit_ranges: Vec<&LimitRange> = inputs
            .limit_ranges
            .iter()
            .filter(|l| here(l.namespace()))
            .collect();
        limit_ranges.sort_by_key(|l| l.name_any());
        let scope = Scope {
            name: &name,
            quotas: inputs
                .quotas
                .iter()
                .filter(|q| here(q.namespace()))
                .collect(),
            limit_ranges,
            pdbs: inputs.pdbs.iter().filter(|p| here(p.namespace())).collect(),
        };
        let pods: Vec<&Pod> = inputs.pods.iter().filter(|p| here(p.namespace())).collect();
        let row = namespace_row(&scope, &pods, &mut report.findings, &mut quota_totals);
        report.namespaces.push(row);
        for workload in workloads::workloads(inputs, &name) {
            let w = workloads::workload_row(&scope, workload, &mut report.findings);
            report.workloads.push(w);
        }
    }
    node_findings(inputs, &quota_totals, &mut report.findings);
    report.shared_quotas = shared::shared_quotas(inputs, &audited, &mut report.findings);
    report
}

fn namespace_row<'a>(
    scope: &Scope<'a>,
    pods: &[&Pod],
    findings: &mut Vec<String>,
    quota_totals: &mut BTreeMap<&'static str, i128>,
) -> NamespaceReport {
    let name = scope.name;
    let mut row = NamespaceReport {
        name: name.to_owned(),
        pods: pods.len(),
        ..Default::default()
    };
    let (mut requests, mut limits) = (Amounts::new(), Amounts::new());
    for pod in pods {
        let spec = pod.spec.clone().unwrap_or_default();
        // The class the API server recorded at creation; resizes cannot change it.
        let qos = pod
            .status
            .as_ref()
            .and_then(|s| s.qos_class.clone())
            .unwrap_or_else(|| pr::qos(&spec).as_str().to_owned());
        *row.qos.entry(qos).or_default() += 1;
        if !pr::counts_for_quota(pod.status.as_ref()) {
            continue;
        }
        let counted = pr::pod_requests(&spec, pod.status.as_ref());
        for (k, v) in &counted {
            *requests.entry(k.clone()).or_default() += v;
        }
        for (k, v) in pr::pod_limits(&spec, pod.status.as_ref()) {
            *limits.entry(k).or_default() += v;
        }
        if let Some(f) = resize_finding(name, pod, &spec, &counted) {
            findings.push(f);
        }
    }
    let best_effort = row.qos.get("BestEffort").copied().unwrap_or(0);
    let defaults = scope.limit_ranges.iter().any(|lr| {
        let (requests, limits) = pr::container_defaults(lr);
        ["cpu", "memory"]
            .iter()
            .any(|r| requests.contains_key(*r) || limits.contains_key(*r))
    });
    if best_effort > 0 && defaults {
        // Admission gives every new container the defaults, so these pods predate them.
        findings.push(format!(
            "namespace {name}: {best_effort} existing {} BestEffort, older than its LimitRange defaults; {} that class until recreated (a rollout)",
            if best_effort == 1 { "pod is" } else { "pods are" },
            if best_effort == 1 { "it keeps" } else { "they keep" },
        ));
    }
    row.requests = cpu_memory(&requests);
    row.limits = cpu_memory(&limits);
    let mut governs = |kind: &str, labels: &BTreeMap<String, String>| {
        if let Some(p) = governed(labels) {
            let list = row.governed_by.entry(kind.to_owned()).or_default();
            if !list.contains(&p) {
                list.push(p);
                list.sort();
            }
        }
    };
    for q in &scope.quotas {
        governs("ResourceQuota", q.labels());
    }
    for lr in &scope.limit_ranges {
        governs("LimitRange", lr.labels());
    }
    for pdb in &scope.pdbs {
        governs("PodDisruptionBudget", pdb.labels());
    }
    for q in &scope.quotas {
        row.quotas.push(quota_usage(q));
    }
    // What the namespace may request at most: its tightest quota (a compute quota and a shared
    // budget's part both limit it; summing them would count it twice).
    for total in ["requests.cpu", "requests.memory"] {
        let tightest = (scope.quotas.iter())
            .filter_map(|q| enforced_hard(q).get(total).cloned())
            .filter_map(|limit| quantity::stored_value(&limit.0))
            .map(|v| v.0)
            .min();
        if let Some(v) = tightest {
            *quota_totals.entry(total).or_default() += v;
        }
    }
    row.limit_ranges = scope.limit_ranges.iter().map(|l| l.name_any()).collect();
    if row.quotas.is_empty() {
        findings.push(format!("namespace {name} has no ResourceQuota"));
    }
    if row.limit_ranges.is_empty() {
        findings.push(format!("namespace {name} has no LimitRange"));
    }
    row
}

/// What a quota enforces: `status.hard` once kube-controller-manager has copied it, else `spec.hard`.
fn enforced_hard(
    q: &ResourceQuota,
) -> BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity> {
    q.status
        .as_ref()
        .and_then(|s| s.hard.clone())
        .or_else(|| q.spec.as_ref().and_then(|s| s.hard.clone()))
        .unwrap_or_default()
}

fn quota_usage(q: &ResourceQuota) -> QuotaUsage {
    let hard = enforced_hard(q);
    let used = q
        .status
        .as_ref()
        .and_then(|s| s.used.clone())
        .unwrap_or_default();
    let mut usage = BTreeMap::new();
    for (resource, limit) in &hard {
        let u = used
            .get(resource)
            .map(|q| q.0.clone())
            .unwrap_or_else(|| "0".into());
        let percent = match (quantity::stored_value(&u), quantity::stored_value(&limit.0)) {
            (Some(a), Some(b)) if b.0 > 0 => format!(" ({}%)", a.0 * 100 / b.0),
            _ => String::new(),
        };
        usage.insert(resource.clone(), format!("{u}/{}{percent}", limit.0));
    }
    QuotaUsage {
        name: q.name_any(),
        usage,
        governed_by: governed(q.labels()),
    }
}

/// A running pod whose counted requests differ from its spec: an in-place resize the kubelet has
/// not actuated (quota counts the larger of desired and allocated), or an infeasible one.
fn resize_finding(ns: &str, pod: &Pod, spec: &PodSpec, counted: &Amounts) -> Option<String> {
    let desired = pr::pod_requests(spec, None);
    let differs: Vec<String> = ["cpu", "memory"]
        .into_iter()
        .filter(|r| counted.get(*r) != desired.get(*r))
        .map(|r| {
            let show = |a: &Amounts| {
                a.get(r)
                    .map(|v| format_amount(*v, r == "memory"))
                    .unwrap_or_else(|| "none".into())
            };
            format!("requests.{r} {} (spec {})", show(counted), show(&desired))
        })
        .collect();
    if differs.is_empty() {
        return None;
    }
    Some(format!(
        "Pod {ns}/{} is counted by quotas at {}: {}",
        pod.name_any(),
        differs.join(", "),
        resize_state(pod.status.as_ref())
    ))
}

fn resize_state(status: Option<&PodStatus>) -> String {
    let Some(status) = status else {
        return "no status".into();
    };
    let condition = status.conditions.iter().flatten().find(|c| {
        (c.type_ == "PodResizePending" || c.type_ == "PodResizeInProgress") && c.status == "True"
    });
    match (condition, status.resize.as_deref()) {
        (Some(c), _) => format!(
            "in-place resize {} ({})",
            if c.type_ == "PodResizePending" {
                "pending"
            } else {
                "in progress"
            },
            c.reason.as_deref().unwrap_or("no reason")
        ),
        (None, Some(r)) => format!("in-place resize {r}"),
        (None, None) => "in-place resize not yet actuated".into(),
    }
}

/// Quota totals against what the nodes can hold.
fn node_findings(inputs: &Inputs, quota_totals: &BTreeMap<&str, i128>, findings: &mut Vec<String>) {
    let allocatable = |resource: &str| -> i128 {
        inputs
            .nodes
            .iter()
            .filter_map(|n| n.status.as_ref()?.allocatable.as_ref()?.get(resource))
            .filter_map(|q| quantity::stored_value(&q.0))
            .map(|v| v.0)
            .sum()
    };
    for (total, resource) in [("requests.cpu", "cpu"), ("requests.memory", "memory")] {
        let (quota, nodes) = (
            quota_totals.get(total).copied().unwrap_or(0),
            allocatable(resource),
        );
        if quota > 0 && quota > nodes {
            findings.push(format!(
                "quotas allow {} of {total} in total, the nodes can allocate {}{}",
                format_amount(quota, resource == "memory"),
                format_amount(nodes, resource == "memory"),
                if inputs.nodes.is_empty() {
                    " (no nodes)"
                } else {
                    ""
                }
            ));
        }
    }
}
