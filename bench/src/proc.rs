//! The kernel's accounting (/proc), not anything the processes report: CPU-seconds of the
//! control plane's processes and of a client, the machine's idle and steal time, peak RSS, and
//! the machine itself (cores, memory).

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::LazyLock;

/// Clock ticks per second (`getconf CLK_TCK`), the unit of /proc's CPU times.
static TICKS: LazyLock<f64> = LazyLock::new(|| {
    let out = Command::new("getconf").arg("CLK_TCK").output();
    out.ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
});

/// CPU-seconds (user and system) process `pid` has used so far.
fn process_cpu(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may hold spaces): utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / *TICKS)
}

/// CPU-seconds each process of the control plane (pid files in `$TENANTRY_STATE`, as
/// `hack/cluster.sh` writes them) and `client` have used so far, by the kernel's accounting
/// (/proc), not by anything the processes report: where a phase's work went.
pub fn cpu_seconds(client: u32) -> BTreeMap<String, f64> {
    let state = std::env::var("TENANTRY_STATE").unwrap_or_else(|_| ".tenantry".into());
    let mut used = BTreeMap::new();
    for process in ["etcd", "kube-apiserver", "kube-controller-manager"] {
        let pid = std::fs::read_to_string(format!("{state}/{process}.pid")).ok();
        if let Some(cpu) = pid
            .and_then(|p| p.trim().parse().ok())
            .and_then(process_cpu)
        {
            used.insert(process.to_string(), cpu);
        }
    }
    if let Some(cpu) = process_cpu(client) {
        used.insert("client".to_string(), cpu);
    }
    // The whole machine's idle time, and its steal: time the hypervisor ran something else while
    // this machine had work (the 8th figure of /proc/stat's cpu line). A phase with steal was
    // slowed by a neighbour, not by anything measured here.
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    for (key, field) in [("machine idle", 3), ("machine steal", 7)] {
        if let Some(ticks) = cpu.get(field) {
            used.insert(key.to_string(), ticks / *TICKS);
        }
    }
    used
}

/// What each of [`cpu_seconds`]'s figures grew by from `before` to `after`, to 0.01 s.
pub fn cpu_used(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
) -> BTreeMap<String, f64> {
    (after.iter())
        .map(|(k, v)| {
            let grew = v - before.get(k).copied().unwrap_or(0.0);
            (k.clone(), (grew * 100.0).round() / 100.0)
        })
        .collect()
}

/// Peak resident set size (VmHWM) of process `pid`, MiB; NaN when it cannot be read.
pub fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
        .unwrap_or(f64::NAN)
}

/// The machine's cores (as this process may use them).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

/// The machine's memory (MemTotal), KiB.
pub fn memory_kib() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    meminfo
        .lines()
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
