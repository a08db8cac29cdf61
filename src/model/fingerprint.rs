//! The one hash of the crate: 64-bit fingerprints that stand in for larger values in sets and
//! change checks (specs, keys, the parts of an object worth a reconcile). Deterministic within a
//! build (SipHash with fixed keys); never persisted, so a change of hash across versions is harmless.

use std::hash::{DefaultHasher, Hash, Hasher};

/// The fingerprint of `value`: equal values give equal fingerprints.
pub fn fingerprint(value: impl Hash) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}
