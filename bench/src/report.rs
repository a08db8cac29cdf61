//! The table of results (`--summarize`, and after each run): one row per N, one per fleet.

use tenantry_testkit::Stats;

use crate::proc::{cores, memory_kib};
use crate::results::{BenchResult, FleetResult, Run};

/// "median (min-max)" of a figure measured in several runs (NaN when the file lacks it).
fn spread(stats: Option<&Stats>) -> String {
    let (median, min, max) =
        stats.map_or((f64::NAN, f64::NAN, f64::NAN), |s| (s.median, s.min, s.max));
    format!("{median:.2} s ({min:.2}-{max:.2})")
}

fn p50_p99(stats: &Stats) -> String {
    format!("{:.0}/{:.0} ms", stats.p50, stats.p99)
}

fn bench_row(r: &BenchResult) -> String {
    format!(
        "| {} | {} | {} | {} | {} | {} | {:.2}x | {:.2}x | {} | {:.2}x | {} | {:.2} s | {:.1} MiB | {} | {} | {} |",
        r.namespaces,
        r.runs,
        spread(Some(&r.floor_post_seconds)),
        spread(Some(&r.floor_apply_seconds)),
        spread(r.floor_post_watched_seconds.as_ref()),
        spread(Some(&r.convergence_seconds)),
        r.convergence_ratio,
        r.convergence_vs_watched,
        spread(Some(&r.propagation_seconds)),
        r.propagation_ratio,
        r.restart_writes,
        r.restart_ready_seconds,
        r.peak_rss_mib,
        p50_p99(&r.latency.label_unselect_ms),
        p50_p99(&r.latency.label_select_ms),
        p50_p99(&r.latency.drift_ms),
    )
}

fn fleet_row(r: &FleetResult) -> String {
    format!(
        "| {} | {} | {:.2} s | {} | {:.1} MiB |",
        r.namespaces,
        r.policies,
        r.convergence_seconds,
        p50_p99(&r.label_flip_ms),
        r.peak_rss_mib,
    )
}

/// Prints the machine, then a table of the single-N results and one of the fleet results.
pub fn print_table(results: &[Run]) {
    let memory = memory_kib().map_or(0.0, |kib| kib as f64 / 1048576.0);
    println!(
        "\nTenantry benchmark ({} cores, {memory:.0} GiB; control plane and controller on the same machine; median (min-max) of the runs)\n",
        cores()
    );
    let single: Vec<&BenchResult> = (results.iter())
        .filter_map(|r| match r {
            Run::Bench(b) => Some(b.as_ref()),
            Run::Fleet(_) => None,
        })
        .collect();
    if !single.is_empty() {
        println!(
            "| N | runs | floor: POST | floor: apply | POST, watched | convergence | vs floor | vs watched | propagation | vs floor | restart writes | restart to Ready | peak RSS | unselect p50/p99 | select p50/p99 | drift p50/p99 |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        for r in single {
            println!("{}", bench_row(r));
        }
    }
    let fleets: Vec<&FleetResult> = (results.iter())
        .filter_map(|r| match r {
            Run::Fleet(f) => Some(f),
            Run::Bench(_) => None,
        })
        .collect();
    if !fleets.is_empty() {
        println!(
            "\n| fleet: namespaces | policies | convergence | label flip p50/p99 | peak RSS |"
        );
        println!("|---|---|---|---|---|");
        for r in fleets {
            println!("{}", fleet_row(r));
        }
    }
}
