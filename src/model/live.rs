//! Where the pure steps find live objects: the controller's caches, `tenantry plan`'s read of
//! the cluster, or a plain slice in tests.

use serde_json::Value;

use crate::model::key::{ObjectKey, Owner};
use crate::model::kind::Kind;
use crate::model::object::Live;
use crate::model::quantity::Amounts;

/// Where the diff finds live objects: the controller's caches, or a plain slice in tests. Lookups
/// are by key, so the diff never copies the whole cache.
pub trait LiveIndex {
    /// The Tenantry-managed object at this key, if any.
    fn get(&self, key: &ObjectKey) -> Option<Live>;
    /// Keys of the Tenantry-managed objects labelled for this policy that `keep` accepts.
    fn labelled_for(&self, policy: &str, keep: &dyn Fn(Kind, &str, &str) -> bool)
    -> Vec<ObjectKey>;
    /// Fast path: `Some(true)` when the object at `key` is `owner`'s, not being deleted, and its
    /// normalised spec has this fingerprint; `None` when the index cannot tell cheaply.
    fn converged(&self, _key: &ObjectKey, _owner: &Owner, _fingerprint: u64) -> Option<bool> {
        None
    }
    /// The largest request quota admission refused lately against this quota (empty when none
    /// is known).
    fn refused(&self, _key: &ObjectKey) -> Amounts {
        Default::default()
    }
    /// The status of a shared budget's part (the caches keep no other status); `None` when the
    /// index does not know it.
    fn quota_status(&self, _key: &ObjectKey) -> Option<Value> {
        None
    }
    /// When the index first showed a shared budget's part using more than before (about when
    /// quota admission last charged it); `None` when it does not know.
    fn last_charged(&self, _key: &ObjectKey) -> Option<std::time::Instant> {
        None
    }
}

impl LiveIndex for [Live] {
    fn get(&self, key: &ObjectKey) -> Option<Live> {
        self.iter().find(|l| &l.key == key).cloned()
    }
    fn labelled_for(
        &self,
        policy: &str,
        keep: &dyn Fn(Kind, &str, &str) -> bool,
    ) -> Vec<ObjectKey> {
        self.iter()
            .filter(|l| {
                l.policy() == Some(policy) && keep(l.key.kind, &l.key.namespace, &l.key.name)
            })
            .map(|l| l.key.clone())
            .collect()
    }
}
