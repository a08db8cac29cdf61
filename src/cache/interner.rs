//! The [`Interner`], and the tables through which cached objects share what they have in common
//! (specs, Tenantry's labels, ownerReferences, names) instead of copying it.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, Mutex, Weak};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::Value;

use crate::model::fingerprint::fingerprint;

/// Below this many entries an interner is not pruned.
const MIN_PRUNE: usize = 64;

/// Hands out one shared copy of equal values, for as long as someone holds it: entries are weak,
/// and dead ones are pruned whenever the table has doubled since the last pruning (amortised
/// constant time per value).
pub struct Interner<T: ?Sized> {
    entries: Mutex<Entries<T>>,
}

struct Entries<T: ?Sized> {
    by_hash: HashMap<u64, Weak<T>>,
    prune_at: usize,
}

impl<T: ?Sized + PartialEq> Default for Interner<T> {
    fn default() -> Self {
        Self {
            entries: Mutex::new(Entries {
                by_hash: HashMap::new(),
                prune_at: MIN_PRUNE,
            }),
        }
    }
}

impl<T: ?Sized + PartialEq> Interner<T> {
    /// The shared copy of `value`, whose hash is `hash`. Equal values must have equal hashes; a
    /// collision only costs the sharing (the newer value takes the slot).
    pub fn intern<V: Borrow<T> + Into<Arc<T>>>(&self, hash: u64, value: V) -> Arc<T> {
        let mut entries = self.entries.lock().expect("not poisoned");
        if let Some(shared) = entries.by_hash.get(&hash).and_then(Weak::upgrade)
            && *shared == *value.borrow()
        {
            return shared;
        }
        let value: Arc<T> = value.into();
        entries.by_hash.insert(hash, Arc::downgrade(&value));
        if entries.by_hash.len() >= entries.prune_at {
            entries
                .by_hash
                .retain(|_, shared| shared.strong_count() > 0);
            entries.prune_at = (2 * entries.by_hash.len()).max(MIN_PRUNE);
        }
        value
    }

    /// Entries in the table, dead ones not yet pruned included.
    pub fn len(&self) -> usize {
        self.entries.lock().expect("not poisoned").by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Normalised specs, keyed by [`spec_fingerprint`](crate::model::object::spec_fingerprint).
pub(super) static SPECS: LazyLock<Interner<Value>> = LazyLock::new(Interner::default);
/// Tenantry's labels on an object: one map per policy in practice.
pub(super) static LABELS: LazyLock<Interner<BTreeMap<String, String>>> =
    LazyLock::new(Interner::default);
/// The ownerReferences of an object: one list per policy in practice.
pub(super) static OWNERS: LazyLock<Interner<Vec<OwnerReference>>> =
    LazyLock::new(Interner::default);
/// Object names (a handful: the policies' item names) and namespace names (each shared by the
/// namespace and the objects in it).
pub(super) static NAMES: LazyLock<Interner<str>> = LazyLock::new(Interner::default);

pub(super) fn name(name: Option<String>) -> Arc<str> {
    let name = name.unwrap_or_default();
    NAMES.intern(fingerprint(name.as_str()), name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interners_share_equal_values_and_forget_dropped_ones() {
        let interner = Interner::<String>::default();
        let a = interner.intern(1, "a".to_owned());
        assert!(Arc::ptr_eq(&a, &interner.intern(1, "a".to_owned())));
        let collided = interner.intern(1, "b".to_owned());
        assert_eq!(*collided, "b", "a collision never returns another value");
        drop((a, collided));
        let kept: Vec<Arc<String>> = (0..1000)
            .map(|i| interner.intern(i + 10, i.to_string()))
            .filter(|s| s.len() == 1)
            .collect();
        assert!(
            interner.len() < 200,
            "dead entries are pruned: {} left",
            interner.len()
        );
        assert_eq!(kept.len(), 10);
    }
}
