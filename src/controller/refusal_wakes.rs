//! Which policy a refused request wakes. A `FailedCreate` Event from a trusted controller
//! counts only when it names an existing shared budget's part (a label Tenantry sets, which
//! tenants cannot forge on a quota), is remembered for the allocator, and wakes the policy
//! holding the part at most once per [`WAKE_INTERVAL`]: a failing workload retries for as long
//! as it fails, and a policy over 10,000 namespaces must not be re-planned for each retry. A
//! refusal that arrives inside the interval is not lost: the policy is woken when it ends.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt, future, stream};
use k8s_openapi::api::core::v1::ResourceQuota;
use kube::Client;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::api::SHARED_QUOTA_LABEL;
use crate::cache::Guarded;
use crate::cache::cached::Cached;
use crate::cache::refusals::Refusals;
use crate::cache::watch;

/// How often refusals may wake one policy.
pub const WAKE_INTERVAL: Duration = Duration::from_secs(1);

/// When each policy was last woken, and those to wake once their interval ends.
#[derive(Default)]
struct Limiter {
    woken: HashMap<String, Instant>,
    pending: BTreeSet<String>,
}

impl Limiter {
    /// Whether `policy` may be woken now; if not, it is woken once its interval ends.
    fn admit(&mut self, policy: &str, now: Instant) -> bool {
        self.woken
            .retain(|_, at| now.saturating_duration_since(*at) < WAKE_INTERVAL);
        if self.woken.contains_key(policy) {
            self.pending.insert(policy.to_owned());
            return false;
        }
        self.woken.insert(policy.to_owned(), now);
        true
    }

    /// The pending policies whose interval has ended, now woken.
    fn due(&mut self, now: Instant) -> Vec<String> {
        let due: Vec<String> = (self.pending.iter())
            .filter(|p| {
                self.woken
                    .get(*p)
                    .is_none_or(|at| now.saturating_duration_since(*at) >= WAKE_INTERVAL)
            })
            .cloned()
            .collect();
        for policy in &due {
            self.pending.remove(policy);
            self.woken.insert(policy.clone(), now);
        }
        due
    }
}

/// The policies to reconcile for the refusals reported, recording each in `refusals`.
pub fn stream(
    client: &Client,
    quotas: Store<Cached<ResourceQuota>>,
    refusals: Arc<Refusals>,
) -> impl Stream<Item = ObjectRef<Guarded>> + Send + 'static {
    let limiter = Arc::new(Mutex::new(Limiter::default()));
    let admitting = limiter.clone();
    let reported = watch::refusals(client).filter_map(move |reported| {
        let part = (quotas.get(&ObjectRef::new(&reported.quota).within(&reported.namespace)))
            .filter(|q| q.labels.contains_key(SHARED_QUOTA_LABEL));
        let policy = part.and_then(|q| q.policy().map(str::to_owned));
        let wake = policy.filter(|policy| {
            let (namespace, quota) = (&reported.namespace, &reported.quota);
            refusals.record(namespace, quota, reported.refusal, reported.at)
                && admitting
                    .lock()
                    .expect("not poisoned")
                    .admit(policy, Instant::now())
        });
        future::ready(wake.map(|p| ObjectRef::new(&p)))
    });
    let ticks = stream::unfold((), |()| async {
        tokio::time::sleep(WAKE_INTERVAL).await;
        Some(((), ()))
    });
    let held = ticks.flat_map(move |()| {
        let due = limiter.lock().expect("not poisoned").due(Instant::now());
        stream::iter(due.into_iter().map(|p| ObjectRef::new(&p)))
    });
    stream::select(reported, held)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_is_woken_at_most_once_an_interval_and_what_arrives_meanwhile_is_not_lost() {
        let mut limiter = Limiter::default();
        let t0 = Instant::now();
        assert!(limiter.admit("team", t0));
        assert!(!limiter.admit("team", t0 + Duration::from_millis(100)));
        assert!(!limiter.admit("team", t0 + Duration::from_millis(200)));
        assert!(limiter.admit("other", t0 + Duration::from_millis(200)));
        assert!(limiter.due(t0 + Duration::from_millis(500)).is_empty());
        assert_eq!(limiter.due(t0 + WAKE_INTERVAL), ["team"]);
        assert!(limiter.due(t0 + WAKE_INTERVAL * 3).is_empty(), "woken once");
        assert!(limiter.admit("team", t0 + WAKE_INTERVAL * 3));
    }
}
