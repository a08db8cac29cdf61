//! policy/v1 PodDisruptionBudget: selector, exactly one of minAvailable / maxUnavailable, and the
//! unhealthy pod eviction policy.

use serde_json::{Map, Value};

use crate::api::PodDisruptionBudgetTemplate;

pub fn build(template: &PodDisruptionBudgetTemplate) -> Value {
    let mut spec = Map::new();
    spec.insert(
        "selector".into(),
        serde_json::to_value(&template.selector).expect("selector serializes"),
    );
    if let Some(v) = &template.min_available {
        spec.insert(
            "minAvailable".into(),
            serde_json::to_value(v).expect("serializes"),
        );
    }
    if let Some(v) = &template.max_unavailable {
        spec.insert(
            "maxUnavailable".into(),
            serde_json::to_value(v).expect("serializes"),
        );
    }
    if let Some(v) = &template.unhealthy_pod_eviction_policy {
        spec.insert(
            "unhealthyPodEvictionPolicy".into(),
            serde_json::to_value(v).expect("serializes"),
        );
    }
    Value::Object(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn builds_the_declared_budget() {
        let template: PodDisruptionBudgetTemplate = serde_json::from_value(json!({
            "name": "trino-worker", "selector": {"matchLabels": {"app": "trino-worker"}}, "minAvailable": 2
        }))
        .unwrap();
        assert_eq!(
            build(&template),
            json!({"selector": {"matchLabels": {"app": "trino-worker"}}, "minAvailable": 2})
        );
    }
}
