//! Machine, commit and command of a run, for the committed results.

use std::process::Command;

use crate::proc::{cores, memory_kib};
use crate::results::{Machine, Provenance};

/// `program args`' stdout, trimmed; empty when it cannot run.
fn output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// The provenance of the run now finishing.
pub fn provenance() -> Provenance {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    Provenance {
        machine: Machine {
            cores: cores(),
            cpu,
            kernel: output("uname", &["-r"]),
            memory_kib: memory_kib(),
        },
        commit: output("git", &["rev-parse", "HEAD"]),
        dirty: !output("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        finished_utc: output("date", &["-u", "+%FT%TZ"]),
    }
}
