//! `make bench`: Tenantry against the API server's own floor, on the local control plane.
//!
//! For each N: N namespaces. The floor is the fastest honest way to write the same 4·N objects
//! with the controller's client settings: a tight loop of POSTs and one of forced server-side
//! applies, both measured, the faster counts; a third, the POSTs beside a controller's watches
//! of the managed kinds, is printed (never the floor) to show what watching costs any
//! controller. Every measured phase starts equal: the floor's objects are deleted after it, and a
//! quiet gate waits before each phase until kube-controller-manager has caught up (quota status,
//! PDB status, service accounts and root CA config maps of every namespace) and the API server's
//! write rate is back to idle. An unmeasured POST floor warms the control plane first, so no
//! measured phase runs on a cold one. The order alternates (floor then convergence, convergence
//! then floor, ...) and each figure is the median of the runs, with min and max. After
//! convergence and propagation the whole end state is checked (all 4·N objects, specs as
//! declared). A restart with everything converged is checked
//! from outside: resourceVersions and managedFields of every managed object, of the policy and of
//! Tenantry's Events, before the restart and after the restarted controller has reacted to a
//! canary namespace (so its first reconciles are done) and 10 s more. Then p50/p99 latency of a
//! namespace label flip (all four objects) and of drift repair, and peak RSS. `--fleet` measures
//! the shape real clusters have: one baseline policy over every namespace plus one team policy per
//! 20 namespaces overriding some kinds.
//!
//! Wrong results (writes on restart, a wrong end state) fail at once; `--summarize` prints the
//! table and fails when a target is missed (ratio to the floor, p99 latency, peak RSS).
//!
//! The shared-quota case (`tenantry-bench-shared`) is [`shared`].
//!
//! By concern: [`cli`] (the flags), [`fixtures`] (what is declared and written), [`proc`] (the
//! kernel's accounting), [`probe`] (the machine's speed and each phase's record), [`quiet`] (the
//! gate), [`apiserver`] (its request counter), [`controller`] (the process under test),
//! [`floors`] and [`watching`] (the floor), [`phases`] (convergence and propagation),
//! [`restart`], [`latency`], [`run`] (one N), [`fleet`], [`results`] (the typed JSON),
//! [`report`] (tables), [`targets`], [`provenance`]. The helpers the end-to-end tests share
//! (namespaces in bulk, polling, percentiles, the operator process, API-state snapshots) are in
//! `tenantry-testkit`.

pub mod apiserver;
pub mod cli;
pub mod controller;
pub mod fixtures;
pub mod fleet;
pub mod floors;
pub mod latency;
pub mod phases;
pub mod probe;
pub mod proc;
pub mod provenance;
pub mod quiet;
pub mod report;
pub mod restart;
pub mod results;
pub mod run;
pub mod shared;
pub mod targets;
pub mod watching;
