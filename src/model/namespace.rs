//! What the pure steps know of a namespace.

use std::borrow::Cow;
use std::collections::BTreeMap;

/// What selection needs to know of a namespace: borrowed from the cache in the controller, so a
/// reconcile does not copy every namespace's labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceInfo<'a> {
    pub name: Cow<'a, str>,
    pub labels: Cow<'a, BTreeMap<String, String>>,
    /// Terminating namespaces are left alone: nothing is created in or pruned from them.
    pub terminating: bool,
}

impl<'a> NamespaceInfo<'a> {
    /// The one way to make one: from a namespace's name, labels and whether it is terminating
    /// (its `metadata.deletionTimestamp` is set).
    pub fn new(
        name: impl Into<Cow<'a, str>>,
        labels: Cow<'a, BTreeMap<String, String>>,
        terminating: bool,
    ) -> Self {
        Self {
            name: name.into(),
            labels,
            terminating,
        }
    }

    /// From a namespace's metadata (as `kubectl` or a metadata list returns it).
    pub fn of_meta(meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Self {
        static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();
        Self::new(
            meta.name.as_deref().unwrap_or_default(),
            Cow::Borrowed(meta.labels.as_ref().unwrap_or(&NO_LABELS)),
            meta.deletion_timestamp.is_some(),
        )
    }

    /// Owning what it borrowed.
    pub fn into_owned(self) -> NamespaceInfo<'static> {
        NamespaceInfo {
            name: Cow::Owned(self.name.into_owned()),
            labels: Cow::Owned(self.labels.into_owned()),
            terminating: self.terminating,
        }
    }
}
