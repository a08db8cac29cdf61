//! StorageClass (cluster-scoped, owned by the policy that declares it). A class has no `spec`: its
//! fields sit at the top level, and this module treats them as its spec. provisioner, parameters,
//! reclaimPolicy and volumeBindingMode cannot be updated in Kubernetes, so a change to them means
//! delete and recreate; allowVolumeExpansion and mountOptions are updated in place.

use serde_json::Value;

use crate::api::StorageClassTemplate;

/// Fields the API server refuses to change on an existing class.
pub const IMMUTABLE_FIELDS: [&str; 4] = [
    "provisioner",
    "parameters",
    "reclaimPolicy",
    "volumeBindingMode",
];

/// The class's fields as declared (the template without its name).
pub fn build(template: &StorageClassTemplate) -> Value {
    let mut spec = serde_json::to_value(template).expect("template serializes");
    if let Value::Object(fields) = &mut spec {
        fields.remove("name");
    }
    spec
}

/// The immutable fields whose normalised values differ: non-empty means delete and recreate.
pub fn immutable_changes(desired: &Value, live: &Value) -> Vec<&'static str> {
    IMMUTABLE_FIELDS
        .into_iter()
        .filter(|f| desired.get(f) != live.get(f))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::normalize::{class_fields as spec_of, storage_class as normalize};
    use k8s_openapi::api::storage::v1::StorageClass;
    use serde_json::json;

    fn template(value: Value) -> StorageClassTemplate {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_declared_class_equals_its_stored_form_with_defaults() {
        let declared = build(&template(
            json!({"name": "fast", "provisioner": "example.com/ssd", "mountOptions": []}),
        ));
        assert_eq!(declared, json!({"provisioner": "example.com/ssd"}));
        let stored: StorageClass = serde_json::from_value(json!({
            "metadata": {"name": "fast"}, "provisioner": "example.com/ssd",
            "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate"
        }))
        .unwrap();
        assert_eq!(normalize(&declared), normalize(&spec_of(&stored)));
    }

    #[test]
    fn only_immutable_fields_call_for_recreation() {
        let before = normalize(&json!({"provisioner": "a", "parameters": {"type": "ssd"}}));
        let expanded = normalize(
            &json!({"provisioner": "a", "parameters": {"type": "ssd"}, "allowVolumeExpansion": true}),
        );
        assert!(immutable_changes(&expanded, &before).is_empty());
        let retained = normalize(
            &json!({"provisioner": "a", "parameters": {"type": "hdd"}, "reclaimPolicy": "Retain"}),
        );
        assert_eq!(
            immutable_changes(&retained, &before),
            vec!["parameters", "reclaimPolicy"]
        );
    }
}
