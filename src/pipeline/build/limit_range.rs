//! LimitRange: built in the form the API server stores, so that a converged object compares equal.

use serde_json::{Map, Value};

use crate::api::LimitRangeTemplate;

/// The LimitRange spec for a template, with the API server's defaulting applied
/// (pkg/apis/core/v1 SetDefaults_LimitRangeItem): for Container items a missing default limit
/// takes max, a missing default request takes the default limit, else min.
pub fn build(template: &LimitRangeTemplate) -> Value {
    let limits: Vec<Value> = template
        .limits
        .iter()
        .map(|item| {
            let mut item = serde_json::to_value(item).expect("LimitRangeItem serializes");
            if item.get("type").and_then(Value::as_str) == Some("Container") {
                apply_container_defaults(item.as_object_mut().expect("an object"));
            }
            item
        })
        .collect();
    serde_json::json!({ "limits": limits })
}

fn apply_container_defaults(item: &mut Map<String, Value>) {
    let map = |item: &Map<String, Value>, field: &str| {
        item.get(field)
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let max = map(item, "max");
    let min = map(item, "min");
    let mut default = map(item, "default");
    let mut default_request = map(item, "defaultRequest");
    for (resource, value) in &max {
        default
            .entry(resource.clone())
            .or_insert_with(|| value.clone());
    }
    for (resource, value) in default.iter().chain(min.iter()) {
        default_request
            .entry(resource.clone())
            .or_insert_with(|| value.clone());
    }
    for (field, value) in [("default", default), ("defaultRequest", default_request)] {
        if value.is_empty() {
            item.remove(field);
        } else {
            item.insert(field.into(), Value::Object(value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::normalize::limit_range as normalize;
    use serde_json::json;

    fn template(limits: Value) -> LimitRangeTemplate {
        serde_json::from_value(json!({"name": "defaults", "limits": limits})).unwrap()
    }

    #[test]
    fn container_defaults_follow_the_api_server() {
        let spec = build(&template(json!([{
            "type": "Container",
            "max": {"cpu": "2", "memory": "1Gi"},
            "min": {"cpu": "100m", "ephemeral-storage": "1Mi"},
            "default": {"memory": "200Mi"}
        }])));
        assert_eq!(
            spec,
            json!({"limits": [{
                "type": "Container",
                "max": {"cpu": "2", "memory": "1Gi"},
                "min": {"cpu": "100m", "ephemeral-storage": "1Mi"},
                "default": {"cpu": "2", "memory": "200Mi"},
                "defaultRequest": {"cpu": "2", "memory": "200Mi", "ephemeral-storage": "1Mi"}
            }]})
        );
    }

    #[test]
    fn pod_items_get_no_defaults() {
        let spec = build(&template(json!([{"type": "Pod", "max": {"cpu": "4"}}])));
        assert_eq!(
            spec,
            json!({"limits": [{"type": "Pod", "max": {"cpu": "4"}}]})
        );
    }

    #[test]
    fn normalized_forms_of_equal_quantities_match() {
        let a = json!({"limits": [{"type": "Container", "default": {"cpu": "1", "memory": "1024Mi"}, "min": {}}]});
        let b = json!({"limits": [{"type": "Container", "default": {"cpu": "1000m", "memory": "1Gi"}}]});
        assert_eq!(normalize(&a), normalize(&b));
    }
}
