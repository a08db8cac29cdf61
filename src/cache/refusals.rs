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
    pub fn record(&self, namespace: &str, quota: &str, refusal: Refusal, now: Instant) {
        let mut map = self.0.lock().expect("not poisoned");
        let entry = map
            .entry((namespace.to_owned(), quota.to_owned()))
            .or_insert_with(|| (Refusal::default(), now));
        if now.duration_since(entry.1) > REMEMBERED_FOR {
            entry.0 = Refusal::default();
        }
        for (resource, amount) in refusal.requested {
            let largest = entry.0.requested.entry(resource).or_insert(0);
            *largest = (*largest).max(amount);
        }
        entry.0.used.extend(refusal.used);
        entry.1 = now;
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
