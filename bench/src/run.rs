//! One N: N namespaces; an unmeasured warm-up floor; then floor and convergence/propagation
//! alternate (F C | C F | F C ...); then the restart, the latencies, a last check of the end
//! state, and the figures.

use std::time::Duration;

use anyhow::Context as _;
use kube::Client;
use tenantry_testkit::{Existing, Stats, create_namespaces, labels, percentile};

use crate::cli::Args;
use crate::fixtures::BENCH_LABEL;
use crate::floors::{Floors, floor_phase, warm_up};
use crate::latency::latencies;
use crate::phases::{Convergence, convergence, teardown, verify_end_state};
use crate::probe::Phases;
use crate::proc::peak_rss_mib;
use crate::restart::restart;
use crate::results::BenchResult;

const ORDER: &str = "an unmeasured POST floor first (warm-up); then floor (POST, apply and watched POST, in an order rotating with the run) and convergence alternate: F C | C F | F C ...";

/// Runs N = `n` on a fresh control plane.
pub async fn run_one(client: &Client, args: &Args, n: usize) -> anyhow::Result<BenchResult> {
    let run = format!("n{n}-{}", std::process::id());
    let names: Vec<String> = (0..n).map(|i| format!("bench-{run}-{i}")).collect();
    eprintln!("[bench N={n}] creating {n} namespaces");
    let label = |_| labels(&[(BENCH_LABEL, &run)]);
    create_namespaces(client, &names, label, args.concurrency, Existing::Fail).await?;
    warm_up(client, &names, args.concurrency).await?;
    let mut phases = Phases::default();
    let mut floors = Floors::default();
    let (mut conv, mut prop) = (Vec::new(), Vec::new());
    let mut rss = 0.0f64;
    let limit = Duration::from_secs(120 + n as u64 / 5);
    let mut last = None;
    // Alternating order: floor first in even runs, convergence first in odd ones (F C | C F | F C).
    for index in 0..args.runs {
        if index % 2 == 0 {
            floor_phase(client, &names, args, index, &mut floors, &mut phases).await?;
        }
        let c = convergence(client, args, &names, &run, index, &mut phases).await?;
        conv.push(c.convergence);
        prop.push(c.propagation);
        rss = rss.max(peak_rss_mib(c.operator.pid()));
        if index + 1 == args.runs {
            last = Some(c);
            break;
        }
        teardown(client, c.operator, &c.policy, limit).await?;
        if index % 2 == 1 {
            floor_phase(client, &names, args, index, &mut floors, &mut phases).await?;
        }
    }
    let Convergence {
        operator, policy, ..
    } = last.context("at least one run")?;
    let mut restarted = restart(client, args, operator, &run, &names).await?;
    let latency = latencies(client, args, &names[0], &run, &policy).await?;
    verify_end_state(client, &policy, &names, "25").await?;
    rss = rss.max(peak_rss_mib(restarted.operator.pid()));
    restarted.operator.stop();
    let Floors {
        post,
        apply,
        watched,
    } = floors;
    let (post_m, apply_m) = (percentile(&post, 0.5), percentile(&apply, 0.5));
    let floor_m = post_m.min(apply_m);
    let paired: Vec<f64> = conv.iter().zip(&post).map(|(c, f)| c / f).collect();
    Ok(BenchResult {
        namespaces: n,
        objects: 4 * n,
        runs: args.runs,
        order: ORDER.into(),
        floor_post_seconds: Stats::of(&post),
        floor_apply_seconds: Stats::of(&apply),
        floor_verb: if post_m <= apply_m { "POST" } else { "APPLY" }.into(),
        floor_seconds: floor_m,
        floor_post_watched_seconds: Some(Stats::of(&watched)),
        convergence_seconds: Stats::of(&conv),
        convergence_ratio: percentile(&conv, 0.5) / floor_m,
        convergence_vs_watched: percentile(&conv, 0.5) / percentile(&watched, 0.5),
        convergence_paired_ratio: percentile(&paired, 0.5),
        propagation_seconds: Stats::of(&prop),
        propagation_ratio: percentile(&prop, 0.5) / floor_m,
        restart_writes: restarted.writes,
        restart_objects_checked: restarted.checked,
        restart_ready_seconds: restarted.ready_seconds,
        restart_reacted_seconds: restarted.reacted_seconds,
        peak_rss_mib: rss,
        end_state_verified: true,
        phase_cpu: phases.recorded,
        latency,
    })
}
