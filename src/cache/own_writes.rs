//! Read-your-writes for the reconcile. A reconcile plans from the caches; one that starts while
//! the watch has not yet delivered what an earlier reconcile wrote plans as if those writes had
//! not happened (a quota it created in a namespace another policy has since won is not seen,
//! so not removed) and reports converged. So the writer records the resourceVersion of each of
//! its writes per kind, the managed watches record what they have delivered into the caches,
//! and a reconcile first waits (briefly) until the caches show every write made before it.
//!
//! ResourceVersions are compared as numbers: the API server's are etcd revisions, and a watch
//! delivers one kind's events in that order. A version that is not a number is not recorded.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use crate::model::kind::Kind;

/// The namespaced kinds Tenantry writes and watches (StorageClasses are few and compared in
/// full from their own watch).
const KINDS: [Kind; 3] = [
    Kind::LimitRange,
    Kind::ResourceQuota,
    Kind::PodDisruptionBudget,
];

#[derive(Default)]
pub struct OwnWrites {
    written: [AtomicU64; 3],
    delivered: [AtomicU64; 3],
    progress: Notify,
}

fn slot(kind: Kind) -> Option<usize> {
    KINDS.iter().position(|k| *k == kind)
}

fn number(version: Option<&str>) -> Option<u64> {
    version?.parse().ok()
}

impl OwnWrites {
    /// The writer's: an object of `kind` was written and stored at `version`.
    pub fn wrote(&self, kind: Kind, version: Option<&str>) {
        if let (Some(i), Some(v)) = (slot(kind), number(version)) {
            self.written[i].fetch_max(v, Ordering::AcqRel);
        }
    }

    /// The watch's: an event of `kind` at `version` is in the cache.
    pub fn delivered(&self, kind: Kind, version: Option<&str>) {
        if let (Some(i), Some(v)) = (slot(kind), number(version)) {
            self.delivered[i].fetch_max(v, Ordering::AcqRel);
            self.progress.notify_waiters();
        }
    }

    fn caught_up(&self) -> bool {
        (0..KINDS.len()).all(|i| {
            self.delivered[i].load(Ordering::Acquire) >= self.written[i].load(Ordering::Acquire)
        })
    }

    /// Waits until the caches show every write recorded so far, for at most `limit`; false when
    /// they still do not (the reconcile then goes ahead and looks again soon).
    pub async fn wait(&self, limit: Duration) -> bool {
        let target: Vec<u64> = (self.written.iter())
            .map(|w| w.load(Ordering::Acquire))
            .collect();
        let reached =
            || (self.delivered.iter().zip(&target)).all(|(d, t)| d.load(Ordering::Acquire) >= *t);
        let waiting = async {
            loop {
                let progress = self.progress.notified();
                if reached() {
                    return;
                }
                progress.await;
            }
        };
        tokio::time::timeout(limit, waiting).await.is_ok() || self.caught_up()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn a_reconcile_waits_for_the_watch_to_deliver_what_was_written_before_it() {
        let own = Arc::new(OwnWrites::default());
        assert!(own.wait(Duration::from_millis(1)).await, "nothing written");
        own.wrote(Kind::ResourceQuota, Some("120"));
        own.wrote(Kind::LimitRange, Some("not-a-number"));
        own.delivered(Kind::ResourceQuota, Some("110"));
        assert!(!own.wait(Duration::from_millis(20)).await, "110 < 120");
        let waiter = tokio::spawn({
            let own = own.clone();
            async move { own.wait(Duration::from_secs(10)).await }
        });
        tokio::task::yield_now().await;
        own.delivered(Kind::ResourceQuota, Some("121"));
        assert!(waiter.await.unwrap());
        // Writes after a wait began are not waited for by it.
        own.wrote(Kind::PodDisruptionBudget, Some("200"));
        assert!(!own.wait(Duration::from_millis(1)).await);
        own.delivered(Kind::PodDisruptionBudget, Some("200"));
        assert!(own.wait(Duration::from_millis(1)).await);
    }
}
