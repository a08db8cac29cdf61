//! What the controller remembers of each policy between reconciles. Lost on restart, by design:
//! it only refines Events, spares API reads and paces retries; everything that decides what is
//! written comes from the caches.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::api::TenantPolicyStatus;
use crate::pipeline::outcome::{NOT_OWNED_RECHECK, NotOwned};
use crate::pipeline::report::{self, Facts, Report};
use crate::pipeline::report::{Next, Reported};
use crate::pipeline::shared_quotas;
use crate::pipeline::status;

/// Periodic safety resync of a converged policy (changes are watch-driven; this is a backstop).
pub const RESYNC: Duration = Duration::from_secs(300);
/// A retry after the cache was behind or an object was being deleted by someone else.
pub const SOON: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct PolicyMemory {
    /// The generation whose built objects passed the API server's dry run.
    validated: Mutex<Option<i64>>,
    /// Fingerprints of the keys seen converged, at that generation.
    converged: Mutex<(Option<i64>, HashSet<u64>)>,
    /// Objects found to exist without Tenantry's labels (rechecked slowly).
    not_owned: Mutex<NotOwned>,
    reported: Mutex<Reported>,
    /// Consecutive reconciles that failed or left transient failures: the retry backs off.
    failures_in_a_row: AtomicU32,
    /// The allocator's memory of each shared budget.
    budgets: Mutex<shared_quotas::BudgetMemories>,
}

impl PolicyMemory {
    /// Whether this generation's objects already passed the dry run: in this process, or before
    /// a restart (status observed this generation, and not as an invalid spec).
    pub fn is_validated(
        &self,
        generation: Option<i64>,
        status: Option<&TenantPolicyStatus>,
    ) -> bool {
        *self.validated.lock().expect("not poisoned") == generation
            || status.is_some_and(|s| {
                s.observed_generation == generation
                    && s.conditions
                        .iter()
                        .any(|c| c.type_ == status::STALLED && c.reason != "InvalidSpec")
            })
    }

    pub fn mark_validated(&self, generation: Option<i64>) {
        *self.validated.lock().expect("not poisoned") = generation;
    }

    /// The keys seen converged at this generation (a change to them is drift).
    pub fn known_converged(&self, generation: Option<i64>) -> HashSet<u64> {
        let converged = self.converged.lock().expect("not poisoned");
        if converged.0 == generation {
            converged.1.clone()
        } else {
            HashSet::new()
        }
    }

    pub fn remember_converged(&self, generation: Option<i64>, keys: HashSet<u64>) {
        *self.converged.lock().expect("not poisoned") = (generation, keys);
    }

    /// The allocator's memories of the shared budgets, for `f` to read and update.
    pub fn budgets<T>(&self, f: impl FnOnce(&mut shared_quotas::BudgetMemories) -> T) -> T {
        f(&mut self.budgets.lock().expect("not poisoned"))
    }

    /// The objects found not owned, for `f` to read and update.
    pub fn not_owned<T>(&self, f: impl FnOnce(&mut NotOwned) -> T) -> T {
        f(&mut self.not_owned.lock().expect("not poisoned"))
    }

    /// The report of a reconcile's facts (against what Events said so far), remembering the
    /// keys it found converged at this generation.
    pub fn report(&self, generation: Option<i64>, facts: Facts) -> Report {
        let mut report = self.reported(|reported| report::report(facts, reported));
        self.remember_converged(generation, std::mem::take(&mut report.converged));
        report
    }

    /// What Events have said so far, for `f` to read and update.
    pub fn reported<T>(&self, f: impl FnOnce(&mut Reported) -> T) -> T {
        f(&mut self.reported.lock().expect("not poisoned"))
    }

    /// How long until the next look: 1 s, 2 s, 4 s ... up to [`RESYNC`] for consecutive
    /// transient failures, which reset once a reconcile leaves none.
    pub fn delay(&self, next: Next, transient_failures: bool) -> Duration {
        if !transient_failures {
            self.failures_in_a_row.store(0, Ordering::Relaxed);
        }
        match next {
            Next::Soon => SOON,
            Next::Backoff => self.backoff(),
            Next::Recheck => NOT_OWNED_RECHECK,
            Next::Resync => RESYNC,
        }
    }

    /// The next step of the backoff (also after a reconcile that failed outright).
    pub fn backoff(&self) -> Duration {
        let n = self.failures_in_a_row.fetch_add(1, Ordering::Relaxed);
        Duration::from_secs(1u64 << n.min(8)).min(RESYNC)
    }
}

/// Every policy's memory, by policy name.
#[derive(Default)]
pub struct PolicyMemories(Mutex<HashMap<String, Arc<PolicyMemory>>>);

impl PolicyMemories {
    pub fn of(&self, policy: &str) -> Arc<PolicyMemory> {
        self.0
            .lock()
            .expect("not poisoned")
            .entry(policy.to_owned())
            .or_default()
            .clone()
    }

    /// The policy is gone.
    pub fn forget(&self, policy: &str) {
        self.0.lock().expect("not poisoned").remove(policy);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_resync_and_resets_when_nothing_transient_is_left() {
        let memory = PolicyMemory::default();
        let delays: Vec<u64> = (0..10)
            .map(|_| memory.delay(Next::Backoff, true).as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 256]);
        assert_eq!(memory.delay(Next::Resync, false), RESYNC);
        assert_eq!(memory.delay(Next::Backoff, true), Duration::from_secs(1));
        assert_eq!(memory.delay(Next::Soon, true), SOON);
        assert_eq!(memory.delay(Next::Recheck, false), NOT_OWNED_RECHECK);
    }

    #[test]
    fn converged_keys_are_remembered_per_generation() {
        let memory = PolicyMemory::default();
        memory.remember_converged(Some(3), HashSet::from([7]));
        assert_eq!(memory.known_converged(Some(3)), HashSet::from([7]));
        assert!(memory.known_converged(Some(4)).is_empty());
    }
}
