//! Workloads: the QoS class and requests of each one's next pod (its template with the API's
//! and the LimitRanges' defaults), the quotas that would refuse it, and its
//! PodDisruptionBudgets.

use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use kube::core::{Selector, SelectorExt};

use super::{Scope, cpu_memory, enforced_hard};
use crate::cli::audit::{Inputs, WorkloadReport};
use crate::pipeline::pod_resources::{self as pr, Qos};

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
pub(super) struct Workload<'a> {
    kind: &'static str,
    name: String,
    replicas: i32,
    template: Option<&'a PodTemplateSpec>,
}

pub(super) fn workloads<'a>(inputs: &'a Inputs, ns: &str) -> Vec<Workload<'a>> {
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

pub(super) fn workload_row(
    scope: &Scope,
    w: Workload,
    findings: &mut Vec<String>,
) -> WorkloadReport {
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
