//! ResourceQuota: `hard`, `scopes` and `scopeSelector` as declared.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ScopeSelector;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::{Map, Value};

use crate::api::{QuotaScope, ResourceQuotaTemplate};

pub fn build(template: &ResourceQuotaTemplate) -> Value {
    spec(
        &template.hard,
        &template.scopes,
        template.scope_selector.as_ref(),
    )
}

/// A ResourceQuota spec: `hard`, and the scopes and scope selector when set (also the spec of a
/// shared budget's part).
pub fn spec(
    hard: &BTreeMap<String, Quantity>,
    scopes: &[QuotaScope],
    scope_selector: Option<&ScopeSelector>,
) -> Value {
    let mut spec = Map::new();
    spec.insert(
        "hard".into(),
        serde_json::to_value(hard).expect("hard serializes"),
    );
    if !scopes.is_empty() {
        spec.insert(
            "scopes".into(),
            serde_json::to_value(scopes).expect("scopes serialize"),
        );
    }
    if let Some(selector) = scope_selector {
        spec.insert(
            "scopeSelector".into(),
            serde_json::to_value(selector).expect("selector serializes"),
        );
    }
    Value::Object(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::normalize::resource_quota as normalize;
    use serde_json::json;

    #[test]
    fn builds_hard_and_scopes_and_compares_semantically() {
        let template: ResourceQuotaTemplate = serde_json::from_value(json!({
            "name": "compute", "hard": {"pods": "20", "requests.memory": "8Gi"}, "scopes": ["NotBestEffort"]
        }))
        .unwrap();
        let spec = build(&template);
        assert_eq!(
            spec,
            json!({"hard": {"pods": "20", "requests.memory": "8Gi"}, "scopes": ["NotBestEffort"]})
        );
        let stored = json!({"hard": {"pods": "20", "requests.memory": "8192Mi"}, "scopes": ["NotBestEffort"]});
        assert_eq!(normalize(&spec), normalize(&stored));
    }
}
