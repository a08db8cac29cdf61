//! `tenantry audit`: the governance report the operations notes began with, computed from what
//! the cluster holds. [`audit`] is pure; [`read_cluster`] reads the inputs. Pod arithmetic (the
//! next pod of a workload, QoS, what quotas count) is [`crate::pod_resources`], which follows the
//! API server's own code.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{
    LimitRange, Namespace, Node, Pod, PodSpec, PodStatus, PodTemplateSpec, ResourceQuota,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use kube::core::{Selector, SelectorExt};
use serde::Serialize;

use crate::allocator;
use crate::api::{
    MANAGED_BY_LABEL, MANAGED_BY_VALUE, POLICY_LABEL, SHARED_QUOTA_LABEL, TenantPolicy,
};
use crate::pod_resources::{self as pr, Amounts, Qos};
use crate::quantity;

/// Everything the audit reads.
#[derive(Default)]
pub struct Inputs {
    pub namespaces: Vec<Namespace>,
    pub pods: Vec<Pod>,
    pub quotas: Vec<ResourceQuota>,
    pub limit_ranges: Vec<LimitRange>,
    pub pdbs: Vec<PodDisruptionBudget>,
    pub deployments: Vec<Deployment>,
    pub statefulsets: Vec<StatefulSet>,
    pub daemonsets: Vec<DaemonSet>,
    pub cronjobs: Vec<CronJob>,
    pub nodes: Vec<Node>,
    /// For the budgets of shared quotas (`spec.sharedQuotas[].hard`); empty where Tenantry is
    /// not installed.
    pub policies: Vec<TenantPolicy>,
}

/// One shared budget (a TenantPolicy's `spec.sharedQuotas` item) across all the namespaces
/// holding a part of it: the quotas labelled `tenantry.io/shared-quota`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SharedQuotaReport {
    pub policy: String,
    pub name: String,
    /// Every namespace holding a part, audited or not: the budget spans them all.
    pub namespaces: Vec<String>,
    pub resources: BTreeMap<String, SharedResource>,
}

/// One resource of a shared budget.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SharedResource {
    /// The parts' `status.used`, summed.
    pub used: String,
    /// The parts as admission enforces them (the larger of `spec.hard` and `status.hard`),
    /// summed: at most `hard` while the budget holds.
    pub allotted: String,
    /// The budget, from the policy; none when the policy no longer declares it (parts left
    /// behind under Retain).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hard: Option<String>,
    /// `used` as a percentage of `hard`, rounded down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percent: Option<i128>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QuotaUsage {
    pub name: String,
    /// resource -> "used/hard (percent)".
    pub usage: BTreeMap<String, String>,
    pub governed_by: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceReport {
    pub name: String,
    pub pods: usize,
    /// QoS class -> pods.
    pub qos: BTreeMap<String, usize>,
    /// cpu/memory requests of the pods, summed as ResourceQuota counts them: terminal pods
    /// excluded, pod-level resources and in-place resizes (the larger of desired and allocated)
    /// included.
    pub requests: BTreeMap<String, String>,
    /// cpu/memory limits, summed the same way.
    pub limits: BTreeMap<String, String>,
    pub quotas: Vec<QuotaUsage>,
    pub limit_ranges: Vec<String>,
    /// Kind -> every TenantPolicy governing objects of that kind here (several where policies
    /// win different items, or the storage section's quota next to another's compute quota).
    pub governed_by: BTreeMap<String, Vec<String>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadReport {
    pub namespace: String,
    pub kind: String,
    pub name: String,
    pub replicas: i32,
    /// Per container: "name: requests cpu/memory, limits cpu/memory" as declared, and "pod: ..."
    /// for pod-level resources.
    pub resources: Vec<String>,
    /// The QoS class the API server gives its next pod: the template with the API's defaults and
    /// the namespace's LimitRange defaults applied.
    pub qos: String,
    /// The QoS class of the template alone (with the API's defaults, no LimitRange).
    pub template_qos: String,
    /// What decides `qos` when it is not the containers as written, e.g. "BestEffort in its
    /// template, Burstable for new pods: LimitRange defaults", or "pod-level resources".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qos_note: Option<String>,
    /// cpu/memory requests of its next pod, as quotas count them.
    pub new_pod_requests: BTreeMap<String, String>,
    pub pdbs: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub namespaces: Vec<NamespaceReport>,
    pub workloads: Vec<WorkloadReport>,
    /// The shared quotas with a part in an audited namespace.
    pub shared_quotas: Vec<SharedQuotaReport>,
    pub findings: Vec<String>,
}

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

fn budget_blocks_every_eviction(pdb: &PodDisruptionBudget, replicas: i32) -> bool {
    let Some(spec) = &pdb.spec else { return false };
    match (&spec.min_available, &spec.max_unavailable) {
        (Some(IntOrString::Int(n)), _) => *n >= replicas,
        (Some(IntOrString::String(p)), _) => p == "100%" || replicas <= 1,
        (_, Some(IntOrString::Int(0))) => true,
        (_, Some(IntOrString::String(p))) => p == "0%",
        _ => false,
    }
}

/// One workload: kind, name, replicas, and its pod template.
struct Workload<'a> {
    kind: &'static str,
    name: String,
    replicas: i32,
    template: Option<&'a PodTemplateSpec>,
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
pub fn audit(inputs: &Inputs, keep: &dyn Fn(&Namespace) -> bool) -> Report {
    let mut report = Report::default();
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
        for workload in workloads(inputs, &name) {
            let w = workload_row(&scope, workload, &mut report.findings);
            report.workloads.push(w);
        }
    }
    node_findings(inputs, &quota_totals, &mut report.findings);
    report.shared_quotas = shared_quotas(inputs, &audited, &mut report.findings);
    report
}

/// Milli-units per resource of a quota map, skipping what does not parse.
fn milli_of(
    map: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> allocator::Amounts {
    map.into_iter()
        .flatten()
        .filter_map(|(r, q)| Some((r.clone(), quantity::milli(&q.0)?)))
        .collect()
}

/// The shared quotas with a part in an audited namespace, each summed over all its parts and
/// judged against its policy's budget.
fn shared_quotas(
    inputs: &Inputs,
    audited: &[String],
    findings: &mut Vec<String>,
) -> Vec<SharedQuotaReport> {
    let mut groups: BTreeMap<(String, String), Vec<&ResourceQuota>> = BTreeMap::new();
    for q in &inputs.quotas {
        let (Some(policy), Some(item)) = (governed(q.labels()), q.labels().get(SHARED_QUOTA_LABEL))
        else {
            continue;
        };
        groups.entry((policy, item.clone())).or_default().push(q);
    }
    let audited_part = |parts: &[&ResourceQuota]| {
        parts.iter().any(|q| {
            audited
                .iter()
                .any(|n| Some(n) == q.metadata.namespace.as_ref())
        })
    };
    groups
        .into_iter()
        .filter(|(_, parts)| audited_part(parts))
        .map(|((policy, item), parts)| {
            let budget = inputs
                .policies
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(policy.as_str()))
                .and_then(|p| p.spec.shared_quotas.iter().find(|s| s.name == item))
                .and_then(|s| allocator::amounts(&s.hard).ok());
            let report = shared_quota(policy, item, &parts, budget.as_ref());
            shared_findings(&report, budget.as_ref(), findings);
            report
        })
        .collect()
}

/// A sum of milli-units: bytes (memory, storage) in the largest binary unit that is exact, as
/// people write them; anything else as the API server spells quantities.
fn format_sum(resource: &str, milli: i128) -> String {
    let bytes_like = resource.ends_with("memory") || resource.ends_with("storage");
    if bytes_like && milli != 0 && milli % 1000 == 0 {
        let bytes = milli / 1000;
        for (unit, shift) in [("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)] {
            if bytes % (1 << shift) == 0 {
                return format!("{}{unit}", bytes >> shift);
            }
        }
    }
    quantity::format_milli(milli)
}

/// One shared quota's totals.
fn shared_quota(
    policy: String,
    name: String,
    parts: &[&ResourceQuota],
    budget: Option<&allocator::Amounts>,
) -> SharedQuotaReport {
    let (mut used, mut allotted) = (allocator::Amounts::new(), allocator::Amounts::new());
    for q in parts {
        let status = q.status.as_ref();
        for (r, v) in milli_of(status.and_then(|s| s.used.as_ref())) {
            *used.entry(r).or_default() += v;
        }
        let mut enforced = milli_of(q.spec.as_ref().and_then(|s| s.hard.as_ref()));
        for (r, v) in milli_of(status.and_then(|s| s.hard.as_ref())) {
            let e = enforced.entry(r).or_default();
            *e = (*e).max(v);
        }
        for (r, v) in enforced {
            *allotted.entry(r).or_default() += v;
        }
    }
    let mut names: Vec<&String> = allotted.keys().chain(used.keys()).collect();
    names.extend(budget.into_iter().flat_map(|b| b.keys()));
    let resources = names
        .into_iter()
        .map(|r| {
            let hard = budget.and_then(|b| b.get(r)).copied();
            let u = used.get(r).copied().unwrap_or(0);
            let resource = SharedResource {
                used: format_sum(r, u),
                allotted: format_sum(r, allotted.get(r).copied().unwrap_or(0)),
                hard: hard.map(|h| format_sum(r, h)),
                percent: hard.filter(|h| *h > 0).map(|h| u * 100 / h),
            };
            (r.clone(), resource)
        })
        .collect();
    let mut namespaces: Vec<String> = parts.iter().filter_map(|q| q.namespace()).collect();
    namespaces.sort();
    SharedQuotaReport {
        policy,
        name,
        namespaces,
        resources,
    }
}

/// A budget used up (less than the controller's step left: nothing more is admitted), used
/// beyond (it joined or was lowered below use), or parts allowing more than it.
fn shared_findings(
    report: &SharedQuotaReport,
    budget: Option<&allocator::Amounts>,
    findings: &mut Vec<String>,
) {
    let Some(budget) = budget else { return };
    let across = format!("across {} namespaces", report.namespaces.len());
    for (resource, r) in &report.resources {
        let (Some(hard), Some(shown)) = (budget.get(resource), r.hard.as_deref()) else {
            continue;
        };
        let milli = |s: &str| quantity::milli(s).unwrap_or(0);
        let (used, allotted) = (milli(&r.used), milli(&r.allotted));
        let what = format!("shared quota {}/{}: {resource}", report.policy, report.name);
        if used > *hard {
            findings.push(format!(
                "{what} is over budget: {} used of {shown} {across}; nothing new is admitted until use falls below it",
                r.used
            ));
        } else if hard - used < allocator::step(resource) {
            findings.push(format!(
                "{what} is exhausted: {} used of {shown} {across}; new requests are refused",
                r.used
            ));
        }
        if allotted > *hard {
            findings.push(format!(
                "{what}: the parts allow {} in total, more than the budget of {shown}",
                r.allotted
            ));
        }
    }
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

fn workloads<'a>(inputs: &'a Inputs, ns: &str) -> Vec<Workload<'a>> {
    let here = |namespace: Option<String>| namespace.as_deref() == Some(ns);
    let mut out = Vec::new();
    for d in inputs.deployments.iter().filter(|d| here(d.namespace())) {
        let spec = &d.spec;
        out.push(Workload {
            kind: "Deployment",
            name: d.name_any(),
            replicas: spec.replicas.unwrap_or(1),
            template: Some(&spec.template),
        });
    }
    for s in inputs.statefulsets.iter().filter(|s| here(s.namespace())) {
        out.push(Workload {
            kind: "StatefulSet",
            name: s.name_any(),
            replicas: s.spec.replicas.unwrap_or(1),
            template: Some(&s.spec.template),
        });
    }
    for d in inputs.daemonsets.iter().filter(|d| here(d.namespace())) {
        out.push(Workload {
            kind: "DaemonSet",
            name: d.name_any(),
            replicas: d
                .status
                .as_ref()
                .map(|s| s.desired_number_scheduled)
                .unwrap_or(0),
            template: Some(&d.spec.template),
        });
    }
    for c in inputs.cronjobs.iter().filter(|c| here(c.namespace())) {
        out.push(Workload {
            kind: "CronJob",
            name: c.name_any(),
            replicas: 1,
            template: c.spec.job_template.spec.as_ref().map(|j| &j.template),
        });
    }
    out
}

fn declared_resources(spec: &PodSpec) -> Vec<String> {
    let line = |name: &str, r: Option<&k8s_openapi::api::core::v1::ResourceRequirements>| {
        let get = |limits: bool, key: &str| {
            r.and_then(|res| {
                if limits {
                    res.limits.as_ref()
                } else {
                    res.requests.as_ref()
                }
            })
            .and_then(|m| m.get(key))
            .map(|q| q.0.clone())
            .unwrap_or_else(|| "-".into())
        };
        format!(
            "{name}: requests {}/{}, limits {}/{}",
            get(false, "cpu"),
            get(false, "memory"),
            get(true, "cpu"),
            get(true, "memory")
        )
    };
    let mut out: Vec<String> = spec
        .containers
        .iter()
        .map(|c| line(&c.name, c.resources.as_ref()))
        .collect();
    if spec.resources.is_some() {
        out.push(line("pod", spec.resources.as_ref()));
    }
    out
}

fn workload_row(scope: &Scope, w: Workload, findings: &mut Vec<String>) -> WorkloadReport {
    let ns = scope.name;
    let (kind, wname) = (w.kind, w.name.as_str());
    let template = w.template.and_then(|t| t.spec.clone()).unwrap_or_default();
    let labels = w
        .template
        .and_then(|t| t.metadata.as_ref()?.labels.clone())
        .unwrap_or_default();
    let as_written = pr::next_pod(&template, &[]);
    let next = pr::next_pod(&template, &scope.limit_ranges);
    let (template_qos, qos) = (pr::qos(&as_written), pr::qos(&next));
    let mut notes = Vec::new();
    if template_qos != qos {
        notes.push(format!(
            "{} in its template, {} for new pods: LimitRange defaults",
            template_qos.as_str(),
            qos.as_str()
        ));
    }
    if pr::pod_level_set(&next) {
        notes.push("pod-level resources".to_owned());
    }
    let matching: Vec<&PodDisruptionBudget> = scope
        .pdbs
        .iter()
        .copied()
        .filter(|p| {
            p.spec
                .as_ref()
                .and_then(|s| s.selector.clone())
                .and_then(|s| Selector::try_from(s).ok())
                .is_some_and(|s| !s.selects_all() && s.matches(&labels))
        })
        .collect();
    if qos == Qos::BestEffort && kind != "CronJob" {
        findings.push(format!(
            "{kind} {ns}/{wname} is BestEffort: no container sets requests or limits, and no LimitRange defaults them"
        ));
    }
    for q in &scope.quotas {
        if !pr::quota_applies(q, &next, qos) {
            continue;
        }
        let missing = pr::missing_for_quota(&next, &enforced_hard(q));
        if !missing.is_empty() {
            let what: Vec<String> = missing
                .iter()
                .map(|(r, c)| format!("{r} for: {}", c.join(",")))
                .collect();
            findings.push(format!(
                "new pods of {kind} {ns}/{wname} are refused by ResourceQuota {ns}/{}: must specify {}",
                q.name_any(),
                what.join("; ")
            ));
        }
    }
    if matching.len() > 1 {
        findings.push(format!(
            "{kind} {ns}/{wname} is matched by {} PodDisruptionBudgets",
            matching.len()
        ));
    }
    for pdb in &matching {
        if budget_blocks_every_eviction(pdb, w.replicas) {
            findings.push(format!("PodDisruptionBudget {ns}/{} blocks every voluntary eviction of {kind} {wname} ({} replicas)", pdb.name_any(), w.replicas));
        }
    }
    WorkloadReport {
        namespace: ns.to_owned(),
        kind: kind.to_owned(),
        name: w.name.clone(),
        replicas: w.replicas,
        resources: declared_resources(&template),
        qos: qos.as_str().to_owned(),
        template_qos: template_qos.as_str().to_owned(),
        qos_note: (!notes.is_empty()).then(|| notes.join("; ")),
        new_pod_requests: cpu_memory(&pr::pod_requests(&next, None)),
        pdbs: matching.iter().map(|p| p.name_any()).collect(),
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

/// Reads the inputs from the cluster, saying on stderr what it reads (large clusters take a while).
pub async fn read_cluster(client: &kube::Client) -> anyhow::Result<Inputs> {
    use kube::api::{Api, ListParams};
    async fn all<K>(client: &kube::Client, what: &str) -> anyhow::Result<Vec<K>>
    where
        K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        eprint!("\rreading {what}...{}", " ".repeat(20));
        Ok(Api::<K>::all(client.clone())
            .list(&ListParams::default())
            .await?
            .items)
    }
    let inputs = Inputs {
        namespaces: all(client, "namespaces").await?,
        pods: all(client, "pods").await?,
        quotas: all(client, "resourcequotas").await?,
        limit_ranges: all(client, "limitranges").await?,
        pdbs: all(client, "poddisruptionbudgets").await?,
        deployments: all(client, "deployments").await?,
        statefulsets: all(client, "statefulsets").await?,
        daemonsets: all(client, "daemonsets").await?,
        cronjobs: all(client, "cronjobs").await?,
        nodes: all(client, "nodes").await?,
        policies: match all(client, "tenantpolicies").await {
            // Tenantry not installed: no shared budgets to read.
            Err(e) if e.downcast_ref::<kube::Error>().is_some_and(is_not_found) => Vec::new(),
            read => read?,
        },
    };
    eprintln!("\r{}\r", " ".repeat(40));
    Ok(inputs)
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// The report as tables: the same facts as `-o json`, nothing more.
pub fn render(report: &Report) -> String {
    let mut out = String::from(
        "NAMESPACE                       PODS  BESTEFFORT BURSTABLE GUARANTEED  REQ CPU   REQ MEM   QUOTAS  LIMITRANGES  GOVERNED BY\n",
    );
    let or_none = |n: usize| {
        if n == 0 {
            "none".to_owned()
        } else {
            n.to_string()
        }
    };
    for n in &report.namespaces {
        let q = |c: &str| n.qos.get(c).copied().unwrap_or(0);
        let governed: Vec<String> = n
            .governed_by
            .iter()
            .map(|(k, p)| format!("{k}={}", p.join(",")))
            .collect();
        out.push_str(&format!(
            "{:<31} {:>4}  {:>10} {:>9} {:>10}  {:<9} {:<9} {:>6}  {:>11}  {}\n",
            n.name,
            n.pods,
            q("BestEffort"),
            q("Burstable"),
            q("Guaranteed"),
            n.requests.get("cpu").map(String::as_str).unwrap_or("-"),
            n.requests.get("memory").map(String::as_str).unwrap_or("-"),
            or_none(n.quotas.len()),
            or_none(n.limit_ranges.len()),
            if governed.is_empty() {
                "-".into()
            } else {
                governed.join("; ")
            }
        ));
    }
    out.push_str(
        "\nWORKLOAD                                            REPLICAS  QOS (NEW PODS)  PDBS                NOTE\n",
    );
    for w in &report.workloads {
        out.push_str(
            format!(
                "{:<51} {:>8}  {:<14}  {:<18}  {}\n",
                format!("{}/{}/{}", w.namespace, w.kind, w.name),
                w.replicas,
                w.qos,
                if w.pdbs.is_empty() {
                    "-".into()
                } else {
                    w.pdbs.join(",")
                },
                w.qos_note.as_deref().unwrap_or("")
            )
            .trim_end(),
        );
        out.push('\n');
    }
    render_shared(&report.shared_quotas, &mut out);
    out.push_str("\nFINDINGS\n");
    for f in &report.findings {
        out.push_str(&format!("- {f}\n"));
    }
    out
}

/// The SHARED QUOTAS section: a line per resource of each budget, its namespaces on the first.
fn render_shared(shared: &[SharedQuotaReport], out: &mut String) {
    if shared.is_empty() {
        return;
    }
    out.push_str(&format!(
        "\n{:<39} {:<18} {:>10} {:>10} {:>10} {:>5}  NAMESPACES\n",
        "SHARED QUOTAS", "RESOURCE", "USED", "ALLOTTED", "HARD", "USE"
    ));
    for q in shared {
        let mut first = true;
        for (resource, r) in &q.resources {
            let line = format!(
                "{:<39} {:<18} {:>10} {:>10} {:>10} {:>5}  {}",
                if first {
                    format!("{}/{}", q.policy, q.name)
                } else {
                    String::new()
                },
                resource,
                r.used,
                r.allotted,
                r.hard.as_deref().unwrap_or("-"),
                r.percent
                    .map(|p| format!("{p}%"))
                    .unwrap_or_else(|| "-".into()),
                if first {
                    q.namespaces.join(",")
                } else {
                    String::new()
                },
            );
            out.push_str(line.trim_end());
            out.push('\n');
            first = false;
        }
    }
}

/// `tenantry audit`: reads the cluster, keeps the namespaces named (`namespaces`, none = all) and
/// matching `selector` (key=value[,key=value...]), and prints the report.
pub async fn run(
    namespaces: &[String],
    selector: Option<&str>,
    output: super::Output,
) -> anyhow::Result<()> {
    let mut wanted = BTreeMap::new();
    for pair in selector
        .iter()
        .flat_map(|s| s.split(','))
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--selector: {pair:?} is not key=value"))?;
        wanted.insert(k.trim().to_owned(), v.trim().to_owned());
    }
    let client = kube::Client::try_default().await?;
    let inputs = read_cluster(&client).await?;
    let keep = |ns: &Namespace| {
        (namespaces.is_empty() || namespaces.contains(&ns.name_any()))
            && wanted.iter().all(|(k, v)| ns.labels().get(k) == Some(v))
    };
    output.print(&audit(&inputs, &keep), render)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn obj<T: serde::de::DeserializeOwned>(v: Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    fn managed(name: &str, policy: &str) -> Value {
        json!({"name": name, "namespace": "mia", "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE, POLICY_LABEL: policy}})
    }

    fn deployment(name: &str, pod: Value) -> Deployment {
        obj(json!({"metadata": {"name": name, "namespace": "mia"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}}, "spec": pod}}}))
    }

    fn bare() -> Value {
        json!({"containers": [{"name": "app", "image": "x"}]})
    }

    fn mia(inputs: Inputs) -> Inputs {
        Inputs {
            namespaces: vec![obj(json!({"metadata": {"name": "mia"}}))],
            ..inputs
        }
    }

    fn defaults_lr() -> LimitRange {
        obj(
            json!({"metadata": managed("defaults", "baseline"), "spec": {"limits": [{"type": "Container",
            "default": {"cpu": "300m", "memory": "200Mi"}, "defaultRequest": {"cpu": "200m", "memory": "100Mi"}}]}}),
        )
    }

    #[test]
    fn governed_by_lists_every_policy_of_a_kind() {
        let quota = |name: &str, policy: &str| -> ResourceQuota {
            obj(json!({"metadata": managed(name, policy), "spec": {"hard": {"pods": "10"}}}))
        };
        let inputs = mia(Inputs {
            quotas: vec![
                quota("compute", "team-mia"),
                quota("besteffort-pods", "team-mia"),
                quota("tenantry-storage", "storage"),
            ],
            limit_ranges: vec![defaults_lr()],
            ..Default::default()
        });
        let report = audit(&inputs, &|_| true);
        let row = &report.namespaces[0];
        assert_eq!(row.governed_by["ResourceQuota"], ["storage", "team-mia"]);
        assert_eq!(row.governed_by["LimitRange"], ["baseline"]);
        let table = render(&report);
        assert!(
            table.contains("LimitRange=baseline; ResourceQuota=storage,team-mia"),
            "{table}"
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(
            json["namespaces"][0]["governedBy"]["ResourceQuota"],
            json!(["storage", "team-mia"])
        );
    }

    #[test]
    fn qos_is_judged_for_the_next_pod_with_limit_range_defaults() {
        let with_lr = mia(Inputs {
            deployments: vec![deployment("api", bare())],
            limit_ranges: vec![defaults_lr()],
            ..Default::default()
        });
        let report = audit(&with_lr, &|_| true);
        let w = &report.workloads[0];
        assert_eq!(
            (w.qos.as_str(), w.template_qos.as_str()),
            ("Burstable", "BestEffort")
        );
        let note = "BestEffort in its template, Burstable for new pods: LimitRange defaults";
        assert_eq!(w.qos_note.as_deref(), Some(note));
        assert_eq!(w.new_pod_requests["cpu"], "200m");
        assert_eq!(w.new_pod_requests["memory"], "100Mi");
        assert!(!report.findings.iter().any(|f| f.contains("is BestEffort")));
        assert!(!report.findings.iter().any(|f| f.contains("existing pod")));
        let table = render(&report);
        let line = table
            .lines()
            .find(|l| l.starts_with("mia/Deployment/api"))
            .unwrap();
        assert!(
            line.contains("Burstable") && line.ends_with(note),
            "{table}"
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["workloads"][0]["qosNote"], note);
        assert_eq!(json["workloads"][0]["templateQos"], "BestEffort");

        let without = mia(Inputs {
            deployments: vec![deployment("api", bare())],
            ..Default::default()
        });
        let report = audit(&without, &|_| true);
        assert_eq!(report.workloads[0].qos, "BestEffort");
        assert_eq!(report.workloads[0].qos_note, None);
        assert!(
            report
                .findings
                .iter()
                .any(|f| f.starts_with("Deployment mia/api is BestEffort"))
        );
    }

    /// `render` reads nothing but the Report, so the table holds no fact JSON lacks; and each fact
    /// the table is meant to show is there.
    #[test]
    fn the_table_shows_what_json_carries() {
        let quota: ResourceQuota = obj(json!({"metadata": managed("compute", "team-mia"),
            "spec": {"hard": {"requests.cpu": "4"}}}));
        let pdb: PodDisruptionBudget = obj(json!({"metadata": managed("web", "team-mia"),
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "maxUnavailable": 0}}));
        let pod: Pod = obj(json!({"metadata": {"name": "p", "namespace": "mia"},
            "spec": {"containers": [{"name": "app", "image": "x", "resources": {"requests": {"cpu": "250m", "memory": "1Gi"}}}]},
            "status": {"phase": "Pending", "qosClass": "Burstable"}}));
        let inputs = mia(Inputs {
            deployments: vec![deployment("web", bare()), deployment("api", bare())],
            quotas: vec![quota],
            pdbs: vec![pdb],
            pods: vec![pod],
            limit_ranges: vec![defaults_lr()],
            ..Default::default()
        });
        let report = audit(&inputs, &|_| true);
        let table = render(&report);
        let json = serde_json::to_value(&report).unwrap();
        for n in json["namespaces"].as_array().unwrap() {
            let line = table
                .lines()
                .find(|l| l.starts_with(n["name"].as_str().unwrap()))
                .unwrap();
            let mut facts = vec![
                n["pods"].to_string(),
                n["requests"]["cpu"].as_str().unwrap().to_owned(),
            ];
            facts.push(n["requests"]["memory"].as_str().unwrap().to_owned());
            for (kind, policies) in n["governedBy"].as_object().unwrap() {
                let names: Vec<&str> = policies
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p.as_str().unwrap())
                    .collect();
                facts.push(format!("{kind}={}", names.join(",")));
            }
            for fact in facts {
                assert!(line.contains(&fact), "{fact:?} missing in {line:?}");
            }
        }
        for w in json["workloads"].as_array().unwrap() {
            let key = format!("mia/Deployment/{}", w["name"].as_str().unwrap());
            let line = table.lines().find(|l| l.starts_with(&key)).unwrap();
            for fact in [&w["qos"], &w["qosNote"]] {
                assert!(
                    line.contains(fact.as_str().unwrap()),
                    "{fact} missing in {line:?}"
                );
            }
            for p in w["pdbs"].as_array().unwrap() {
                assert!(
                    line.contains(p.as_str().unwrap()),
                    "{p} missing in {line:?}"
                );
            }
        }
        assert!(!report.findings.is_empty());
        for f in &report.findings {
            assert!(table.contains(&format!("- {f}\n")), "{f} missing");
        }
    }

    /// A part of shared quota `item` of policy `team-mia` in `ns`: spec.hard, status hard/used.
    fn part(ns: &str, item: &str, spec: Value, status_hard: Value, used: Value) -> ResourceQuota {
        obj(
            json!({"metadata": {"name": item, "namespace": ns, "labels": {
                MANAGED_BY_LABEL: MANAGED_BY_VALUE, POLICY_LABEL: "team-mia", SHARED_QUOTA_LABEL: item}},
            "spec": {"hard": spec}, "status": {"hard": status_hard, "used": used}}),
        )
    }

    fn namespaces(names: &[&str]) -> Vec<Namespace> {
        names
            .iter()
            .map(|n| obj(json!({"metadata": {"name": n}})))
            .collect()
    }

    #[test]
    fn shared_quotas_are_summed_across_their_namespaces_against_the_policys_budget() {
        let policy: TenantPolicy = obj(json!({"apiVersion": "tenantry.io/v1alpha1",
            "kind": "TenantPolicy", "metadata": {"name": "team-mia"}, "spec": {"sharedQuotas": [
                {"name": "pods-budget", "hard": {"pods": "10"}},
                {"name": "cpu-budget", "hard": {"requests.cpu": "2"}}]}}));
        let inputs = Inputs {
            namespaces: namespaces(&["mia", "mia-batch", "other"]),
            policies: vec![policy],
            quotas: vec![
                // 6 + 4 of 10 pods: exhausted. mia's part is being lowered (spec 6, status 7).
                part(
                    "mia",
                    "pods-budget",
                    json!({"pods": "6"}),
                    json!({"pods": "7"}),
                    json!({"pods": "6"}),
                ),
                part(
                    "mia-batch",
                    "pods-budget",
                    json!({"pods": "4"}),
                    json!({"pods": "4"}),
                    json!({"pods": "4"}),
                ),
                // 1500m + 1 of 2 CPUs: over budget (a namespace joined with its use).
                part(
                    "mia",
                    "cpu-budget",
                    json!({"requests.cpu": "1500m"}),
                    json!({"requests.cpu": "1500m"}),
                    json!({"requests.cpu": "1500m"}),
                ),
                part(
                    "mia-batch",
                    "cpu-budget",
                    json!({"requests.cpu": "1"}),
                    json!({"requests.cpu": "1"}),
                    json!({"requests.cpu": "1"}),
                ),
            ],
            ..Default::default()
        };
        // Auditing one namespace still sums the budget over all its parts.
        let report = audit(&inputs, &|n| n.name_any() == "mia");
        let names: Vec<(&str, &str)> = (report.shared_quotas.iter())
            .map(|q| (q.policy.as_str(), q.name.as_str()))
            .collect();
        assert_eq!(
            names,
            [("team-mia", "cpu-budget"), ("team-mia", "pods-budget")]
        );
        let pods = &report.shared_quotas[1];
        assert_eq!(pods.namespaces, ["mia", "mia-batch"]);
        let r = &pods.resources["pods"];
        assert_eq!(
            (
                r.used.as_str(),
                r.allotted.as_str(),
                r.hard.as_deref(),
                r.percent
            ),
            ("10", "11", Some("10"), Some(100))
        );
        let cpu = &report.shared_quotas[0].resources["requests.cpu"];
        assert_eq!((cpu.used.as_str(), cpu.percent), ("2500m", Some(125)));
        for expected in [
            "shared quota team-mia/pods-budget: pods is exhausted: 10 used of 10 across 2 namespaces; new requests are refused",
            "shared quota team-mia/pods-budget: pods: the parts allow 11 in total, more than the budget of 10",
            "shared quota team-mia/cpu-budget: requests.cpu is over budget: 2500m used of 2 across 2 namespaces; nothing new is admitted until use falls below it",
        ] {
            assert!(
                report.findings.iter().any(|f| f == expected),
                "{expected:?} not in {:#?}",
                report.findings
            );
        }
        // The table shows each fact the JSON carries.
        let table = render(&report);
        assert!(table.contains("\nSHARED QUOTAS"), "{table}");
        let json = serde_json::to_value(&report).unwrap();
        for q in json["sharedQuotas"].as_array().unwrap() {
            let key = format!(
                "{}/{}",
                q["policy"].as_str().unwrap(),
                q["name"].as_str().unwrap()
            );
            let line = table.lines().find(|l| l.starts_with(&key)).unwrap();
            let namespaces: Vec<&str> = (q["namespaces"].as_array().unwrap().iter())
                .map(|n| n.as_str().unwrap())
                .collect();
            assert!(line.ends_with(&namespaces.join(",")), "{line:?}");
            for (resource, r) in q["resources"].as_object().unwrap() {
                let facts = [&r["used"], &r["allotted"], &r["hard"]]
                    .map(|v| v.as_str().unwrap().to_owned());
                let percent = format!("{}%", r["percent"]);
                assert!(
                    line.contains(resource.as_str()) && line.contains(&percent),
                    "{line:?}"
                );
                for fact in facts {
                    assert!(
                        line.contains(&format!(" {fact} ")),
                        "{fact:?} missing in {line:?}"
                    );
                }
            }
        }
        // A budget with no part in an audited namespace is not reported.
        let report = audit(&inputs, &|n| n.name_any() == "other");
        assert!(report.shared_quotas.is_empty());
        assert!(!render(&report).contains("SHARED QUOTAS"));
    }

    #[test]
    fn a_namespace_counts_once_in_the_quota_total_at_its_tightest_quota() {
        let compute: ResourceQuota = obj(json!({"metadata": managed("compute", "team-mia"),
            "spec": {"hard": {"requests.cpu": "10"}}}));
        let inputs = mia(Inputs {
            quotas: vec![
                compute,
                part(
                    "mia",
                    "budget",
                    json!({"requests.cpu": "2"}),
                    json!({"requests.cpu": "2"}),
                    json!({}),
                ),
            ],
            ..Default::default()
        });
        let report = audit(&inputs, &|_| true);
        assert!(
            report.findings.contains(&"quotas allow 2000m of requests.cpu in total, the nodes can allocate 0m (no nodes)".to_owned()),
            "{:#?}",
            report.findings
        );
    }

    #[test]
    fn sums_of_bytes_read_in_binary_units_when_exact() {
        let m = |q: &str| quantity::milli(q).unwrap();
        assert_eq!(format_sum("requests.memory", m("21474836480")), "20Gi");
        assert_eq!(format_sum("requests.memory", m("1925185536")), "1836Mi");
        assert_eq!(format_sum("requests.storage", m("1500")), "1500");
        assert_eq!(format_sum("requests.memory", 0), "0");
        assert_eq!(format_sum("requests.cpu", m("6600m")), "6600m");
        assert_eq!(format_sum("pods", m("1024")), "1024");
    }

    #[test]
    fn parts_left_by_a_policy_that_no_longer_declares_them_have_no_budget_and_no_finding() {
        let inputs = Inputs {
            namespaces: namespaces(&["mia"]),
            quotas: vec![part(
                "mia",
                "gone",
                json!({"pods": "3"}),
                json!({"pods": "3"}),
                json!({"pods": "3"}),
            )],
            ..Default::default()
        };
        let report = audit(&inputs, &|_| true);
        let r = &report.shared_quotas[0].resources["pods"];
        assert_eq!(
            (r.used.as_str(), r.hard.as_deref(), r.percent),
            ("3", None, None)
        );
        assert!(
            !report
                .findings
                .iter()
                .any(|f| f.starts_with("shared quota"))
        );
        let line = render(&report)
            .lines()
            .find(|l| l.starts_with("team-mia/gone"))
            .map(str::to_owned);
        assert!(
            line.is_some_and(|l| l.contains(" - ")),
            "no budget shown as -"
        );
    }

    #[test]
    fn best_effort_pods_older_than_the_limit_range_defaults_are_a_finding() {
        let pod: Pod = obj(json!({"metadata": {"name": "old", "namespace": "mia"},
            "spec": bare(), "status": {"phase": "Pending", "qosClass": "BestEffort"}}));
        let inputs = mia(Inputs {
            pods: vec![pod],
            limit_ranges: vec![defaults_lr()],
            ..Default::default()
        });
        let report = audit(&inputs, &|_| true);
        assert!(report.findings.contains(&"namespace mia: 1 existing pod is BestEffort, older than its LimitRange defaults; it keeps that class until recreated (a rollout)".to_owned()), "{:#?}", report.findings);
    }

    #[test]
    fn pod_level_resources_decide_the_workloads_qos() {
        let pod = json!({"resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
            "containers": [{"name": "app", "image": "x"}, {"name": "log", "image": "x"}]});
        let inputs = mia(Inputs {
            deployments: vec![deployment("db", pod.clone())],
            ..Default::default()
        });
        let report = audit(&inputs, &|_| true);
        let w = &report.workloads[0];
        assert_eq!(w.qos, "Guaranteed");
        assert_eq!(w.qos_note.as_deref(), Some("pod-level resources"));
        assert_eq!(w.new_pod_requests["cpu"], "1000m");
        assert!(
            w.resources
                .iter()
                .any(|r| r == "pod: requests -/-, limits 1/1Gi"),
            "{:?}",
            w.resources
        );
        // LimitRange defaults give the containers requests, and pod-level requests default to
        // their sum rather than to the pod-level limits: the pod is Burstable.
        let inputs = mia(Inputs {
            deployments: vec![deployment("db", pod)],
            limit_ranges: vec![defaults_lr()],
            ..Default::default()
        });
        let report = audit(&inputs, &|_| true);
        let w = &report.workloads[0];
        assert_eq!(
            (w.qos.as_str(), w.template_qos.as_str()),
            ("Burstable", "Guaranteed")
        );
        assert_eq!(
            w.qos_note.as_deref(),
            Some(
                "Guaranteed in its template, Burstable for new pods: LimitRange defaults; pod-level resources"
            )
        );
        assert_eq!(w.new_pod_requests["cpu"], "400m");
    }

    #[test]
    fn a_quota_that_new_pods_cannot_satisfy_is_a_finding() {
        let quota: ResourceQuota = obj(json!({"metadata": managed("compute", "team-mia"),
            "spec": {"hard": {"requests.cpu": "4", "limits.memory": "8Gi"}}}));
        let besteffort_only: ResourceQuota = obj(json!({"metadata": managed("be", "team-mia"),
            "spec": {"hard": {"pods": "4"}, "scopes": ["BestEffort"]}}));
        let inputs = mia(Inputs {
            deployments: vec![deployment("api", bare())],
            quotas: vec![quota.clone(), besteffort_only],
            ..Default::default()
        });
        let report = audit(&inputs, &|_| true);
        assert!(
            report.findings.contains(&"new pods of Deployment mia/api are refused by ResourceQuota mia/compute: must specify limits.memory for: app; requests.cpu for: app".to_owned()),
            "{:#?}",
            report.findings
        );
        // LimitRange defaults satisfy the quota.
        let inputs = mia(Inputs {
            deployments: vec![deployment("api", bare())],
            quotas: vec![quota],
            limit_ranges: vec![defaults_lr()],
            ..Default::default()
        });
        let report = audit(&inputs, &|_| true);
        assert!(
            !report.findings.iter().any(|f| f.contains("refused")),
            "{:#?}",
            report.findings
        );
    }

    #[test]
    fn requests_are_summed_as_quota_counts_them_resizes_included() {
        let pod = |name: &str, cpu: &str, status: Value| -> Pod {
            obj(json!({"metadata": {"name": name, "namespace": "mia"},
                "spec": {"containers": [{"name": "app", "image": "x", "resources": {"requests": {"cpu": cpu}}}]},
                "status": status}))
        };
        let resized = pod(
            "resized",
            "200m",
            json!({"phase": "Running", "qosClass": "Burstable",
            "conditions": [{"type": "PodResizeInProgress", "status": "True"}],
            "containerStatuses": [{"name": "app", "image": "x", "imageID": "", "ready": true, "restartCount": 0,
                "allocatedResources": {"cpu": "500m"}, "resources": {"requests": {"cpu": "500m"}}}]}),
        );
        let done = pod(
            "done",
            "2",
            json!({"phase": "Succeeded", "qosClass": "Burstable"}),
        );
        let plain = pod(
            "plain",
            "100m",
            json!({"phase": "Pending", "qosClass": "Burstable"}),
        );
        let inputs = mia(Inputs {
            pods: vec![resized, done, plain],
            ..Default::default()
        });
        let report = audit(&inputs, &|_| true);
        let row = &report.namespaces[0];
        assert_eq!((row.pods, row.requests["cpu"].as_str()), (3, "600m"));
        assert!(
            report.findings.contains(&"Pod mia/resized is counted by quotas at requests.cpu 500m (spec 200m): in-place resize in progress (no reason)".to_owned()),
            "{:#?}",
            report.findings
        );
        assert!(render(&report).contains("600m"));
    }
}
