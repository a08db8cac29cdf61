//! [`CachedNamespace`]: a namespace as selection reads it, and how it stands in for the
//! namespace's metadata in a store.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Namespace;
use kube::Resource;
use kube::api::PartialObjectMeta;
use kube::runtime::reflector::Lookup;

use super::Compact;
use super::interner::name;

/// A namespace as selection reads it.
#[derive(Clone, Debug)]
pub struct CachedNamespace {
    /// Shared with the objects in the namespace.
    pub name: Arc<str>,
    /// Shared with what [`watch::Targets`](super::watch::Targets) remembers of the namespace.
    pub labels: Arc<BTreeMap<String, String>>,
    pub terminating: bool,
    /// See [`Compact::changed`].
    changed: bool,
}

impl CachedNamespace {
    /// What selection reads, borrowed.
    pub fn info(&self) -> crate::model::namespace::NamespaceInfo<'_> {
        crate::model::namespace::NamespaceInfo::new(
            self.name.as_ref(),
            Cow::Borrowed(self.labels.as_ref()),
            self.terminating,
        )
    }
}

impl Compact<PartialObjectMeta<Namespace>> for CachedNamespace {
    fn of(namespace: PartialObjectMeta<Namespace>) -> Self {
        let meta = namespace.metadata;
        Self {
            name: name(meta.name),
            labels: Arc::new(meta.labels.unwrap_or_default()),
            terminating: meta.deletion_timestamp.is_some(),
            changed: true,
        }
    }

    fn same_for_policies(&self, other: &Self) -> bool {
        self.labels == other.labels && self.terminating == other.terminating
    }

    fn changed(&self) -> bool {
        self.changed
    }

    fn set_changed(&mut self, changed: bool) {
        self.changed = changed;
    }
}

impl Lookup for CachedNamespace {
    type DynamicType = ();

    fn kind(dyntype: &()) -> Cow<'_, str> {
        <Namespace as Resource>::kind(dyntype)
    }

    fn group(dyntype: &()) -> Cow<'_, str> {
        <Namespace as Resource>::group(dyntype)
    }

    fn version(dyntype: &()) -> Cow<'_, str> {
        <Namespace as Resource>::version(dyntype)
    }

    fn plural(dyntype: &()) -> Cow<'_, str> {
        <Namespace as Resource>::plural(dyntype)
    }

    fn name(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(&self.name))
    }

    fn namespace(&self) -> Option<Cow<'_, str>> {
        None
    }

    /// Not kept (see [`Cached`](super::cached::Cached)'s).
    fn resource_version(&self) -> Option<Cow<'_, str>> {
        None
    }

    /// Not kept.
    fn uid(&self) -> Option<Cow<'_, str>> {
        None
    }
}
