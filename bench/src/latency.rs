//! Latencies of one namespace: unselected (all four objects gone), selected again (all four
//! present), and one managed object deleted (a new one in its place).

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{LimitRange, Namespace};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tenantry::api::POLICY_LABEL;
use tenantry_testkit::{Stats, managed_kinds, wait_for};

use crate::cli::Args;
use crate::fixtures::BENCH_LABEL;
use crate::results::Latencies;

/// Milliseconds since `started`.
pub fn ms(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
}

/// How many of the policy's objects the namespace holds, over the three kinds.
async fn held(client: &Client, ns: &str, policy: &str) -> usize {
    let lp = ListParams::default().labels(&format!("{POLICY_LABEL}={policy}"));
    let mut count = 0;
    for resource in managed_kinds() {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
        match api.list_metadata(&lp).await {
            Ok(list) => count += list.items.len(),
            Err(_) => return usize::MAX,
        }
    }
    count
}

/// `args.repetitions` of each latency of namespace `probe` (selected by `run`'s label) under
/// `policy`.
pub async fn latencies(
    client: &Client,
    args: &Args,
    probe: &str,
    run: &str,
    policy: &str,
) -> anyhow::Result<Latencies> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ranges: Api<LimitRange> = Api::namespaced(client.clone(), probe);
    let limit = Duration::from_secs(60);
    let label = |value: Value| Patch::Merge(json!({"metadata": {"labels": {BENCH_LABEL: value}}}));
    let (mut unselect, mut select, mut drift) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..args.repetitions {
        let started = Instant::now();
        namespaces
            .patch(probe, &PatchParams::default(), &label(Value::Null))
            .await?;
        wait_for("unselection", limit, || async {
            held(client, probe, policy).await == 0
        })
        .await?;
        unselect.push(ms(started));
        let started = Instant::now();
        namespaces
            .patch(probe, &PatchParams::default(), &label(json!(run)))
            .await?;
        wait_for("selection", limit, || async {
            held(client, probe, policy).await == 4
        })
        .await?;
        select.push(ms(started));
        let uid = ranges.get("defaults").await?.uid();
        let started = Instant::now();
        ranges.delete("defaults", &DeleteParams::default()).await?;
        wait_for("drift repair", limit, || async {
            let repaired = ranges.get_opt("defaults").await.ok().flatten();
            repaired.is_some_and(|r| r.uid() != uid)
        })
        .await?;
        drift.push(ms(started));
    }
    Ok(Latencies {
        label_unselect_ms: Stats::of(&unselect),
        label_select_ms: Stats::of(&select),
        drift_ms: Stats::of(&drift),
    })
}
