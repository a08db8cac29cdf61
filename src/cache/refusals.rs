//! What quota admission refused, as controllers report it: the ReplicaSet, StatefulSet, Job and
//! DaemonSet controllers publish a `FailedCreate` Event carrying the API server's words
//! ("exceeded quota: team-budget, requested: requests.cpu=100m, used: ..., limited: ...").
//! The allocator sees use, not requests: without this, a namespace whose headroom is smaller
//! than its next pod (a 100m pod facing 60m of CPU headroom) waits for the slack to change. With
//! it, the part is made to fit the request (`allocator::Part::refused`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::pipeline::allocator;

use crate::model::quantity;
use crate::model::quantity::Amounts;

/// How long a refused request is remembered: controllers retry with a growing backoff, so one
/// report has to stand for a while; a stale one only keeps that much headroom in the namespace.
pub const REMEMBERED_FOR: Duration = Duration::from_secs(120);

/// The most (namespace, quota) pairs remembered. Only refusals against an existing shared part are
/// recorded, so there are seldom more than there are parts; this holds whatever anyone creates.
pub const MAX_REMEMBERED: usize = 4096;

/// The controllers whose `FailedCreate` Events are believed: kube-controller-manager's, which
/// create pods for workloads and repeat quota admission's words. An Event names its reporter in
/// `reportingComponent` (or `source.component`); one from anyone else is ignored.
pub const TRUSTED_REPORTERS: [&str; 4] = [
    "replicaset-controller",
    "statefulset-controller",
    "job-controller",
    "daemonset-controller",
];

/// One quota admission refusal: the request refused and the quota's use at that moment, for the
/// resources it exceeded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Refusal {
    pub requested: Amounts,
    pub used: Amounts,
}

/// The largest request refused per (namespace, quota) with the use it was refused at, and when
/// it was last reported.
#[derive(Debug, Default)]
pub struct Refusals(Mutex<HashMap<(String, String), (Refusal, Instant)>>);

impl Refusals {
    /// Records a refusal, forgetting those older than [`REMEMBERED_FOR`]; a new pair beyond
    /// [`MAX_REMEMBERED`] is not recorded (false).
    pub fn record(&self, namespace: &str, quota: &str, refusal: Refusal, now: Instant) -> bool {
        let mut map = self.0.lock().expect("not poisoned");
        let key = (namespace.to_owned(), quota.to_owned());
        if !map.contains_key(&key) && map.len() >= MAX_REMEMBERED {
            map.retain(|_, (_, at)| now.saturating_duration_since(*at) <= REMEMBERED_FOR);
            if map.len() >= MAX_REMEMBERED {
                return false;
            }
        }
        let entry = map.entry(key).or_insert_with(|| (Refusal::default(), now));
        if now.duration_since(entry.1) > REMEMBERED_FOR {
            entry.0 = Refusal::default();
        }
        for (resource, amount) in refusal.requested {
            let largest = entry.0.requested.entry(resource).or_insert(0);
            *largest = (*largest).max(amount);
        }
        entry.0.used.extend(refusal.used);
        entry.1 = now;
        true
    }

    /// Forgets the refusals older than [`REMEMBERED_FOR`] (they no longer count).
    pub fn forget_old(&self, now: Instant) {
        let mut map = self.0.lock().expect("not poisoned");
        map.retain(|_, (_, at)| now.saturating_duration_since(*at) <= REMEMBERED_FOR);
    }

    /// How many (namespace, quota) pairs are remembered.
    pub fn len(&self) -> usize {
        self.0.lock().expect("not poisoned").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The largest request refused against this quota lately, for the resources whose use is
    /// still what it was then (`used` now): once it grew, the namespace got what it asked for, or
    /// some of it; once it fell, its headroom grew by itself (a namespace scaled down asks for
    /// nothing).
    pub fn pending(&self, namespace: &str, quota: &str, used: &Amounts, now: Instant) -> Amounts {
        let map = self.0.lock().expect("not poisoned");
        let Some((refusal, at)) = map.get(&(namespace.to_owned(), quota.to_owned())) else {
            return Amounts::new();
        };
        if now.duration_since(*at) > REMEMBERED_FOR {
            return Amounts::new();
        }
        refusal
            .requested
            .iter()
            .filter(|(r, _)| {
                let then = refusal.used.get(*r).copied().unwrap_or(0);
                used.get(*r).copied().unwrap_or(0) == then
            })
            .map(|(r, a)| (r.clone(), *a))
            .collect()
    }
}

fn amounts_of(text: &str) -> Option<Amounts> {
    let mut amounts = Amounts::new();
    for pair in text.split(',') {
        let (resource, value) = pair.split_once('=')?;
        amounts.insert(resource.trim().to_owned(), quantity::milli(value.trim())?);
    }
    Some(amounts)
}

/// The quota and the refusal in a message of quota admission, wherever it stands in it.
pub fn parse(message: &str) -> Option<(String, Refusal)> {
    let rest = message.split("exceeded quota: ").nth(1)?;
    let (quota, rest) = rest.split_once(", requested: ")?;
    let (requested, rest) = rest.split_once(", used: ")?;
    let (used, _) = rest.split_once(", limited: ")?;
    let refusal = Refusal {
        requested: amounts_of(requested)?,
        used: amounts_of(used)?,
    };
    (!quota.is_empty() && !refusal.requested.is_empty()).then(|| (quota.to_owned(), refusal))
}

/// [`allocator::amounts`]'s spelling, for tests and messages.
pub fn format(amounts: &Amounts) -> String {
    allocator::quantities(amounts)
        .iter()
        .map(|(r, q)| format!("{r}={}", q.0))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(m: i128) -> Amounts {
        Amounts::from([("requests.cpu".to_owned(), m)])
    }

    #[test]
    fn parses_what_quota_admission_says_as_controllers_repeat_it() {
        let message = "Error creating: pods \"web-7d4b9c-x2k\" is forbidden: exceeded quota: \
                       team-cpu, requested: requests.cpu=100m,requests.memory=64Mi, used: \
                       requests.cpu=1950m,requests.memory=1Gi, limited: requests.cpu=2,requests.memory=2Gi";
        let (quota, refusal) = parse(message).unwrap();
        assert_eq!(quota, "team-cpu");
        assert_eq!(
            format(&refusal.requested),
            "requests.cpu=100m,requests.memory=67108864"
        );
        assert_eq!(refusal.used["requests.cpu"], 1950);
        assert_eq!(
            parse("Error creating: pods \"x\" is forbidden: no such thing"),
            None
        );
        assert_eq!(
            parse("exceeded quota: q, requested: pods=lots, used: pods=1, limited: pods=1"),
            None
        );
    }

    #[test]
    fn the_memory_is_bounded_whatever_is_reported_and_forgets_on_schedule() {
        let refusals = Refusals::default();
        let t0 = Instant::now();
        let refusal = Refusal {
            requested: cpu(100),
            used: cpu(0),
        };
        for i in 0..MAX_REMEMBERED + 500 {
            refusals.record("ns", &format!("forged-{i}"), refusal.clone(), t0);
        }
        assert_eq!(refusals.len(), MAX_REMEMBERED);
        // A known pair is still updated at the bound.
        assert!(refusals.record("ns", "forged-0", refusal.clone(), t0));
        let later = t0 + REMEMBERED_FOR + Duration::from_secs(1);
        // Once the old ones have expired, a new pair is taken again (and the old ones go).
        assert!(refusals.record("ns", "real", refusal.clone(), later));
        assert_eq!(refusals.len(), 1);
        refusals.forget_old(later + REMEMBERED_FOR + Duration::from_secs(1));
        assert!(refusals.is_empty());
    }

    #[test]
    fn a_refusal_stands_until_use_grows_or_it_is_old() {
        let refusals = Refusals::default();
        let t0 = Instant::now();
        let refusal = |req, used| Refusal {
            requested: cpu(req),
            used: cpu(used),
        };
        refusals.record("a", "team", refusal(100, 950), t0);
        refusals.record("a", "team", refusal(50, 950), t0 + Duration::from_secs(1));
        let soon = t0 + Duration::from_secs(2);
        assert_eq!(refusals.pending("a", "team", &cpu(950), soon), cpu(100));
        assert!(
            refusals.pending("a", "team", &cpu(1050), soon).is_empty(),
            "use grew"
        );
        assert!(refusals.pending("b", "team", &cpu(0), soon).is_empty());
        let later = t0 + Duration::from_secs(1) + REMEMBERED_FOR + Duration::from_secs(1);
        assert!(refusals.pending("a", "team", &cpu(950), later).is_empty());
    }
}
