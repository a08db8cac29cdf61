//! The messages below are written out field by field, without `..Default::default()`: a field
//! `k8s-pb` gains fails to compile here until the conversion above reads it.
use k8s_pb::apimachinery::pkg::runtime::{RawExtension, TypeMeta as PbTypeMeta};
use serde_json::json;

use super::*;

fn frame(event_type: &str, kind: &str, object: impl Message) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(PbTypeMeta {
            api_version: Some("v1".into()),
            kind: Some(kind.into()),
        }),
        raw: Some(object.encode_to_vec()),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut raw = MAGIC.to_vec();
    raw.extend(unknown.encode_to_vec());
    pb_meta::WatchEvent {
        r#type: Some(event_type.into()),
        object: Some(RawExtension { raw: Some(raw) }),
    }
    .encode_to_vec()
}

fn at(seconds: i64) -> Option<pb_meta::Time> {
    Some(pb_meta::Time {
        seconds: Some(seconds),
        nanos: Some(0),
    })
}

fn quantity(text: &str) -> PbQuantity {
    PbQuantity {
        string: Some(text.into()),
    }
}

fn quantities(entries: &[(&str, &str)]) -> BTreeMap<String, PbQuantity> {
    (entries.iter())
        .map(|(k, v)| (k.to_string(), quantity(v)))
        .collect()
}

/// Metadata as the API server writes it for a managed object (Go encodes empty strings).
fn metadata(name: &str) -> pb_meta::ObjectMeta {
    pb_meta::ObjectMeta {
        name: Some(name.into()),
        generate_name: Some(String::new()),
        namespace: Some("team-a".into()),
        self_link: Some(String::new()),
        uid: Some("0b4f3c1e-6f0a-4b8e-9a51-3f1d2c7e8a90".into()),
        resource_version: Some("4711".into()),
        generation: Some(2),
        creation_timestamp: at(1_764_633_600),
        deletion_timestamp: None,
        deletion_grace_period_seconds: None,
        labels: [("app.kubernetes.io/managed-by", "tenantry")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        annotations: BTreeMap::new(),
        owner_references: vec![pb_meta::OwnerReference {
            api_version: Some("tenantry.io/v1alpha1".into()),
            kind: Some("TenantPolicy".into()),
            name: Some("baseline".into()),
            uid: Some("7c1d".into()),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }],
        finalizers: vec![],
        managed_fields: vec![pb_meta::ManagedFieldsEntry {
            manager: Some("kubectl-edit".into()),
            operation: Some("Update".into()),
            api_version: Some("v1".into()),
            time: at(1_764_633_660),
            fields_type: Some("FieldsV1".into()),
            fields_v1: Some(pb_meta::FieldsV1 {
                raw: Some(br#"{"f:spec":{}}"#.to_vec()),
            }),
            subresource: Some(String::new()),
        }],
    }
}

fn metadata_json(name: &str) -> serde_json::Value {
    json!({
        "name": name,
        "namespace": "team-a",
        "uid": "0b4f3c1e-6f0a-4b8e-9a51-3f1d2c7e8a90",
        "resourceVersion": "4711",
        "generation": 2,
        "creationTimestamp": "2025-12-02T00:00:00Z",
        "labels": {"app.kubernetes.io/managed-by": "tenantry"},
        "ownerReferences": [{
            "apiVersion": "tenantry.io/v1alpha1", "kind": "TenantPolicy", "name": "baseline",
            "uid": "7c1d", "controller": true, "blockOwnerDeletion": true
        }],
        // fieldsV1 is not read (see managed_fields_entry).
        "managedFields": [{
            "manager": "kubectl-edit", "operation": "Update", "apiVersion": "v1",
            "time": "2025-12-02T00:01:00Z", "fieldsType": "FieldsV1"
        }]
    })
}

fn decoded<K: FromProtobuf + serde::Serialize>(frame: &[u8]) -> (&'static str, serde_json::Value) {
    let (event, object) = match decode_event::<K>(frame).expect("decodes") {
        WatchEvent::Added(o) => ("ADDED", o),
        WatchEvent::Modified(o) => ("MODIFIED", o),
        WatchEvent::Deleted(o) => ("DELETED", o),
        other => panic!("not an object event: {other:?}"),
    };
    let mut json = serde_json::to_value(object).expect("serializes");
    json.as_object_mut()
        .map(|o| (o.remove("apiVersion"), o.remove("kind")));
    (event, json)
}

#[test]
fn a_quota_reads_from_protobuf_as_from_json() {
    let quota = pb_core::ResourceQuota {
        metadata: Some(metadata("compute")),
        spec: Some(pb_core::ResourceQuotaSpec {
            hard: quantities(&[("requests.cpu", "4"), ("pods", "20")]),
            scopes: vec!["NotBestEffort".into()],
            scope_selector: Some(pb_core::ScopeSelector {
                match_expressions: vec![pb_core::ScopedResourceSelectorRequirement {
                    scope_name: Some("PriorityClass".into()),
                    operator: Some("In".into()),
                    values: vec!["high".into()],
                }],
            }),
        }),
        status: Some(pb_core::ResourceQuotaStatus {
            hard: quantities(&[("requests.cpu", "4"), ("pods", "20")]),
            used: quantities(&[("requests.cpu", "250m"), ("pods", "1")]),
        }),
    };
    let (event, json) = decoded::<core::ResourceQuota>(&frame("MODIFIED", "ResourceQuota", quota));
    assert_eq!(event, "MODIFIED");
    assert_eq!(
        json,
        json!({
            "metadata": metadata_json("compute"),
            "spec": {
                "hard": {"pods": "20", "requests.cpu": "4"},
                "scopes": ["NotBestEffort"],
                "scopeSelector": {"matchExpressions": [
                    {"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}
                ]}
            },
            "status": {
                "hard": {"pods": "20", "requests.cpu": "4"},
                "used": {"pods": "1", "requests.cpu": "250m"}
            }
        })
    );
}

#[test]
fn a_limit_range_reads_every_item_field() {
    let range = pb_core::LimitRange {
        metadata: Some(metadata("defaults")),
        spec: Some(pb_core::LimitRangeSpec {
            limits: vec![pb_core::LimitRangeItem {
                r#type: Some("Container".into()),
                max: quantities(&[("cpu", "2")]),
                min: quantities(&[("cpu", "10m")]),
                default: quantities(&[("cpu", "500m")]),
                default_request: quantities(&[("cpu", "100m")]),
                max_limit_request_ratio: quantities(&[("cpu", "4")]),
            }],
        }),
    };
    let (event, json) = decoded::<core::LimitRange>(&frame("ADDED", "LimitRange", range));
    assert_eq!(event, "ADDED");
    assert_eq!(
        json,
        json!({
            "metadata": metadata_json("defaults"),
            "spec": {"limits": [{
                "type": "Container", "max": {"cpu": "2"}, "min": {"cpu": "10m"},
                "default": {"cpu": "500m"}, "defaultRequest": {"cpu": "100m"},
                "maxLimitRequestRatio": {"cpu": "4"}
            }]}
        })
    );
}

#[test]
fn a_pdb_reads_int_or_string_selector_and_status() {
    let pdb = pb_policy::PodDisruptionBudget {
        metadata: Some(metadata("web")),
        spec: Some(pb_policy::PodDisruptionBudgetSpec {
            min_available: Some(PbIntOrString {
                r#type: Some(1),
                int_val: Some(0),
                str_val: Some("50%".into()),
            }),
            selector: Some(pb_meta::LabelSelector {
                match_labels: [("app".to_string(), "web".to_string())].into(),
                match_expressions: vec![pb_meta::LabelSelectorRequirement {
                    key: Some("tier".into()),
                    operator: Some("Exists".into()),
                    values: vec![],
                }],
            }),
            max_unavailable: None,
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".into()),
        }),
        status: Some(pb_policy::PodDisruptionBudgetStatus {
            observed_generation: Some(2),
            disrupted_pods: [("web-0".to_string(), at(1_764_633_600).unwrap())].into(),
            disruptions_allowed: Some(1),
            current_healthy: Some(3),
            desired_healthy: Some(2),
            expected_pods: Some(3),
            conditions: vec![pb_meta::Condition {
                r#type: Some("DisruptionAllowed".into()),
                status: Some("True".into()),
                observed_generation: Some(2),
                last_transition_time: at(1_764_633_600),
                reason: Some("SufficientPods".into()),
                message: Some(String::new()),
            }],
        }),
    };
    let (event, json) =
        decoded::<policy::PodDisruptionBudget>(&frame("DELETED", "PodDisruptionBudget", pdb));
    assert_eq!(event, "DELETED");
    assert_eq!(
        json,
        json!({
            "metadata": metadata_json("web"),
            "spec": {
                "minAvailable": "50%",
                "selector": {
                    "matchLabels": {"app": "web"},
                    "matchExpressions": [{"key": "tier", "operator": "Exists"}]
                },
                "unhealthyPodEvictionPolicy": "AlwaysAllow"
            },
            "status": {
                "observedGeneration": 2,
                "disruptedPods": {"web-0": "2025-12-02T00:00:00Z"},
                "disruptionsAllowed": 1, "currentHealthy": 3, "desiredHealthy": 2,
                "expectedPods": 3,
                "conditions": [{
                    "type": "DisruptionAllowed", "status": "True", "observedGeneration": 2,
                    "lastTransitionTime": "2025-12-02T00:00:00Z", "reason": "SufficientPods",
                    "message": ""
                }]
            }
        })
    );
}

#[test]
fn an_integer_max_unavailable_and_an_empty_selector_stay_what_they_are() {
    let pdb = pb_policy::PodDisruptionBudget {
        // What Go writes for an object's zero numbers and times (no generation, say).
        metadata: Some(pb_meta::ObjectMeta {
            generation: Some(0),
            creation_timestamp: at(0),
            namespace: Some(String::new()),
            ..Default::default()
        }),
        spec: Some(pb_policy::PodDisruptionBudgetSpec {
            min_available: None,
            // An empty selector selects every pod; no selector selects none.
            selector: Some(pb_meta::LabelSelector {
                match_labels: BTreeMap::new(),
                match_expressions: vec![],
            }),
            max_unavailable: Some(PbIntOrString {
                r#type: Some(0),
                int_val: Some(1),
                str_val: Some(String::new()),
            }),
            unhealthy_pod_eviction_policy: None,
        }),
        status: None,
    };
    let (_, json) =
        decoded::<policy::PodDisruptionBudget>(&frame("ADDED", "PodDisruptionBudget", pdb));
    assert_eq!(
        json,
        json!({"metadata": {}, "spec": {"maxUnavailable": 1, "selector": {}}})
    );
}

#[test]
fn bookmarks_and_errors_read_as_kube_reads_them_in_json() {
    let bookmark = pb_core::ResourceQuota {
        metadata: Some(pb_meta::ObjectMeta {
            resource_version: Some("9000".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    match decode_event::<core::ResourceQuota>(&frame("BOOKMARK", "ResourceQuota", bookmark)) {
        Ok(WatchEvent::Bookmark(b)) => {
            assert_eq!(b.metadata.resource_version, "9000");
            assert_eq!(b.types.kind, "ResourceQuota");
        }
        other => panic!("not a bookmark: {other:?}"),
    }
    let gone = pb_meta::Status {
        metadata: None,
        status: Some("Failure".into()),
        message: Some("too old resource version: 1 (4711)".into()),
        reason: Some("Expired".into()),
        details: None,
        code: Some(410),
    };
    match decode_event::<core::ResourceQuota>(&frame("ERROR", "Status", gone)) {
        Ok(WatchEvent::Error(status)) => {
            assert_eq!(status.code, 410);
            assert_eq!(status.reason, "Expired");
            assert!(status.message.contains("too old"));
        }
        other => panic!("not an error: {other:?}"),
    }
}

#[test]
fn what_is_not_a_watch_event_of_the_kind_is_an_error_not_an_object() {
    let quota = pb_core::ResourceQuota::default();
    assert!(matches!(
        decode_event::<core::ResourceQuota>(&frame("RENAMED", "ResourceQuota", quota.clone())),
        Err(DecodeError::UnknownType(t)) if t == "RENAMED"
    ));
    let unprefixed = pb_meta::WatchEvent {
        r#type: Some("ADDED".into()),
        object: Some(k8s_pb::apimachinery::pkg::runtime::RawExtension {
            raw: Some(br#"{"kind":"ResourceQuota"}"#.to_vec()),
        }),
    };
    assert!(matches!(
        decode_event::<core::ResourceQuota>(&unprefixed.encode_to_vec()),
        Err(DecodeError::NoPrefix)
    ));
    assert!(decode_event::<core::ResourceQuota>(&[0xff, 0xff, 0xff]).is_err());
    let empty = pb_meta::WatchEvent {
        r#type: Some("ADDED".into()),
        object: None,
    };
    assert!(matches!(
        decode_event::<core::ResourceQuota>(&empty.encode_to_vec()),
        Err(DecodeError::NoObject)
    ));
}
