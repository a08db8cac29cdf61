//! Names of things: which object, and which policy owns it.

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;

use crate::api::TenantPolicy;
use crate::model::kind::Kind;

/// Identifies one managed object.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    /// A compact stand-in for the key (for sets of many keys).
    pub fn fingerprint(&self) -> u64 {
        crate::model::fingerprint::fingerprint(self)
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{}/{}", self.kind, self.name)
        } else {
            write!(f, "{}/{}/{}", self.namespace, self.kind, self.name)
        }
    }
}

/// The policy that owns what it builds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub name: String,
    pub uid: String,
}

impl Owner {
    pub fn owner_reference(&self) -> OwnerReference {
        OwnerReference {
            api_version: "tenantry.io/v1alpha1".into(),
            kind: "TenantPolicy".into(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }
}

/// The uid given a policy not created yet (as `tenantry plan` sees one): the API server refuses
/// an ownerReference without one in a dry run, and no live object is owned by it.
pub const NOT_YET_CREATED_UID: &str = "00000000-0000-0000-0000-000000000000";

/// The owner a policy object gives what it builds: its name and uid.
pub fn owner_of(policy: &TenantPolicy) -> Owner {
    Owner {
        name: policy.name_any(),
        uid: policy
            .uid()
            .unwrap_or_else(|| NOT_YET_CREATED_UID.to_owned()),
    }
}

/// Whether a controller reference among `references` names `owner`: this very policy object
/// (same uid), not merely a policy of that name.
pub fn controlled_by(references: &[OwnerReference], owner: &Owner) -> bool {
    references
        .iter()
        .any(|r| r.controller == Some(true) && r.uid == owner.uid)
}

/// The controller reference among `references` that names anything but `owner`, if any:
/// another controller keeps the object.
pub fn foreign_controller<'r>(
    references: &'r [OwnerReference],
    owner: &Owner,
) -> Option<&'r OwnerReference> {
    references
        .iter()
        .find(|r| r.controller == Some(true) && r.uid != owner.uid)
}
