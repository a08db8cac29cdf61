//! Adoption (`spec.adoptionPolicy`): whether an existing object of a declared name that lacks
//! Tenantry's labels is taken under the policy, and the write that takes it. Pure.
//!
//! The writer meets such an object when its creation fails because the name is taken (the
//! caches hold only Tenantry's objects) and reads it; [`crate::pipeline::outcome`] asks
//! [`decide`], and either has the writer send the patch (a merge patch carrying the uid and
//! resourceVersion read, so it lands only on that very object, unchanged since) or reports the
//! object as not owned, with the reason.
//!
//! What is never adopted, whatever the policy says:
//! - an object of another TenantPolicy (Tenantry's labels): overlaps decide who holds it, and
//!   the caches see it, so it never reaches here;
//! - an object with a controller ownerReference to anything but this policy: another controller
//!   keeps it, and taking it would start a tug of war with that controller;
//! - an object with finalizers: once adopted, only Tenantry may change it (the tamper admission
//!   policy), so a finalizer left by whoever made it could hold its deletion forever;
//! - an object being deleted: it is created anew once gone;
//! - (Always) a StorageClass whose immutable fields differ: taking it would mean deleting it.

use serde_json::{Value, json};

use crate::api::AdoptionPolicy;
use crate::model::key::{Owner, foreign_controller};
use crate::model::kind::Kind;
use crate::model::object::{Desired, Live, live_of_dynamic};
use crate::pipeline::build::storage_class;
use crate::pipeline::diff;

/// An existing object of a declared name, as the adoption decision needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct Existing {
    pub live: Live,
    pub finalizers: Vec<String>,
}

impl Existing {
    /// From an object read untyped; `None` when it does not read as `kind`.
    pub fn of(kind: Kind, object: &kube::api::DynamicObject) -> Option<Self> {
        Some(Self {
            live: live_of_dynamic(kind, object)?,
            finalizers: object.metadata.finalizers.clone().unwrap_or_default(),
        })
    }
}

/// What to do with an existing object of a declared name.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Take it with this merge patch; `changed` names the declared fields it changes (none
    /// when the object was already as declared).
    Adopt { patch: Value, changed: Vec<String> },
    /// Leave it untouched; why, for the NotOwned failure.
    Refuse(String),
}

/// Decides whether `policy` adopts `existing` for `desired` (same kind and name).
pub fn decide(
    policy: AdoptionPolicy,
    desired: &Desired,
    existing: &Existing,
    owner: &Owner,
) -> Decision {
    let live = &existing.live;
    if let Some(why) = refusal(policy, live, &existing.finalizers, owner) {
        return Decision::Refuse(why);
    }
    let have = desired.key.kind.normalize(&live.spec);
    let changed = changed_fields(
        desired.key.kind,
        &diff::merge_patch(&have, &desired.normalized),
    );
    if !changed.is_empty() && policy == AdoptionPolicy::IfIdentical {
        return Decision::Refuse(format!(
            "adoptionPolicy IfIdentical, and its spec differs from the declared one in {}",
            crate::pipeline::message::listing(&changed)
        ));
    }
    if desired.key.kind == Kind::StorageClass {
        let immutable = storage_class::immutable_changes(&desired.normalized, &have);
        if !immutable.is_empty() {
            let (differ, them) = if immutable.len() == 1 {
                ("differs", "it")
            } else {
                ("differ", "them")
            };
            return Decision::Refuse(format!(
                "its {} {differ} from the policy's, and Kubernetes cannot change {them} in place",
                immutable.join(", ")
            ));
        }
    }
    Decision::Adopt {
        patch: adoption_patch(desired, live, owner, !changed.is_empty()),
        changed,
    }
}

/// Why an object cannot be adopted whatever its spec, if it cannot.
fn refusal(
    policy: AdoptionPolicy,
    live: &Live,
    finalizers: &[String],
    owner: &Owner,
) -> Option<String> {
    if live.is_tenantry_managed() {
        let other = live.policy().unwrap_or("(unknown)");
        return Some(format!(
            "it is managed by TenantPolicy {other}: priority decides, never adoption"
        ));
    }
    if policy == AdoptionPolicy::Never {
        return Some("adoptionPolicy Never".into());
    }
    if live.deleting {
        return Some("it is being deleted".into());
    }
    if let Some(r) = foreign_controller(&live.owner_references, owner) {
        return Some(format!("it is controlled by {} {}", r.kind, r.name));
    }
    if !finalizers.is_empty() {
        return Some(format!(
            "it carries finalizers ({}), which would hold its deletion once governed",
            finalizers.join(", ")
        ));
    }
    None
}

/// Tenantry's labels (others kept) and controller ownerReference (other, non-controller
/// references kept), the spec as declared when it differs, on the condition that the object is
/// the one read (uid) and unchanged since (resourceVersion).
fn adoption_patch(desired: &Desired, live: &Live, owner: &Owner, spec_differs: bool) -> Value {
    let references = crate::pipeline::diff::with_owner_as_controller(live, owner);
    let mut patch = json!({
        "metadata": {
            "uid": live.uid,
            "resourceVersion": live.resource_version,
            "labels": desired.all_labels(owner),
            "ownerReferences": references,
        },
    });
    if spec_differs {
        crate::model::object::place_spec(
            &mut patch,
            desired.key.kind,
            diff::spec_patch(desired, &live.spec),
        );
    }
    patch
}

/// The fields a merge patch sets or removes, as paths from the object ("spec.hard.pods"; a
/// list counts as one field).
pub fn changed_fields(kind: Kind, patch: &Value) -> Vec<String> {
    fn walk(prefix: &str, value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(fields) if !fields.is_empty() => {
                for (k, v) in fields {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&path, v, out);
                }
            }
            _ if prefix.is_empty() => {}
            _ => out.push(prefix.to_owned()),
        }
    }
    let mut out = Vec::new();
    let prefix = if kind.fields_at_top_level() {
        ""
    } else {
        "spec"
    };
    match patch {
        Value::Object(fields) if fields.is_empty() => {}
        _ => walk(prefix, patch, &mut out),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::key::ObjectKey;
    use crate::model::object::managed_labels;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use std::collections::BTreeMap;

    fn owner() -> Owner {
        Owner {
            name: "team".into(),
            uid: "uid-team".into(),
        }
    }

    fn key(kind: Kind) -> ObjectKey {
        ObjectKey {
            kind,
            namespace: if kind.is_namespaced() { "a" } else { "" }.into(),
            name: "compute".into(),
        }
    }

    fn quota(hard: Value) -> Desired {
        Desired::of(key(Kind::ResourceQuota), json!({"hard": hard}))
    }

    fn existing(hard: Value) -> Existing {
        Existing {
            live: Live {
                key: key(Kind::ResourceQuota),
                uid: "uid-theirs".into(),
                resource_version: "42".into(),
                labels: BTreeMap::from([("team".to_owned(), "mia".to_owned())]),
                owner_references: Vec::new(),
                spec: json!({"hard": hard}),
                foreign_manager: None,
                deleting: false,
            },
            finalizers: Vec::new(),
        }
    }

    fn refused(decision: Decision) -> String {
        match decision {
            Decision::Refuse(why) => why,
            other => panic!("expected a refusal: {other:?}"),
        }
    }

    #[test]
    fn never_adopts() {
        let d = quota(json!({"pods": "10"}));
        let why = refused(decide(
            AdoptionPolicy::Never,
            &d,
            &existing(json!({"pods": "10"})),
            &owner(),
        ));
        assert_eq!(why, "adoptionPolicy Never");
    }

    #[test]
    fn if_identical_adopts_an_equal_spec_by_value_without_touching_it() {
        let d = quota(json!({"cpu": "1", "memory": "1Gi"}));
        let e = existing(json!({"cpu": "1000m", "memory": "1024Mi"}));
        let Decision::Adopt { patch, changed } =
            decide(AdoptionPolicy::IfIdentical, &d, &e, &owner())
        else {
            panic!("an equal spec is adopted")
        };
        assert!(changed.is_empty(), "{changed:?}");
        assert!(patch.get("spec").is_none(), "{patch}");
        assert_eq!(patch["metadata"]["uid"], json!("uid-theirs"));
        assert_eq!(patch["metadata"]["resourceVersion"], json!("42"));
        assert_eq!(
            patch["metadata"]["labels"],
            json!({"app.kubernetes.io/managed-by": "tenantry", "tenantry.io/policy": "team"})
        );
        assert_eq!(
            patch["metadata"]["ownerReferences"][0]["uid"],
            json!("uid-team")
        );
        assert_eq!(
            patch["metadata"]["ownerReferences"][0]["controller"],
            json!(true)
        );
    }

    #[test]
    fn if_identical_refuses_a_different_spec_naming_the_fields() {
        let d = quota(json!({"cpu": "2", "pods": "10"}));
        let why = refused(decide(
            AdoptionPolicy::IfIdentical,
            &d,
            &existing(json!({"cpu": "1", "pods": "10", "secrets": "5"})),
            &owner(),
        ));
        assert_eq!(
            why,
            "adoptionPolicy IfIdentical, and its spec differs from the declared one in spec.hard.cpu, spec.hard.secrets"
        );
    }

    #[test]
    fn always_adopts_and_makes_it_as_declared() {
        let d = quota(json!({"cpu": "2", "pods": "10"}));
        let mut e = existing(json!({"cpu": "1", "pods": "10", "secrets": "5"}));
        let kept = OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: "notes".into(),
            uid: "uid-cm".into(),
            controller: None,
            block_owner_deletion: None,
        };
        e.live.owner_references.push(kept);
        let Decision::Adopt { patch, changed } = decide(AdoptionPolicy::Always, &d, &e, &owner())
        else {
            panic!("Always adopts")
        };
        assert_eq!(changed, ["spec.hard.cpu", "spec.hard.secrets"]);
        assert_eq!(
            patch["spec"],
            json!({"hard": {"cpu": "2", "secrets": null}})
        );
        let references = patch["metadata"]["ownerReferences"].as_array().unwrap();
        assert_eq!(references.len(), 2, "the non-controller reference is kept");
        assert_eq!(patch["metadata"]["resourceVersion"], json!("42"));
    }

    #[test]
    fn what_is_never_adopted_whatever_the_policy() {
        let d = quota(json!({"pods": "10"}));
        let mut managed = existing(json!({"pods": "10"}));
        managed.live.labels = managed_labels("other");
        assert!(
            refused(decide(AdoptionPolicy::Always, &d, &managed, &owner()))
                .contains("TenantPolicy other")
        );

        let mut controlled = existing(json!({"pods": "10"}));
        controlled.live.owner_references.push(OwnerReference {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: "quota-keeper".into(),
            uid: "uid-d".into(),
            controller: Some(true),
            block_owner_deletion: None,
        });
        assert_eq!(
            refused(decide(AdoptionPolicy::Always, &d, &controlled, &owner())),
            "it is controlled by Deployment quota-keeper"
        );

        let mut held = existing(json!({"pods": "10"}));
        held.finalizers = vec!["example.com/hold".into()];
        assert!(
            refused(decide(AdoptionPolicy::IfIdentical, &d, &held, &owner()))
                .contains("example.com/hold")
        );

        let mut going = existing(json!({"pods": "10"}));
        going.live.deleting = true;
        assert_eq!(
            refused(decide(AdoptionPolicy::Always, &d, &going, &owner())),
            "it is being deleted"
        );
    }

    #[test]
    fn a_class_is_adopted_only_when_its_immutable_fields_agree() {
        let class = |reclaim: &str, expansion: bool| Existing {
            live: Live {
                key: key(Kind::StorageClass),
                uid: "u".into(),
                resource_version: "1".into(),
                labels: BTreeMap::new(),
                owner_references: Vec::new(),
                spec: json!({"provisioner": "x.io/ssd", "reclaimPolicy": reclaim,
                    "volumeBindingMode": "Immediate", "allowVolumeExpansion": expansion}),
                foreign_manager: None,
                deleting: false,
            },
            finalizers: Vec::new(),
        };
        let d = Desired::of(
            key(Kind::StorageClass),
            json!({"provisioner": "x.io/ssd", "allowVolumeExpansion": true}),
        );
        let Decision::Adopt { patch, changed } = decide(
            AdoptionPolicy::Always,
            &d,
            &class("Delete", false),
            &owner(),
        ) else {
            panic!("a mutable difference is adopted")
        };
        assert_eq!(changed, ["allowVolumeExpansion"]);
        assert_eq!(patch["allowVolumeExpansion"], json!(true));
        assert!(
            refused(decide(
                AdoptionPolicy::Always,
                &d,
                &class("Retain", true),
                &owner()
            ))
            .contains("reclaimPolicy")
        );
    }
}
