//! `tenantry audit`: the governance report the operations notes began with, computed from what
//! the cluster holds. [`audit`] is pure; [`read_cluster`] reads the inputs.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{LimitRange, Namespace, Node, Pod, PodSpec, ResourceQuota};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use kube::core::{Selector, SelectorExt};
use serde::Serialize;

use crate::api::{MANAGED_BY_LABEL, MANAGED_BY_VALUE, POLICY_LABEL};
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
    pub requests: BTreeMap<String, String>,
    pub limits: BTreeMap<String, String>,
    pub quotas: Vec<QuotaUsage>,
    pub limit_ranges: Vec<String>,
    /// Kind -> governing TenantPolicy.
    pub governed_by: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadReport {
    pub namespace: String,
    pub kind: String,
    pub name: String,
    pub replicas: i32,
    /// Per container: "name: requests cpu/memory, limits cpu/memory" as declared.
    pub resources: Vec<String>,
    /// The QoS class its pod template declares (LimitRange defaults may still change new pods).
    pub qos: String,
    pub pdbs: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub namespaces: Vec<NamespaceReport>,
    pub workloads: Vec<WorkloadReport>,
    pub findings: Vec<String>,
}

/// QoS class of a pod spec, by the Kubernetes rules: Guaranteed when every container sets
/// requests and limits for cpu and memory with limits equal to requests; BestEffort when none
/// sets any; Burstable otherwise.
pub fn qos_class(spec: &PodSpec) -> &'static str {
    let containers: Vec<_> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        let requests = c
            .resources
            .as_ref()
            .and_then(|r| r.requests.clone())
            .unwrap_or_default();
        let limits = c
            .resources
            .as_ref()
            .and_then(|r| r.limits.clone())
            .unwrap_or_default();
        any |= !requests.is_empty() || !limits.is_empty();
        for resource in ["cpu", "memory"] {
            let limit = limits.get(resource);
            // Requests default to limits when unset.
            let request = requests.get(resource).or(limit);
            match (request, limit) {
                (Some(r), Some(l))
                    if quantity::same(&r.0, &l.0)
                        && quantity::stored_value(&l.0).is_some_and(|v| v.0 > 0) => {}
                _ => guaranteed = false,
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

fn governed(labels: &BTreeMap<String, String>) -> Option<String> {
    (labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY_VALUE))
        .then(|| labels.get(POLICY_LABEL).cloned())
        .flatten()
}

fn format_milli(total_nanos: i128, memory: bool) -> String {
    if memory {
        format!("{:.1}Gi", total_nanos as f64 / 1e9 / (1u64 << 30) as f64)
    } else {
        format!("{}m", total_nanos / 1_000_000)
    }
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

/// (kind, name, replicas, pod template spec, pod template labels) of one workload.
type Workload = (
    String,
    String,
    i32,
    Option<PodSpec>,
    BTreeMap<String, String>,
);

/// The report, for the namespaces `keep` accepts.
pub fn audit(inputs: &Inputs, keep: &dyn Fn(&Namespace) -> bool) -> Report {
    let mut report = Report::default();
    let mut quota_totals: BTreeMap<&str, i128> = BTreeMap::new();
    for ns in inputs.namespaces.iter().filter(|n| keep(n)) {
        let name = ns.name_any();
        let in_ns = |namespace: Option<String>| namespace.as_deref() == Some(name.as_str());
        let pods: Vec<&Pod> = inputs
            .pods
            .iter()
            .filter(|p| in_ns(p.namespace()))
            .collect();
        let mut row = NamespaceReport {
            name: name.clone(),
            pods: pods.len(),
            ..Default::default()
        };
        let mut sums: BTreeMap<(bool, &str), i128> = BTreeMap::new();
        for pod in &pods {
            let qos = pod
                .status
                .as_ref()
                .and_then(|s| s.qos_class.clone())
                .unwrap_or_else(|| {
                    pod.spec
                        .as_ref()
                        .map(qos_class)
                        .unwrap_or("BestEffort")
                        .into()
                });
            *row.qos.entry(qos).or_default() += 1;
            for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
                for (is_limit, list) in [
                    (
                        false,
                        c.resources.as_ref().and_then(|r| r.requests.as_ref()),
                    ),
                    (true, c.resources.as_ref().and_then(|r| r.limits.as_ref())),
                ] {
                    for resource in ["cpu", "memory"] {
                        if let Some(v) = list
                            .and_then(|l| l.get(resource))
                            .and_then(|q| quantity::stored_value(&q.0))
                        {
                            *sums.entry((is_limit, resource)).or_default() += v.0;
                        }
                    }
                }
            }
        }
        for ((is_limit, resource), total) in sums {
            let text = format_milli(total, resource == "memory");
            if is_limit {
                row.limits.insert(resource.into(), text)
            } else {
                row.requests.insert(resource.into(), text)
            };
        }
        for q in inputs.quotas.iter().filter(|q| in_ns(q.namespace())) {
            let hard = q
                .status
                .as_ref()
                .and_then(|s| s.hard.clone())
                .or_else(|| q.spec.as_ref().and_then(|s| s.hard.clone()))
                .unwrap_or_default();
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
                if let Some(v) = quantity::stored_value(&limit.0) {
                    for total in ["requests.cpu", "requests.memory"] {
                        if resource == total {
                            *quota_totals.entry(total).or_default() += v.0;
                        }
                    }
                }
            }
            if let Some(p) = governed(q.labels()) {
                row.governed_by.insert("ResourceQuota".into(), p.clone());
            }
            row.quotas.push(QuotaUsage {
                name: q.name_any(),
                usage,
                governed_by: governed(q.labels()),
            });
        }
        for lr in inputs.limit_ranges.iter().filter(|l| in_ns(l.namespace())) {
            row.limit_ranges.push(lr.name_any());
            if let Some(p) = governed(lr.labels()) {
                row.governed_by.insert("LimitRange".into(), p);
            }
        }
        let pdbs: Vec<&PodDisruptionBudget> = inputs
            .pdbs
            .iter()
            .filter(|p| in_ns(p.namespace()))
            .collect();
        for pdb in &pdbs {
            if let Some(p) = governed(pdb.labels()) {
                row.governed_by.insert("PodDisruptionBudget".into(), p);
            }
        }
        if row.quotas.is_empty() {
            report
                .findings
                .push(format!("namespace {name} has no ResourceQuota"));
        }
        if row.limit_ranges.is_empty() {
            report
                .findings
                .push(format!("namespace {name} has no LimitRange"));
        }

        let mut workloads: Vec<Workload> = Vec::new();
        let template = |t: &k8s_openapi::api::core::v1::PodTemplateSpec| {
            (
                t.spec.clone(),
                t.metadata
                    .as_ref()
                    .and_then(|m| m.labels.clone())
                    .unwrap_or_default(),
            )
        };
        for d in inputs.deployments.iter().filter(|d| in_ns(d.namespace())) {
            let spec = &d.spec;
            let (pod, labels) = template(&spec.template);
            workloads.push((
                "Deployment".into(),
                d.name_any(),
                spec.replicas.unwrap_or(1),
                pod,
                labels,
            ));
        }
        for s in inputs.statefulsets.iter().filter(|s| in_ns(s.namespace())) {
            let spec = &s.spec;
            let (pod, labels) = template(&spec.template);
            workloads.push((
                "StatefulSet".into(),
                s.name_any(),
                spec.replicas.unwrap_or(1),
                pod,
                labels,
            ));
        }
        for d in inputs.daemonsets.iter().filter(|d| in_ns(d.namespace())) {
            let spec = &d.spec;
            let (pod, labels) = template(&spec.template);
            workloads.push((
                "DaemonSet".into(),
                d.name_any(),
                d.status
                    .as_ref()
                    .map(|s| s.desired_number_scheduled)
                    .unwrap_or(0),
                pod,
                labels,
            ));
        }
        for c in inputs.cronjobs.iter().filter(|c| in_ns(c.namespace())) {
            let job = c.spec.job_template.spec.as_ref();
            let (pod, labels) = job.map(|j| template(&j.template)).unwrap_or_default();
            workloads.push(("CronJob".into(), c.name_any(), 1, pod, labels));
        }
        for (kind, wname, replicas, pod, labels) in workloads {
            let qos = pod
                .as_ref()
                .map(qos_class)
                .unwrap_or("BestEffort")
                .to_owned();
            let resources = pod
                .iter()
                .flat_map(|p| p.containers.iter())
                .map(|c| {
                    let get = |limits: bool, r: &str| {
                        c.resources
                            .as_ref()
                            .and_then(|res| {
                                if limits {
                                    res.limits.as_ref()
                                } else {
                                    res.requests.as_ref()
                                }
                            })
                            .and_then(|m| m.get(r))
                            .map(|q| q.0.clone())
                            .unwrap_or_else(|| "-".into())
                    };
                    format!(
                        "{}: requests {}/{}, limits {}/{}",
                        c.name,
                        get(false, "cpu"),
                        get(false, "memory"),
                        get(true, "cpu"),
                        get(true, "memory")
                    )
                })
                .collect();
            let matching: Vec<&&PodDisruptionBudget> = pdbs
                .iter()
                .filter(|p| {
                    p.spec
                        .as_ref()
                        .and_then(|s| s.selector.clone())
                        .and_then(|s| Selector::try_from(s).ok())
                        .is_some_and(|s| !s.selects_all() && s.matches(&labels))
                })
                .collect();
            if qos == "BestEffort" && kind != "CronJob" {
                report.findings.push(format!(
                    "{kind} {name}/{wname} is BestEffort: no container sets requests or limits"
                ));
            }
            if matching.len() > 1 {
                report.findings.push(format!(
                    "{kind} {name}/{wname} is matched by {} PodDisruptionBudgets",
                    matching.len()
                ));
            }
            for pdb in &matching {
                if budget_blocks_every_eviction(pdb, replicas) {
                    report.findings.push(format!("PodDisruptionBudget {name}/{} blocks every voluntary eviction of {kind} {wname} ({replicas} replicas)", pdb.name_any()));
                }
            }
            report.workloads.push(WorkloadReport {
                namespace: name.clone(),
                kind,
                name: wname,
                replicas,
                resources,
                qos,
                pdbs: matching.iter().map(|p| p.name_any()).collect(),
            });
        }
        report.namespaces.push(row);
    }
    // Quota totals against what the nodes can hold.
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
            report.findings.push(format!(
                "quotas allow {} of {total} in total, the nodes can allocate {}{}",
                format_milli(quota, resource == "memory"),
                format_milli(nodes, resource == "memory"),
                if inputs.nodes.is_empty() {
                    " (no nodes)"
                } else {
                    ""
                }
            ));
        }
    }
    report
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
    };
    eprintln!("\r{}\r", " ".repeat(40));
    Ok(inputs)
}

/// The report as tables.
pub fn render(report: &Report) -> String {
    let mut out = String::from(
        "NAMESPACE                       PODS  BESTEFFORT BURSTABLE GUARANTEED  REQ CPU   REQ MEM   QUOTAS  LIMITRANGES  GOVERNED BY\n",
    );
    for n in &report.namespaces {
        let q = |c: &str| n.qos.get(c).copied().unwrap_or(0);
        let governed: Vec<String> = n
            .governed_by
            .iter()
            .map(|(k, p)| format!("{k}={p}"))
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
            if n.quotas.is_empty() {
                "none".to_owned()
            } else {
                n.quotas.len().to_string()
            },
            if n.limit_ranges.is_empty() {
                "none".to_owned()
            } else {
                n.limit_ranges.len().to_string()
            },
            if governed.is_empty() {
                "-".into()
            } else {
                governed.join(", ")
            }
        ));
    }
    out.push_str(
        "\nWORKLOAD                                            REPLICAS  QOS         PDBS\n",
    );
    for w in &report.workloads {
        out.push_str(&format!(
            "{:<51} {:>8}  {:<10}  {}\n",
            format!("{}/{}/{}", w.namespace, w.kind, w.name),
            w.replicas,
            w.qos,
            if w.pdbs.is_empty() {
                "-".into()
            } else {
                w.pdbs.join(",")
            }
        ));
    }
    out.push_str("\nFINDINGS\n");
    for f in &report.findings {
        out.push_str(&format!("- {f}\n"));
    }
    out
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
