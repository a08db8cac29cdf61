//! What quota admission refused, as controllers report it: the ReplicaSet, StatefulSet, Job and
//! DaemonSet controllers publish a `FailedCreate` Event carrying the API server's words
//! ("exceeded quota: team-budget, requested: requests.cpu=100m, used: ..., limited: ...").
//! The allocator sees use, not requests: without this, a namespace whose headroom is smaller
//! than its next pod (a 100m pod facing 60m of CPU headroom) waits for the slack to change. With
//! it, the part is made to fit the request (`allocator::Part::refused`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::allocator::{self, Amounts};
use crate::quantity;

/// How long a refused request is remembered: controllers retry with a growing backoff, so one
/// report has to stand for a while; a stale one only keeps that much headroom in the namespace.
pub const REMEMBERED_FOR: Duration = Duration::from_secs(120);

/// The largest request refused per (namespace, quota), and when it was last reported.
#[derive(Debug, Default)]
pub struct Refusals(Mutex<HashMap<(String, String), (Amounts, Instant)>>);

impl Refusals {
    pub fn record(&self, namespace: &str, quota: &str, requested: Amounts, now: Instant) {
        let mut map = self.0.lock().expect("not poisoned");
        let entry = map
            .entry((namespace.to_owned(), quota.to_owned()))
            .or_insert_with(|| (Amounts::new(), now));
        if now.duration_since(entry.1) > REMEMBERED_FOR {
            entry.0.clear();
        }
        for (resource, amount) in requested {
            let largest = entry.0.entry(resource).or_insert(0);
            *largest = (*largest).max(amount);
        }
        entry.1 = now;
    }

    /// The part was resized with what was refused in mind: later refusals are news.
    pub fn forget(&self, namespace: &str, quota: &str) {
        let mut map = self.0.lock().expect("not poisoned");
        map.remove(&(namespace.to_owned(), quota.to_owned()));
    }

    /// The largest request refused against this quota lately (empty when none).
    pub fn recent(&self, namespace: &str, quota: &str, now: Instant) -> Amounts {
        let map = self.0.lock().expect("not poisoned");
        match map.get(&(namespace.to_owned(), quota.to_owned())) {
            Some((amounts, at)) if now.duration_since(*at) <= REMEMBERED_FOR => amounts.clone(),
            _ => Amounts::new(),
        }
    }
}

/// The quota and the refused request in a message of quota admission, wherever it stands in it.
pub fn parse(message: &str) -> Option<(String, Amounts)> {
    let rest = message.split("exceeded quota: ").nth(1)?;
    let (quota, rest) = rest.split_once(", requested: ")?;
    let (requested, _) = rest.split_once(", used: ")?;
    let mut amounts = Amounts::new();
    for pair in requested.split(',') {
        let (resource, value) = pair.split_once('=')?;
        amounts.insert(resource.trim().to_owned(), quantity::milli(value.trim())?);
    }
    (!quota.is_empty() && !amounts.is_empty()).then(|| (quota.to_owned(), amounts))
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

    #[test]
    fn parses_what_quota_admission_says_as_controllers_repeat_it() {
        let message = "Error creating: pods \"web-7d4b9c-x2k\" is forbidden: exceeded quota: \
                       team-cpu, requested: requests.cpu=100m,requests.memory=64Mi, used: \
                       requests.cpu=1950m,requests.memory=1Gi, limited: requests.cpu=2,requests.memory=2Gi";
        let (quota, requested) = parse(message).unwrap();
        assert_eq!(quota, "team-cpu");
        assert_eq!(
            format(&requested),
            "requests.cpu=100m,requests.memory=67108864"
        );
        assert_eq!(
            parse("Error creating: pods \"x\" is forbidden: no such thing"),
            None
        );
        assert_eq!(
            parse("exceeded quota: q, requested: pods=lots, used: pods=1"),
            None
        );
    }

    #[test]
    fn the_largest_recent_request_is_remembered_for_a_while() {
        let refusals = Refusals::default();
        let t0 = Instant::now();
        let cpu = |m| Amounts::from([("requests.cpu".to_owned(), m)]);
        refusals.record("a", "team", cpu(100), t0);
        refusals.record("a", "team", cpu(50), t0 + Duration::from_secs(1));
        assert_eq!(
            refusals.recent("a", "team", t0 + Duration::from_secs(2)),
            cpu(100)
        );
        assert!(refusals.recent("b", "team", t0).is_empty());
        refusals.forget("a", "team");
        assert!(refusals.recent("a", "team", t0).is_empty());
        refusals.record("a", "team", cpu(100), t0);
        let later = t0 + Duration::from_secs(1) + REMEMBERED_FOR + Duration::from_secs(1);
        assert!(refusals.recent("a", "team", later).is_empty());
    }
}
