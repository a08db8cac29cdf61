//! The machine's speed around each measured phase, and the record of what each phase used (the
//! results' `phase_cpu`).

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::Instant;

use crate::proc::{cpu_seconds, cpu_used};
use crate::results::PhaseCpu;

/// Seconds this machine takes for a fixed piece of work (hashing the same 32 MiB three times,
/// on one thread, with nothing else of the bench running): its speed just then. Taken right
/// before and right after each measured phase, to tell a phase slowed by the machine (a
/// neighbour on the host, which need not show as steal) from one slowed by what it measures.
pub fn speed_probe() -> f64 {
    use std::hash::Hasher as _;
    static BUFFER: LazyLock<Vec<u8>> =
        LazyLock::new(|| (0..32usize << 20).map(|i| (i % 251) as u8).collect());
    let started = Instant::now();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for _ in 0..3 {
        hasher.write(&BUFFER);
    }
    std::hint::black_box(hasher.finish());
    started.elapsed().as_secs_f64()
}

/// Taken right before a measured phase: the machine's speed, then the CPU-seconds so far.
pub struct Before {
    probe: f64,
    cpu: BTreeMap<String, f64>,
}

impl Before {
    /// `client`: the process whose CPU counts as the client's (the floor's or the controller's).
    pub fn take(client: u32) -> Self {
        let probe = speed_probe();
        Self {
            probe,
            cpu: cpu_seconds(client),
        }
    }
}

/// The measured phases of a run, in order: what each took and what each process used.
#[derive(Default)]
pub struct Phases {
    pub recorded: Vec<PhaseCpu>,
}

impl Phases {
    /// Records what the processes used between `before` and now, and the speed probe after.
    pub fn record(&mut self, phase: &str, took: f64, client: u32, before: &Before) {
        let used = cpu_used(&before.cpu, &cpu_seconds(client));
        let probe = [before.probe, speed_probe()];
        eprintln!("[bench] {phase}: {took:.2}s, CPU-seconds {used:?}, speed probe {probe:.3?} s");
        self.recorded.push(PhaseCpu {
            phase: phase.to_owned(),
            seconds: took,
            cpu_seconds: used,
            speed_probe_seconds: probe,
        });
    }
}
