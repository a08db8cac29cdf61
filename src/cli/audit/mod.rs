//! `tenantry audit`: the governance report the operations notes began with, computed from what
//! the cluster holds. [`audit`] is pure; [`read_cluster`] reads the inputs. Pod arithmetic (the
//! next pod of a workload, QoS, what quotas count) is [`crate::pipeline::pod_resources`], which follows the
//! API server's own code.
//!
//! This file holds what the parts share: the [`Inputs`], the [`AuditReport`] and [`run`], which
//! wires them. The parts are `compute` (inputs -> report, pure: no client), `read` (the cluster ->
//! inputs) and `render` (report -> text), so that the report is tested without a cluster and
//! the table shows nothing the JSON lacks.

mod compute;
mod read;
mod render;
#[cfg(test)]
mod tests;

pub use compute::{audit, qos_class};
pub use read::read_cluster;
pub use render::render;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{LimitRange, Namespace, Node, Pod, ResourceQuota};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::ResourceExt;
use serde::Serialize;

use crate::api::TenantPolicy;

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
pub struct AuditReport {
    pub namespaces: Vec<NamespaceReport>,
    pub workloads: Vec<WorkloadReport>,
    /// The shared quotas with a part in an audited namespace.
    pub shared_quotas: Vec<SharedQuotaReport>,
    pub findings: Vec<String>,
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
