//! Watch events of the managed kinds read in protobuf rather than JSON (pure: bytes in, typed
//! objects out; [`super::protobuf_watch`] does the reading).
//!
//! Why: kube-apiserver encodes each event once per format and shares that encoding among the
//! watchers asking for it. kube-controller-manager watches LimitRanges, ResourceQuotas and PDBs in
//! protobuf, so a JSON watcher makes the API server encode every object Tenantry creates, and
//! every status kube-controller-manager writes for it, a second time; a protobuf watcher reuses
//! the first encoding, receives fewer bytes and decodes them faster. kube-rs reads JSON only, so
//! the frames are read here, with the message types of `k8s-pb`, into k8s-openapi's types, which
//! the rest of the controller uses.
//!
//! The wire format (k8s.io/apimachinery's protobuf serializer): a watch response is a sequence of
//! frames, each a 4-byte big-endian length and a `meta.v1.WatchEvent` message (no prefix); the
//! event's object is [`MAGIC`] followed by a `runtime.Unknown` whose `raw` is the object's message.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::policy::v1 as policy;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_pb::api::core::v1 as pb_core;
use k8s_pb::api::policy::v1 as pb_policy;
use k8s_pb::apimachinery::pkg::api::resource::Quantity as PbQuantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as pb_meta;
use k8s_pb::apimachinery::pkg::runtime::Unknown;
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString as PbIntOrString;
use kube::Resource;
use kube::core::response::Status;
use kube::core::watch::{Bookmark, BookmarkMeta};
use kube::core::{TypeMeta, WatchEvent};
use prost::Message;

/// What the protobuf serializer puts before every object it encodes ("k8s\0").
pub const MAGIC: &[u8] = b"k8s\0";

/// The media type of a protobuf watch.
pub const WATCH_MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf;stream=watch";

/// A frame longer than this is not a watch event of ours (the API server's own limit on a
/// request is 3 MiB; an object is at most 1.5 MiB in etcd).
pub const MAX_FRAME: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not a protobuf message: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("the event's object does not start with the protobuf serializer's prefix")]
    NoPrefix,
    #[error("the event carries no object")]
    NoObject,
    #[error("watch event of unknown type {0:?}")]
    UnknownType(String),
}

/// A kind read from protobuf: its `k8s-pb` message, and the conversion into the k8s-openapi type.
/// A managed kind the caches can watch in either encoding.
pub trait Watchable: crate::model::object::ManagedResource + FromProtobuf<Message: Send> {}
impl<K: crate::model::object::ManagedResource + FromProtobuf<Message: Send>> Watchable for K {}

pub trait FromProtobuf: Resource<DynamicType = ()> + Sized {
    type Message: Message + Default;
    fn from_message(message: Self::Message) -> Self;
}

/// One frame's watch event, typed.
pub fn decode_event<K: FromProtobuf>(frame: &[u8]) -> Result<WatchEvent<K>, DecodeError> {
    let event = pb_meta::WatchEvent::decode(frame)?;
    let raw = (event.object.and_then(|o| o.raw)).ok_or(DecodeError::NoObject)?;
    let unknown = Unknown::decode(raw.strip_prefix(MAGIC).ok_or(DecodeError::NoPrefix)?)?;
    let object = unknown.raw.unwrap_or_default();
    let typed = || K::Message::decode(object.as_slice()).map(K::from_message);
    Ok(match event.r#type.as_deref().unwrap_or_default() {
        "ADDED" => WatchEvent::Added(typed()?),
        "MODIFIED" => WatchEvent::Modified(typed()?),
        "DELETED" => WatchEvent::Deleted(typed()?),
        "BOOKMARK" => {
            let meta = typed()?.meta().clone();
            WatchEvent::Bookmark(Bookmark {
                types: TypeMeta {
                    api_version: K::api_version(&()).into_owned(),
                    kind: K::kind(&()).into_owned(),
                },
                metadata: BookmarkMeta {
                    resource_version: meta.resource_version.unwrap_or_default(),
                    annotations: meta.annotations.unwrap_or_default(),
                },
            })
        }
        "ERROR" => WatchEvent::Error(Box::new(status(pb_meta::Status::decode(
            object.as_slice(),
        )?))),
        other => return Err(DecodeError::UnknownType(other.to_string())),
    })
}

fn status(status: pb_meta::Status) -> Status {
    Status {
        status: None,
        code: status.code.and_then(|c| u16::try_from(c).ok()).unwrap_or(0),
        message: status.message.unwrap_or_default(),
        metadata: None,
        reason: status.reason.unwrap_or_default(),
        details: None,
    }
}

// Conversions. Go's protobuf encoding writes a plain string, number or time even when it is
// zero and cannot tell an empty list or map from a missing one, while its JSON omits such fields
// (`omitempty`; a zero time is `null`): a zero optional value becomes `None` here, as it does
// when kube-rs reads the JSON, so that an object reads the same in either format
// (tests/e2e/protobuf_watch.rs compares the two on a real API server).

fn text(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

fn number(value: Option<i64>) -> Option<i64> {
    value.filter(|v| *v != 0)
}

/// A time that is not Go's zero time.
fn moment(value: Option<pb_meta::Time>) -> Option<meta::Time> {
    value
        .filter(|t| t.seconds.unwrap_or_default() != 0 || t.nanos.unwrap_or_default() != 0)
        .map(time)
}

fn list<T, U>(items: Vec<T>, convert: impl Fn(T) -> U) -> Option<Vec<U>> {
    (!items.is_empty()).then(|| items.into_iter().map(convert).collect())
}

fn map<T, U>(
    entries: BTreeMap<String, T>,
    convert: impl Fn(T) -> U,
) -> Option<BTreeMap<String, U>> {
    (!entries.is_empty()).then(|| entries.into_iter().map(|(k, v)| (k, convert(v))).collect())
}

fn quantities(entries: BTreeMap<String, PbQuantity>) -> Option<BTreeMap<String, Quantity>> {
    map(entries, |q| Quantity(q.string.unwrap_or_default()))
}

fn time(time: pb_meta::Time) -> meta::Time {
    let at = k8s_openapi::jiff::Timestamp::new(
        time.seconds.unwrap_or_default(),
        time.nanos.unwrap_or_default(),
    );
    meta::Time(at.unwrap_or_default())
}

fn int_or_string(value: PbIntOrString) -> IntOrString {
    match value.r#type {
        Some(1) => IntOrString::String(value.str_val.unwrap_or_default()),
        _ => IntOrString::Int(value.int_val.unwrap_or_default()),
    }
}

fn object_meta(m: pb_meta::ObjectMeta) -> meta::ObjectMeta {
    meta::ObjectMeta {
        annotations: map(m.annotations, |v| v),
        creation_timestamp: moment(m.creation_timestamp),
        deletion_grace_period_seconds: m.deletion_grace_period_seconds,
        deletion_timestamp: m.deletion_timestamp.map(time),
        finalizers: list(m.finalizers, |f| f),
        generate_name: text(m.generate_name),
        generation: number(m.generation),
        labels: map(m.labels, |v| v),
        managed_fields: list(m.managed_fields, managed_fields_entry),
        name: text(m.name),
        namespace: text(m.namespace),
        owner_references: list(m.owner_references, owner_reference),
        resource_version: text(m.resource_version),
        self_link: text(m.self_link),
        uid: text(m.uid),
    }
}

/// Without `fieldsV1`: the caches keep only who wrote a spec (`strip_metadata`), never which
/// fields, and parsing its JSON for every event is what this module avoids.
fn managed_fields_entry(e: pb_meta::ManagedFieldsEntry) -> meta::ManagedFieldsEntry {
    meta::ManagedFieldsEntry {
        api_version: text(e.api_version),
        fields_type: text(e.fields_type),
        fields_v1: None,
        manager: text(e.manager),
        operation: text(e.operation),
        subresource: text(e.subresource),
        time: e.time.map(time),
    }
}

fn owner_reference(r: pb_meta::OwnerReference) -> meta::OwnerReference {
    meta::OwnerReference {
        api_version: r.api_version.unwrap_or_default(),
        block_owner_deletion: r.block_owner_deletion,
        controller: r.controller,
        kind: r.kind.unwrap_or_default(),
        name: r.name.unwrap_or_default(),
        uid: r.uid.unwrap_or_default(),
    }
}

fn label_selector(s: pb_meta::LabelSelector) -> meta::LabelSelector {
    meta::LabelSelector {
        match_expressions: list(s.match_expressions, |r| meta::LabelSelectorRequirement {
            key: r.key.unwrap_or_default(),
            operator: r.operator.unwrap_or_default(),
            values: list(r.values, |v| v),
        }),
        match_labels: map(s.match_labels, |v| v),
    }
}

fn condition(c: pb_meta::Condition) -> meta::Condition {
    meta::Condition {
        last_transition_time: time(c.last_transition_time.unwrap_or_default()),
        message: c.message.unwrap_or_default(),
        observed_generation: number(c.observed_generation),
        reason: c.reason.unwrap_or_default(),
        status: c.status.unwrap_or_default(),
        type_: c.r#type.unwrap_or_default(),
    }
}

impl FromProtobuf for core::LimitRange {
    type Message = pb_core::LimitRange;
    fn from_message(m: Self::Message) -> Self {
        core::LimitRange {
            metadata: m.metadata.map(object_meta).unwrap_or_default(),
            spec: m.spec.map(|s| core::LimitRangeSpec {
                limits: (s.limits.into_iter())
                    .map(|l| core::LimitRangeItem {
                        default: quantities(l.default),
                        default_request: quantities(l.default_request),
                        max: quantities(l.max),
                        max_limit_request_ratio: quantities(l.max_limit_request_ratio),
                        min: quantities(l.min),
                        type_: l.r#type.unwrap_or_default(),
                    })
                    .collect(),
            }),
        }
    }
}

impl FromProtobuf for core::ResourceQuota {
    type Message = pb_core::ResourceQuota;
    fn from_message(m: Self::Message) -> Self {
        core::ResourceQuota {
            metadata: m.metadata.map(object_meta).unwrap_or_default(),
            spec: m.spec.map(|s| core::ResourceQuotaSpec {
                hard: quantities(s.hard),
                scope_selector: s.scope_selector.map(|s| core::ScopeSelector {
                    match_expressions: list(s.match_expressions, |r| {
                        core::ScopedResourceSelectorRequirement {
                            operator: r.operator.unwrap_or_default(),
                            scope_name: r.scope_name.unwrap_or_default(),
                            values: list(r.values, |v| v),
                        }
                    }),
                }),
                scopes: list(s.scopes, |s| s),
            }),
            status: m.status.map(|s| core::ResourceQuotaStatus {
                hard: quantities(s.hard),
                used: quantities(s.used),
            }),
        }
    }
}

impl FromProtobuf for policy::PodDisruptionBudget {
    type Message = pb_policy::PodDisruptionBudget;
    fn from_message(m: Self::Message) -> Self {
        policy::PodDisruptionBudget {
            metadata: m.metadata.map(object_meta).unwrap_or_default(),
            spec: m.spec.map(|s| policy::PodDisruptionBudgetSpec {
                max_unavailable: s.max_unavailable.map(int_or_string),
                min_available: s.min_available.map(int_or_string),
                selector: s.selector.map(label_selector),
                unhealthy_pod_eviction_policy: text(s.unhealthy_pod_eviction_policy),
            }),
            status: m.status.map(|s| policy::PodDisruptionBudgetStatus {
                conditions: list(s.conditions, condition),
                current_healthy: s.current_healthy,
                desired_healthy: s.desired_healthy,
                disrupted_pods: map(s.disrupted_pods, time),
                disruptions_allowed: s.disruptions_allowed,
                expected_pods: s.expected_pods,
                observed_generation: number(s.observed_generation),
            }),
        }
    }
}

#[cfg(test)]
mod tests;
