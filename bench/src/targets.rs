//! The targets (`tenantry-bench --help` lists them): what `--summarize` fails on. Below
//! N = 1,000 (the CI smoke run) only correctness counts.

use crate::cli::Args;
use crate::results::Run;

/// Figures below this N are a smoke run: correctness is checked, targets are not.
pub const GATE_FROM: usize = 1000;

/// The targets a result misses.
pub fn missed(run: &Run, args: &Args) -> Vec<String> {
    let n = run.namespaces();
    // (end state verified, objects written on restart, ratios to the floor, p99 latencies, RSS)
    let (verified, restart_writes, ratios, latencies, rss) = match run {
        Run::Bench(r) => {
            let ratios = vec![
                ("convergence_ratio", r.convergence_ratio),
                ("propagation_ratio", r.propagation_ratio),
            ];
            let latency = &r.latency;
            let latencies = vec![
                ("label_unselect_ms", latency.label_unselect_ms.p99),
                ("label_select_ms", latency.label_select_ms.p99),
                ("drift_ms", latency.drift_ms.p99),
            ];
            let restart_writes = Some(r.restart_writes);
            (
                r.end_state_verified,
                restart_writes,
                ratios,
                latencies,
                r.peak_rss_mib,
            )
        }
        // The fleet has no floor (so no ratios) and no restart.
        Run::Fleet(r) => {
            let latencies = vec![("label_flip_ms", r.label_flip_ms.p99)];
            (
                r.end_state_verified,
                None,
                Vec::new(),
                latencies,
                r.peak_rss_mib,
            )
        }
    };
    let mut missed = Vec::new();
    if !verified {
        missed.push(format!("N={n}: end state not verified"));
    }
    if let Some(writes) = restart_writes.filter(|w| *w != 0) {
        missed.push(format!("N={n}: restart writes {writes}"));
    }
    if n < GATE_FROM {
        return missed;
    }
    for (key, ratio) in ratios {
        if ratio.is_nan() || ratio > args.target_ratio {
            missed.push(format!(
                "N={n}: {key} {ratio:.2}x > {:.2}x",
                args.target_ratio
            ));
        }
    }
    for (key, p99) in latencies {
        if p99 > args.target_p99_ms {
            missed.push(format!(
                "N={n}: {key} p99 {p99:.0} ms > {:.0} ms",
                args.target_p99_ms
            ));
        }
    }
    if n >= 10_000 && (rss.is_nan() || rss > args.target_rss_mib) {
        missed.push(format!(
            "N={n}: peak RSS {rss:.1} MiB > {:.0} MiB",
            args.target_rss_mib
        ));
    }
    missed
}
