//! Building the desired objects of a policy, one builder per managed kind, each spec as JSON so
//! one diff serves every kind. Pure.

pub mod limit_range;
pub mod pdb;
pub mod resource_quota;
pub mod shared_quota;
pub mod storage_class;
pub mod storage_quota;

use std::collections::BTreeSet;

use serde_json::Value;

use crate::api::TenantPolicySpec;
use crate::model::key::ObjectKey;
use crate::model::kind::{Kind, Section};
use crate::model::object::Desired;

/// The field of a TenantPolicy's spec an object comes from, for messages that name it.
pub fn policy_field(key: &ObjectKey) -> &'static str {
    match key.kind {
        Kind::LimitRange => "limitRanges",
        Kind::ResourceQuota if key.name == storage_quota::NAME => "storage",
        Kind::ResourceQuota => "resourceQuotas",
        Kind::PodDisruptionBudget => "podDisruptionBudgets",
        Kind::StorageClass => "storage.classes",
    }
}

/// One object of each item the policy declares, in `namespace` (namespaced kinds), whatever it
/// selects or wins: what the dry run checks, so that a policy selecting no namespace is judged too.
pub fn templates(
    spec: &TenantPolicySpec,
    cluster_classes: &BTreeSet<String>,
    namespace: &str,
) -> Vec<Desired> {
    let mut out: Vec<Desired> = Section::ALL
        .into_iter()
        .filter(|s| s.is_set_by(spec))
        .flat_map(|s| {
            section_objects(s, spec, cluster_classes)
                .into_iter()
                .map(move |(name, built)| {
                    let key = ObjectKey {
                        kind: s.kind(),
                        namespace: namespace.to_owned(),
                        name,
                    };
                    Desired::of(key, built)
                })
        })
        .collect();
    out.extend(spec.storage.iter().flat_map(|s| &s.classes).map(|t| {
        let key = ObjectKey {
            kind: Kind::StorageClass,
            namespace: String::new(),
            name: t.name.clone(),
        };
        Desired::of(key, storage_class::build(t))
    }));
    out
}

/// The names of the objects the section holds in each namespace it is won in.
pub fn section_names(
    section: Section,
    spec: &TenantPolicySpec,
    cluster_classes: &BTreeSet<String>,
) -> Vec<String> {
    match section {
        Section::SharedQuotas => spec.shared_quotas.iter().map(|q| q.name.clone()).collect(),
        _ => section_objects(section, spec, cluster_classes)
            .into_iter()
            .map(|(name, _)| name)
            .collect(),
    }
}

/// The specs this policy wants in each namespace it wins the section in, by object name.
/// `cluster_classes` are the names of the cluster's StorageClasses (for the allow-list).
pub fn section_objects(
    section: Section,
    spec: &TenantPolicySpec,
    cluster_classes: &BTreeSet<String>,
) -> Vec<(String, Value)> {
    match section {
        Section::LimitRanges => spec
            .limit_ranges
            .iter()
            .map(|t| (t.name.clone(), limit_range::build(t)))
            .collect(),
        Section::ResourceQuotas => spec
            .resource_quotas
            .iter()
            .map(|t| (t.name.clone(), resource_quota::build(t)))
            .collect(),
        Section::PodDisruptionBudgets => spec
            .pod_disruption_budgets
            .iter()
            .map(|t| (t.name.clone(), pdb::build(t)))
            .collect(),
        // The parts differ per namespace (each holds its own share of the budget), so they
        // are sized by the allocator, not built here: nothing until it is wired in.
        Section::SharedQuotas => Vec::new(),
        Section::Storage => spec
            .storage
            .as_ref()
            .and_then(|s| storage_quota::build(s, cluster_classes))
            .map(|quota| (storage_quota::NAME.to_owned(), quota))
            .into_iter()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn templates_are_one_object_per_declared_item_whatever_is_selected() {
        let spec: TenantPolicySpec = serde_json::from_value(json!({
            "limitRanges": [{"name": "defaults", "limits": [{"type": "Pod", "max": {"cpu": "1"}}]}],
            "resourceQuotas": [{"name": "a", "hard": {"pods": "1"}}, {"name": "b", "hard": {"pods": "2"}}],
            "podDisruptionBudgets": [{"name": "web", "selector": {}, "minAvailable": 1}],
            "storage": {"classes": [{"name": "fast", "provisioner": "x.io/ssd"}], "allowedClasses": ["fast"]},
        }))
        .unwrap();
        let built: Vec<String> = templates(&spec, &BTreeSet::from(["old".to_owned()]), "default")
            .iter()
            .map(|d| d.key.to_string())
            .collect();
        assert_eq!(
            built,
            [
                "default/LimitRange/defaults",
                "default/ResourceQuota/a",
                "default/ResourceQuota/b",
                "default/PodDisruptionBudget/web",
                "default/ResourceQuota/tenantry-storage",
                "StorageClass/fast",
            ]
        );
    }
}
