//! tenantry-bench's command line.

use std::path::PathBuf;

use clap::Parser;
use tenantry::controller::WatchEncoding;

#[derive(Parser, Debug)]
#[command(
    name = "tenantry-bench",
    about = "Benchmark Tenantry against the API server's own floor"
)]
pub struct Args {
    /// Namespace counts to run, e.g. 1000,3000.
    #[arg(long, value_delimiter = ',', default_value = "1000,3000")]
    pub namespaces: Vec<usize>,
    /// Measured runs of the floor and of convergence/propagation (the table shows the median).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Repetitions of each latency measurement.
    #[arg(long, default_value_t = 100)]
    pub repetitions: usize,
    /// The tenantry binary to measure (a release build).
    #[arg(long, default_value = "target/release/tenantry")]
    pub tenantry: PathBuf,
    /// How the controller's watches of managed objects are encoded (its `--watch-encoding`), and
    /// the watched floor's.
    #[arg(long, value_enum, default_value = "protobuf")]
    pub watch_encoding: WatchEncoding,
    /// Writes in flight, for the floor and for the controller alike.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Where to write the JSON results (bench-N.json, fleet-N.json).
    #[arg(long, default_value = "target/bench")]
    pub out: PathBuf,
    /// The fleet shape instead: a baseline policy over all N namespaces and N/20 team policies.
    #[arg(long)]
    pub fleet: bool,
    /// Target: convergence and propagation at most this many times the floor (N >= 1,000).
    #[arg(long, default_value_t = 1.10)]
    pub target_ratio: f64,
    /// Target: p99 of every latency at most this (N >= 1,000).
    #[arg(long, default_value_t = 1000.0)]
    pub target_p99_ms: f64,
    /// Target: peak RSS of the controller at N >= 10,000.
    #[arg(long, default_value_t = 64.0)]
    pub target_rss_mib: f64,
    /// Profiling aid: only one POST floor over the namespaces labelled bench.tenantry.io/run=VALUE
    /// (e.g. under the controller's service account, to compare both in the audit log); its
    /// objects are left in place (labelled bench.tenantry.io/floor=true).
    #[arg(long, hide = true)]
    pub floor_only: Option<String>,
    /// Profiling aid: delete what --floor-only left.
    #[arg(long, hide = true)]
    pub floor_cleanup: bool,
    /// Profiling aid for --floor-only: write the namespaces in hashed order (as the controller's
    /// cache yields them) instead of by name.
    #[arg(long, hide = true)]
    pub floor_hashed: bool,
    /// Print the table of earlier runs' JSON files and check the targets instead of running.
    #[arg(long, num_args = 1..)]
    pub summarize: Vec<PathBuf>,
}
