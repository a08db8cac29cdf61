//! Specs in a spelling-independent form, as the API server stores them (quantities canonical,
//! defaults filled in, empty maps dropped), so desired and live compare by value.

use k8s_openapi::api::storage::v1::StorageClass;
use serde_json::{Map, Value, json};

use crate::model::quantity;

/// The maps of quantities in a LimitRange item.
const LIMIT_RANGE_QUANTITY_MAPS: [&str; 5] = [
    "default",
    "defaultRequest",
    "max",
    "min",
    "maxLimitRequestRatio",
];

/// Replaces every quantity string in a map of resource name -> quantity with its canonical form.
pub fn quantity_map(map: &Value) -> Value {
    match map {
        Value::Object(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    let canonical = match v {
                        Value::String(s) => Value::String(quantity::canonical(s)),
                        Value::Number(n) => Value::String(quantity::canonical(&n.to_string())),
                        other => other.clone(),
                    };
                    (k.clone(), canonical)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Quantities in canonical form; empty maps dropped (the API server omits them).
pub fn limit_range(spec: &Value) -> Value {
    let mut spec = spec.clone();
    if let Some(items) = spec.get_mut("limits").and_then(Value::as_array_mut) {
        for item in items.iter_mut().filter_map(Value::as_object_mut) {
            for field in LIMIT_RANGE_QUANTITY_MAPS {
                match item.get(field) {
                    Some(Value::Object(m)) if m.is_empty() => {
                        item.remove(field);
                    }
                    Some(m) => {
                        let canonical = quantity_map(m);
                        item.insert(field.into(), canonical);
                    }
                    None => {}
                }
            }
        }
    }
    spec
}

/// Quantities in canonical form.
pub fn resource_quota(spec: &Value) -> Value {
    let mut spec = spec.clone();
    if let Some(hard) = spec.get("hard").map(quantity_map) {
        spec["hard"] = hard;
    }
    spec
}

/// The same fields of a live class.
pub fn class_fields(class: &StorageClass) -> Value {
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
pub fn storage_class(spec: &Value) -> Value {
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
