//! The parts of a shared budget (`spec.sharedQuotas`): one ResourceQuota per namespace, named
//! after the item, whose `hard` the allocator sizes ([`crate::pipeline::allocator`]). Here: the spec of a
//! part for a given size, and a live quota seen as the allocator's [`Part`].

use k8s_openapi::api::core::v1::ResourceQuota;
use serde_json::Value;

use crate::pipeline::allocator::{self, NotAQuantity, Part};

use crate::api::SharedQuotaTemplate;
use crate::model::quantity::Amounts;

/// The spec of a part of `template`'s budget holding `hard`: the item's scopes and scope
/// selector apply to every part.
pub fn build(template: &SharedQuotaTemplate, hard: &Amounts) -> Value {
    super::resource_quota::spec(
        &allocator::quantities(hard),
        &template.scopes,
        template.scope_selector.as_ref(),
    )
}

/// A live part whose quota holds a quantity that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{namespace}/{name}: {quantity}")]
pub struct UnreadablePart {
    pub namespace: String,
    pub name: String,
    pub quantity: NotAQuantity,
}

/// A live part as the allocator sees it. Needs the quota's status (`hard` and `used`), which
/// the caches otherwise strip from ResourceQuotas.
pub fn part_of(quota: &ResourceQuota, selected: bool) -> Result<Part, UnreadablePart> {
    let namespace = quota.metadata.namespace.clone().unwrap_or_default();
    let named = |e: NotAQuantity| UnreadablePart {
        namespace: namespace.clone(),
        name: quota.metadata.name.clone().unwrap_or_default(),
        quantity: e,
    };
    let spec_hard = quota.spec.as_ref().and_then(|s| s.hard.as_ref());
    let status = quota.status.as_ref();
    Ok(Part {
        spec: Some(allocator::amounts(spec_hard.unwrap_or(&Default::default())).map_err(named)?),
        status: status
            .and_then(|s| s.hard.as_ref())
            .map(allocator::amounts)
            .transpose()
            .map_err(named)?,
        used: status
            .and_then(|s| s.used.as_ref())
            .map(allocator::amounts)
            .transpose()
            .map_err(named)?
            .unwrap_or_default(),
        namespace,
        selected,
        refused: Amounts::new(),
        pod_max: Amounts::new(),
        settling: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_part_carries_the_items_scopes_and_reads_back_as_written() {
        let template: SharedQuotaTemplate = serde_json::from_value(json!({
            "name": "team", "hard": {"pods": "20", "requests.cpu": "4"}, "scopes": ["NotBestEffort"]
        }))
        .unwrap();
        let hard = Amounts::from([("pods".into(), 3000), ("requests.cpu".into(), 1500)]);
        let spec = build(&template, &hard);
        assert_eq!(
            spec,
            json!({"hard": {"pods": "3", "requests.cpu": "1500m"}, "scopes": ["NotBestEffort"]})
        );
        let quota: ResourceQuota = serde_json::from_value(json!({
            "metadata": {"name": "team", "namespace": "mia"},
            "spec": spec,
            "status": {"hard": {"pods": "2", "requests.cpu": "1500m"}, "used": {"pods": "2", "requests.cpu": "1200m"}}
        }))
        .unwrap();
        let part = part_of(&quota, true).unwrap();
        assert_eq!(part.namespace, "mia");
        assert_eq!(part.spec, Some(hard));
        assert_eq!(part.status.unwrap()["pods"], 2000);
        assert_eq!(part.used["requests.cpu"], 1200);
        let fresh: ResourceQuota = serde_json::from_value(json!({
            "metadata": {"name": "team", "namespace": "new"}, "spec": {"hard": {"pods": "0"}}
        }))
        .unwrap();
        let part = part_of(&fresh, true).unwrap();
        assert_eq!(
            part.status, None,
            "not yet written by kube-controller-manager"
        );
        assert!(part.used.is_empty());
    }
}
