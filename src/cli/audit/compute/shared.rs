//! Shared quotas: each budget (a TenantPolicy's `spec.sharedQuotas` item) summed over all its
//! parts, in audited namespaces or not, and judged against the policy's budget.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceQuota;
use kube::ResourceExt;

use super::governed;
use crate::api::SHARED_QUOTA_LABEL;
use crate::cli::audit::{Inputs, SharedQuotaReport, SharedResource};
use crate::model::quantity;
use crate::pipeline::allocator;

/// Milli-units per resource of a quota map, skipping what does not parse.
fn milli_of(
    map: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> quantity::Amounts {
    map.into_iter()
        .flatten()
        .filter_map(|(r, q)| Some((r.clone(), quantity::milli(&q.0)?)))
        .collect()
}

/// The shared quotas with a part in an audited namespace, each summed over all its parts and
/// judged against its policy's budget.
pub(super) fn shared_quotas(
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
    budget: Option<&quantity::Amounts>,
) -> SharedQuotaReport {
    let (mut used, mut allotted) = (quantity::Amounts::new(), quantity::Amounts::new());
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
    budget: Option<&quantity::Amounts>,
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
