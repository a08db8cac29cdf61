//! Checks the CRD schema and its CEL rules cannot make at admission, done by the controller
//! before it touches any namespace. A failure stalls the policy with reason InvalidSpec. Pure.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::api::{LimitType, TenantPolicySpec};
use crate::quantity;
use crate::select::Candidate;

/// The first problem found, naming the field.
pub fn validate(name: &str, spec: &TenantPolicySpec) -> Result<(), String> {
    Candidate::new(name, spec)?;
    for (i, template) in spec.limit_ranges.iter().enumerate() {
        for (j, item) in template.limits.iter().enumerate() {
            if item.type_ != LimitType::Container {
                continue;
            }
            let field = format!("spec.limitRanges[{i}].limits[{j}]");
            check_ratio(
                &field,
                item.default.as_ref(),
                item.default_request.as_ref(),
                item.max_limit_request_ratio.as_ref(),
            )?;
        }
    }
    for (i, pdb) in spec.pod_disruption_budgets.iter().enumerate() {
        kube::core::Selector::try_from(pdb.selector.clone())
            .map_err(|e| format!("spec.podDisruptionBudgets[{i}].selector: {}", e.0))?;
    }
    Ok(())
}

/// The API server refuses a LimitRange whose default limit over default request exceeds
/// maxLimitRequestRatio. CEL cannot divide quantities (and a float would misjudge the equal
/// case), so it is checked here, exactly: default <= ratio * defaultRequest.
fn check_ratio(
    field: &str,
    default: Option<&BTreeMap<String, Quantity>>,
    default_request: Option<&BTreeMap<String, Quantity>>,
    ratio: Option<&BTreeMap<String, Quantity>>,
) -> Result<(), String> {
    let (Some(default), Some(request), Some(ratio)) = (default, default_request, ratio) else {
        return Ok(());
    };
    for (resource, max_ratio) in ratio {
        let (Some(limit), Some(req)) = (default.get(resource), request.get(resource)) else {
            continue;
        };
        let (Some(limit_n), Some(req_n), Some(ratio_n)) = (
            quantity::parse(&limit.0),
            quantity::parse(&req.0),
            quantity::parse(&max_ratio.0),
        ) else {
            continue; // malformed quantities are rejected by the schema
        };
        // limit / req <= ratio  <=>  limit * 1e9 <= ratio * req (all in nano-units).
        let within = limit_n
            .0
            .checked_mul(1_000_000_000)
            .zip(ratio_n.0.checked_mul(req_n.0))
            .map(|(l, r)| l <= r);
        if within == Some(false) {
            return Err(format!(
                "{field}: default {resource} limit {} over default request {} exceeds maxLimitRequestRatio {}",
                limit.0, req.0, max_ratio.0
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(value: serde_json::Value) -> TenantPolicySpec {
        serde_json::from_value(value).unwrap()
    }

    fn limits(item: serde_json::Value) -> TenantPolicySpec {
        spec(json!({"limitRanges": [{"name": "d", "limits": [item]}]}))
    }

    #[test]
    fn ratio_is_checked_exactly() {
        let at_limit = limits(
            json!({"type": "Container", "default": {"cpu": "1"}, "defaultRequest": {"cpu": "200m"}, "maxLimitRequestRatio": {"cpu": "5"}}),
        );
        assert_eq!(validate("p", &at_limit), Ok(()));
        let over = limits(
            json!({"type": "Container", "default": {"cpu": "1001m"}, "defaultRequest": {"cpu": "200m"}, "maxLimitRequestRatio": {"cpu": "5"}}),
        );
        let err = validate("p", &over).unwrap_err();
        assert!(
            err.starts_with("spec.limitRanges[0].limits[0]: default cpu limit 1001m"),
            "{err}"
        );
        let other_resource = limits(
            json!({"type": "Container", "default": {"cpu": "4"}, "defaultRequest": {"cpu": "100m"}, "maxLimitRequestRatio": {"memory": "2"}}),
        );
        assert_eq!(validate("p", &other_resource), Ok(()));
    }

    #[test]
    fn selectors_must_parse() {
        let bad_ns = spec(
            json!({"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}}),
        );
        assert!(
            validate("p", &bad_ns)
                .unwrap_err()
                .starts_with("spec.namespaceSelector")
        );
        let bad_pdb = spec(
            json!({"podDisruptionBudgets": [{"name": "x", "minAvailable": 1,
            "selector": {"matchExpressions": [{"key": "app", "operator": "Sometimes"}]}}]}),
        );
        assert!(
            validate("p", &bad_pdb)
                .unwrap_err()
                .starts_with("spec.podDisruptionBudgets[0].selector")
        );
    }
}
