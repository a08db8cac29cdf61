//! The managed objects as the controller caches them.
//!
//! A typed LimitRange, ResourceQuota or PodDisruptionBudget costs about 4.6 KiB in a cache even
//! stripped, and there are several per namespace. What the diff reads of one fits in a few hundred
//! bytes ([`Cached`]), and the parts that are the same across thousands of objects (the spec a
//! policy builds, Tenantry's labels, the policy's ownerReference) are shared through an
//! [`Interner`] rather than copied, so memory grows with the number of distinct specs, not with
//! the number of namespaces.
//!
//! Namespaces are cached as what selection reads of them ([`CachedNamespace`]) in the same way.
//!
//! [`watch`] has the watches that fill these caches and tell the controller what changed;
//! [`stores`] the caches as the reconcile reads them.
//!
//! The cached kinds are in [`cached`] (the managed objects) and [`namespace`], what they share in
//! [`interner`] (the one copy of equal values) and [`encoding`] (uids and resourceVersions kept
//! small). This file keeps what every cached kind implements, [`Compact`], and `summarise`,
//! which turns a watch event into the cached kind's.
//!
//! [`Cached`]: cached::Cached
//! [`CachedNamespace`]: namespace::CachedNamespace
//! [`Interner`]: interner::Interner

pub mod cached;
pub mod encoding;
pub mod interner;
pub mod namespace;
pub mod own_writes;
pub mod protobuf;
pub mod protobuf_watch;
pub mod refusals;
pub mod stores;
pub mod watch;

pub use stores::Stores;

/// A policy as watched: one that does not deserialize (stored under an older schema, say) is
/// reported on its own instead of breaking the watch of all of them.
pub type Guarded = kube::core::DeserializeGuard<crate::api::TenantPolicy>;

use std::borrow::Cow;

use kube::runtime::reflector::{Lookup, ObjectRef, Store};
use kube::runtime::watcher;

/// A compact stand-in, in a cache, for a watched object of kind `K`.
pub trait Compact<K>: Lookup<DynamicType = ()> + Clone + Send + Sync + 'static {
    fn of(object: K) -> Self;
    /// Equal in everything that decides what a policy does.
    fn same_for_policies(&self, other: &Self) -> bool;
    /// Whether this version differs from the one cached before it in anything that can change
    /// what a policy does (set by [`watch`] before the event is stored).
    fn changed(&self) -> bool;
    fn set_changed(&mut self, changed: bool);
    /// Carries over what this version shares with `previous`, the version cached before it.
    fn follow(&mut self, _previous: &Self) {}
    /// The kind and resourceVersion, for [`own_writes`]: `None` for what Tenantry does not write.
    fn written_as(&self) -> Option<(crate::model::kind::Kind, String)> {
        None
    }
}

/// The summary of a watch event; `cached` (the store being fed, which still holds the previous
/// version) decides whether it is a change worth a reconcile.
pub(crate) fn summarise<K, S: Compact<K>>(
    event: watcher::Event<K>,
    cached: &Store<S>,
) -> watcher::Event<S> {
    let compared = |object: K| {
        let mut object = S::of(object);
        let mut key = ObjectRef::new(&object.name().unwrap_or_default());
        key.namespace = object.namespace().map(Cow::into_owned);
        let previous = cached.get(&key);
        object.set_changed(
            previous
                .as_ref()
                .is_none_or(|previous| !previous.same_for_policies(&object)),
        );
        if let Some(previous) = previous {
            object.follow(&previous);
        }
        object
    };
    match event {
        watcher::Event::Apply(o) => watcher::Event::Apply(compared(o)),
        watcher::Event::InitApply(o) => watcher::Event::InitApply(compared(o)),
        watcher::Event::Delete(o) => watcher::Event::Delete(S::of(o)),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

#[cfg(test)]
mod tests;
