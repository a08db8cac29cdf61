//! The results, as written to bench-N.json and fleet-N.json (and read back by `--summarize` and
//! hack/bench-pool.py): the field names are the files' keys. Written through a JSON value, so the
//! keys come out sorted, as in the committed bench/results/*.json. Fields newer than some
//! committed files are optional when read; a figure that is null (NaN or infinite when written)
//! reads as NaN, which misses every target.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use serde::{Deserialize, Deserializer, Serialize};
use tenantry_testkit::Stats;

/// One measured phase: how long it took, the CPU-seconds each process used meanwhile
/// ([`crate::proc::cpu_seconds`]), and the speed probe before and after it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PhaseCpu {
    pub phase: String,
    pub seconds: f64,
    pub cpu_seconds: BTreeMap<String, f64>,
    pub speed_probe_seconds: [f64; 2],
}

/// Latencies of one namespace, milliseconds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Latencies {
    /// Unselected: until all four objects are gone.
    pub label_unselect_ms: Stats,
    /// Selected again: until all four are present.
    pub label_select_ms: Stats,
    /// A managed object deleted: until a new one is in its place.
    pub drift_ms: Stats,
}

/// One N: the floors, convergence and propagation against them, the restart, latencies, memory.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BenchResult {
    pub namespaces: usize,
    pub objects: usize,
    pub runs: usize,
    /// How the measured phases were ordered.
    pub order: String,
    pub floor_post_seconds: Stats,
    pub floor_apply_seconds: Stats,
    /// The faster floor ("POST" or "APPLY"), and its median.
    pub floor_verb: String,
    #[serde(deserialize_with = "nan_if_null")]
    pub floor_seconds: f64,
    /// Not a floor: POSTs beside a controller's watches of the managed kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor_post_watched_seconds: Option<Stats>,
    pub convergence_seconds: Stats,
    /// Median convergence / the floor (gated).
    #[serde(deserialize_with = "nan_if_null")]
    pub convergence_ratio: f64,
    /// Median convergence / median watched POST floor.
    #[serde(default = "nan", deserialize_with = "nan_if_null")]
    pub convergence_vs_watched: f64,
    /// Not gated: the median of each convergence against the POST floor of its own run.
    #[serde(default = "nan", deserialize_with = "nan_if_null")]
    pub convergence_paired_ratio: f64,
    pub propagation_seconds: Stats,
    /// Median propagation / the floor (gated).
    #[serde(deserialize_with = "nan_if_null")]
    pub propagation_ratio: f64,
    /// Objects the restarted controller wrote (must be 0), of those checked.
    pub restart_writes: usize,
    pub restart_objects_checked: usize,
    #[serde(deserialize_with = "nan_if_null")]
    pub restart_ready_seconds: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub restart_reacted_seconds: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub peak_rss_mib: f64,
    pub end_state_verified: bool,
    #[serde(default)]
    pub phase_cpu: Vec<PhaseCpu>,
    #[serde(flatten)]
    pub latency: Latencies,
}

/// The fleet shape: a baseline policy over all namespaces and a team policy per 20.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FleetResult {
    /// Always true: what tells a fleet file from a bench file.
    pub fleet: bool,
    pub namespaces: usize,
    pub policies: usize,
    pub convergence_seconds: f64,
    pub label_flip_ms: Stats,
    pub label_flip_traces: Vec<FlipTrace>,
    #[serde(deserialize_with = "nan_if_null")]
    pub peak_rss_mib: f64,
    pub end_state_verified: bool,
}

/// Where one label flip's time went.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FlipTrace {
    /// When it started (UTC, to find it in the controller's log).
    pub started_utc: String,
    pub ms: f64,
    /// When each object it waited for came or went.
    pub changes: Vec<Change>,
    /// What every process and the machine's steal used meanwhile.
    pub cpu_seconds: BTreeMap<String, f64>,
}

/// An object that came to (or went from) the flipped namespace, `ms` after the flip.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Change {
    pub ms: f64,
    pub came: bool,
    /// kind/name.
    pub object: String,
    /// The policy owning it.
    pub policy: String,
}

/// The machine a run was measured on.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    pub kernel: String,
    pub memory_kib: Option<u64>,
}

/// Machine, commit and command of a run, for the committed results.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Provenance {
    pub machine: Machine,
    pub commit: String,
    /// Tracked files differed from the commit.
    pub dirty: bool,
    pub command: String,
    pub finished_utc: String,
}

/// A result file: one N, or the fleet.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum Run {
    Bench(Box<BenchResult>),
    Fleet(FleetResult),
}

/// What a run writes: its result and its provenance, side by side in one JSON object.
#[derive(Clone, Debug, Serialize)]
pub struct Recorded<'a> {
    #[serde(flatten)]
    pub result: &'a Run,
    #[serde(flatten)]
    pub provenance: Provenance,
}

impl Run {
    /// Reads a result file (`"fleet": true` tells the shape).
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// A result file's text as the shape it is.
    pub fn parse(text: &str) -> serde_json::Result<Self> {
        #[derive(Deserialize)]
        struct Shape {
            fleet: Option<bool>,
        }
        let shape: Shape = serde_json::from_str(text)?;
        if shape.fleet == Some(true) {
            serde_json::from_str(text).map(Run::Fleet)
        } else {
            serde_json::from_str(text).map(Run::Bench)
        }
    }

    pub fn namespaces(&self) -> usize {
        match self {
            Run::Bench(r) => r.namespaces,
            Run::Fleet(r) => r.namespaces,
        }
    }

    pub fn is_fleet(&self) -> bool {
        matches!(self, Run::Fleet(_))
    }
}

/// `value` as pretty JSON with sorted keys (through a JSON value, whose objects are sorted maps).
pub fn to_json(value: &impl Serialize) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(&serde_json::to_value(value)?)?)
}

fn nan() -> f64 {
    f64::NAN
}

/// A figure written as null (serde_json writes NaN and infinities so) reads as NaN.
fn nan_if_null<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// Every committed bench-N.json reads as a single-N result and writes back the same keys,
    /// values and key order.
    #[test]
    fn committed_results_read_and_write_back() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
        let mut read = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if !name.starts_with("bench-") || name.starts_with("bench-shared") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let run = Run::read(&path).unwrap();
            assert!(!run.is_fleet(), "{name}");
            let provenance: Provenance = serde_json::from_str(&text).unwrap();
            let recorded = Recorded {
                result: &run,
                provenance,
            };
            let written = to_json(&recorded).unwrap();
            let original: Value = serde_json::from_str(&text).unwrap();
            let parsed: Value = serde_json::from_str(&written).unwrap();
            for (key, value) in parsed.as_object().unwrap() {
                match original.get(key) {
                    Some(was) => assert_eq!(was, value, "{name}: {key}"),
                    // What older files lack is written as null (a NaN figure) or [] (no phases).
                    None => assert!(
                        value.is_null() || value == &json!([]),
                        "{name}: {key} added as {value}"
                    ),
                }
            }
            let notes = ["note", "measured_commit"]; // added by hand to some committed files
            for key in original.as_object().unwrap().keys() {
                let kept = notes.contains(&key.as_str()) || parsed.get(key).is_some();
                assert!(kept, "{name}: {key} lost");
            }
            // The same layout: top-level keys in the same (sorted) order. (Not byte for byte:
            // without serde_json's float_roundtrip, a float read back may be one ulp off.)
            let keys = |text: &str| -> Vec<String> {
                (text.lines())
                    .filter_map(|l| l.strip_prefix("  \""))
                    .filter_map(|l| l.split_once('"').map(|(k, _)| k.to_owned()))
                    .filter(|k| !notes.contains(&k.as_str()))
                    .collect()
            };
            let (was, now) = (keys(&text), keys(&written));
            let now: Vec<String> = now.into_iter().filter(|k| was.contains(k)).collect();
            assert_eq!(was, now, "{name}: key order");
            read += 1;
        }
        assert!(read > 0, "no bench-N.json in {}", dir.display());
    }

    /// A fleet file as the untyped bench wrote it (json! with these keys) reads as a fleet and
    /// writes back the same.
    #[test]
    fn fleet_results_keep_their_keys() {
        let stats = json!({"p50": 2.0, "p99": 3.0, "median": 2.0, "min": 1.0, "max": 3.0, "samples": [1.0, 2.0, 3.0]});
        let change = json!({"ms": 12.0, "came": true, "object": "LimitRange/defaults", "policy": "baseline-x"});
        let trace = json!({"started_utc": "2026-01-01T00:00:00Z", "ms": 40.5, "changes": [change], "cpu_seconds": {"client": 0.01}});
        let file = json!({
            "fleet": true, "namespaces": 10000, "policies": 501,
            "convergence_seconds": 63.2, "label_flip_ms": stats,
            "label_flip_traces": [trace], "peak_rss_mib": null, "end_state_verified": true,
            "machine": {"cores": 2, "cpu": "x", "kernel": "6", "memory_kib": 1}, "commit": "c",
            "dirty": false, "command": "tenantry-bench --fleet", "finished_utc": "t",
        });
        let run = Run::parse(&file.to_string()).unwrap();
        let Run::Fleet(fleet) = &run else {
            panic!("not a fleet: {run:?}")
        };
        assert!(fleet.peak_rss_mib.is_nan());
        assert_eq!(
            fleet.label_flip_traces[0].changes[0].object,
            "LimitRange/defaults"
        );
        let provenance = serde_json::from_value(file.clone()).unwrap();
        let written = to_json(&Recorded {
            result: &run,
            provenance,
        })
        .unwrap();
        assert_eq!(serde_json::from_str::<Value>(&written).unwrap(), file);
    }
}
