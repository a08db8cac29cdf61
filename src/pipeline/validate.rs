//! Checks the CRD schema and its CEL rules cannot make at admission, done by the controller
//! before it touches any namespace. A failure stalls the policy with reason InvalidSpec. Pure.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::api::{LimitType, TenantPolicySpec};
use crate::model::key::ObjectKey;
use crate::model::object::Desired;
use crate::model::quantity;
use crate::pipeline::build::policy_field;
use crate::pipeline::outcome::is_admission_refusal;
use crate::pipeline::select::{Candidate, SelectorError};

/// Why a policy's spec cannot be applied, naming the field a user must fix. The policy is
/// Stalled with reason InvalidSpec and this as its message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSpec {
    #[error(transparent)]
    Selector(#[from] SelectorError),
    #[error(
        "{field}: default {resource} limit {limit} over default request {request} exceeds maxLimitRequestRatio {ratio}"
    )]
    LimitRequestRatio {
        field: String,
        resource: String,
        limit: String,
        request: String,
        ratio: String,
    },
    /// What the API server refuses in an object the policy builds (its dry run).
    #[error("spec.{field}[name={name}]: the API server refuses the {kind} this builds: {message}")]
    Refused {
        field: &'static str,
        name: String,
        kind: String,
        message: String,
    },
}

impl InvalidSpec {
    /// The field of the spec to fix, as a path (`spec.limitRanges[0].limits[1]`).
    pub fn field(&self) -> String {
        match self {
            InvalidSpec::Selector(e) => e.field.clone(),
            InvalidSpec::LimitRequestRatio { field, .. } => field.clone(),
            InvalidSpec::Refused { field, name, .. } => format!("spec.{field}[name={name}]"),
        }
    }
}

/// The first problem found, naming the field.
pub fn validate(name: &str, spec: &TenantPolicySpec) -> Result<(), InvalidSpec> {
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
        kube::core::Selector::try_from(pdb.selector.clone()).map_err(|e| SelectorError {
            field: format!("spec.podDisruptionBudgets[{i}].selector"),
            reason: e.0,
        })?;
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
) -> Result<(), InvalidSpec> {
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
            return Err(InvalidSpec::LimitRequestRatio {
                field: field.to_owned(),
                resource: resource.clone(),
                limit: limit.0.clone(),
                request: req.0.clone(),
                ratio: max_ratio.0.clone(),
            });
        }
    }
    Ok(())
}

/// The objects the dry run sends: one of each kind and name the policy builds.
pub fn dry_run_objects(templates: Vec<Desired>) -> Vec<Desired> {
    let mut seen = std::collections::HashSet::new();
    templates
        .into_iter()
        .filter(|d| seen.insert((d.key.kind, d.key.name.clone())))
        .collect()
}

/// What the API server's answer to the dry run of `desired` says of the spec: a refusal of the
/// object itself names the field it comes from; being refused only because it exists
/// (validation comes first), an admission policy's refusal, or an error that says nothing
/// about the spec (the real write reports those) is no problem of the spec.
pub fn dry_run_verdict(
    desired: &Desired,
    answer: &Result<(), kube::Error>,
) -> Result<(), InvalidSpec> {
    match answer {
        Err(kube::Error::Api(s))
            if (s.code == 422 || s.code == 400) && !is_admission_refusal(s) =>
        {
            // Extra labels mark a shared budget's part.
            let field = if desired.labels.is_some() {
                "sharedQuotas"
            } else {
                policy_field(&desired.key)
            };
            Err(refused(field, &desired.key, &s.message))
        }
        _ => Ok(()),
    }
}

fn refused(field: &'static str, key: &ObjectKey, message: &str) -> InvalidSpec {
    InvalidSpec::Refused {
        field,
        name: key.name.clone(),
        kind: key.kind.to_string(),
        message: message.to_owned(),
    }
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
        assert_eq!(err.field(), "spec.limitRanges[0].limits[0]");
        assert!(
            err.to_string()
                .starts_with("spec.limitRanges[0].limits[0]: default cpu limit 1001m"),
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
        let err = validate("p", &bad_ns).unwrap_err();
        assert_eq!(err.field(), "spec.namespaceSelector");
        assert!(
            err.to_string().starts_with("spec.namespaceSelector: "),
            "{err}"
        );
        let bad_pdb = spec(
            json!({"podDisruptionBudgets": [{"name": "x", "minAvailable": 1,
            "selector": {"matchExpressions": [{"key": "app", "operator": "Sometimes"}]}}]}),
        );
        let err = validate("p", &bad_pdb).unwrap_err();
        assert_eq!(err.field(), "spec.podDisruptionBudgets[0].selector");
        assert!(
            err.to_string()
                .starts_with("spec.podDisruptionBudgets[0].selector: ")
        );
    }
}
