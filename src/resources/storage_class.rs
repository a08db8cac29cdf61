//! StorageClass (cluster-scoped, owned by the policy that declares it). A class has no `spec`: its
//! fields sit at the top level, and this module treats them as its spec. provisioner, parameters,
//! reclaimPolicy and volumeBindingMode cannot be updated in Kubernetes, so a change to them means
//! delete and recreate; allowVolumeExpansion and mountOptions are updated in place.

use k8s_openapi::api::storage::v1::StorageClass;
use serde_json::{Map, Value, json};

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

/// The same fields of a live class.
pub fn spec_of(class: &StorageClass) -> Value {
    let mut spec = Map::new();
    let mut put = |field: &str, value: Value| {
        if !value.is_null() {
            spec.insert(field.to_owned(), value);
        }
    };
    put("provisioner", json!(class.provisioner));
    put("parameters", json!(class.parameters));
    put("reclaimPolicy", json!(class.reclaim_policy));
    put("volumeBindingMode", json!(class.volume_binding_mode));
    put("allowVolumeExpansion", json!(class.allow_volume_expansion));
    put("mountOptions", json!(class.mount_options));
    Value::Object(spec)
}

/// With the API server's defaults filled in (reclaimPolicy Delete, volumeBindingMode Immediate)
/// and empty maps and lists dropped, so a declared class compares equal to its stored form.
pub fn normalize(spec: &Value) -> Value {
    let mut spec = spec.clone();
    if let Value::Object(fields) = &mut spec {
        fields.retain(|_, v| match v {
            Value::Null => false,
            Value::Object(m) => !m.is_empty(),
            Value::Array(a) => !a.is_empty(),
            _ => true,
        });
        fields
            .entry("reclaimPolicy")
            .or_insert_with(|| json!("Delete"));
        fields
            .entry("volumeBindingMode")
            .or_insert_with(|| json!("Immediate"));
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
