//! `--fleet`: the shape real clusters have. One baseline policy over every namespace plus one
//! team policy per 20 namespaces overriding some kinds ([`crate::fixtures::team_spec`]); its
//! convergence, the end state, and label flips of a namespace between two teams, each traced.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::bail;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tenantry::api::{MANAGED_SELECTOR, POLICY_LABEL, TenantPolicy};
use tenantry_testkit::{Existing, Stats, create_namespaces, labels, managed_kinds, wait_for};

use crate::cli::Args;
use crate::controller::start;
use crate::fixtures::{BENCH_LABEL, POLICY_SHARD, TEAM_LABEL, fleet_expected, policy_object};
use crate::fixtures::{policy_spec, team_spec};
use crate::latency::ms;
use crate::proc::{cpu_seconds, cpu_used, peak_rss_mib};
use crate::quiet::quiet;
use crate::results::{Change, FleetResult, FlipTrace};

/// What a namespace holds: {(kind/name, owning policy)}.
type Held = BTreeSet<(String, String)>;

/// What the namespaces hold: ns -> {(kind/name, policy)}.
async fn holdings(client: &Client, lp: &ListParams) -> anyhow::Result<BTreeMap<String, Held>> {
    let mut found: BTreeMap<String, Held> = BTreeMap::new();
    for resource in managed_kinds() {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        for o in api.list_metadata(lp).await? {
            let policy = o.labels().get(POLICY_LABEL).cloned().unwrap_or_default();
            let key = format!("{}/{}", resource.kind, o.name_any());
            found
                .entry(o.namespace().unwrap_or_default())
                .or_default()
                .insert((key, policy));
        }
    }
    Ok(found)
}

/// The managed objects in `namespace`; `None` when a list failed.
async fn held_in(client: &Client, namespace: &str) -> Option<Held> {
    let lp = ListParams::default().labels(MANAGED_SELECTOR);
    let mut have = BTreeSet::new();
    for r in managed_kinds() {
        let api = Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &r);
        for o in api.list_metadata(&lp).await.ok()? {
            let policy = o.labels().get(POLICY_LABEL).cloned().unwrap_or_default();
            have.insert((format!("{}/{}", r.kind, o.name_any()), policy));
        }
    }
    Some(have)
}

/// The run's policies all describe their generation with every namespace they select ready.
async fn fleet_converged(policies: &Api<TenantPolicy>, run: &str, teams: usize, n: usize) -> bool {
    let lp = ListParams::default().labels(&format!("{BENCH_LABEL}={POLICY_SHARD}"));
    let Ok(list) = policies.list(&lp).await else {
        return false;
    };
    let mine: Vec<&TenantPolicy> = list
        .items
        .iter()
        .filter(|p| p.name_any().contains(run))
        .collect();
    mine.len() == teams + 1
        && mine.iter().all(|p| {
            let want = if p.name_any().starts_with("baseline") {
                n
            } else {
                20
            };
            p.status.as_ref().is_some_and(|s| {
                s.observed_generation == p.metadata.generation
                    && s.ready_namespaces as usize == want
                    && s.selected_namespaces as usize == want
            })
        })
}

/// The fleet shape: a baseline over all N namespaces, N/20 team policies over 20 each.
pub async fn run_fleet(client: &Client, args: &Args, n: usize) -> anyhow::Result<FleetResult> {
    let run = format!("f{n}-{}", std::process::id());
    let teams = n / 20;
    let names: Vec<String> = (0..teams * 20)
        .map(|i| format!("fleet-{run}-{i}"))
        .collect();
    eprintln!(
        "[fleet N={n}] creating {} namespaces, {teams} teams",
        names.len()
    );
    let label = |i| {
        labels(&[
            (BENCH_LABEL, &run),
            (TEAM_LABEL, &format!("{run}-{}", i / 20)),
        ])
    };
    create_namespaces(client, &names, label, args.concurrency, Existing::Fail).await?;
    let mut operator = start(args).await?;
    let policies: Api<TenantPolicy> = Api::all(client.clone());
    let baseline = format!("baseline-{run}");
    quiet(client, &names, "fleet convergence").await?;
    let started = Instant::now();
    let mut all = vec![policy_object(
        &baseline,
        policy_spec(json!({BENCH_LABEL: run}), "20"),
    )?];
    for team in 0..teams {
        all.push(policy_object(
            &format!("team-{run}-{team}"),
            team_spec(&run, team),
        )?);
    }
    futures::stream::iter(all)
        .map(|p| {
            let policies = policies.clone();
            async move {
                policies
                    .create(&PostParams::default(), &p)
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(args.concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    let limit = Duration::from_secs(300 + n as u64 / 2);
    let n_sel = names.len();
    let poll = || async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        fleet_converged(&policies, &run, teams, n_sel).await
    };
    wait_for("fleet convergence", limit, poll).await?;
    let convergence = started.elapsed().as_secs_f64();
    eprintln!("[fleet N={n}] convergence {convergence:.2}s");
    let found = holdings(client, &ListParams::default().labels(MANAGED_SELECTOR)).await?;
    for (i, ns) in names.iter().enumerate() {
        if found.get(ns) != Some(&fleet_expected(&baseline, i / 20, &run)) {
            bail!("fleet end state: {ns} holds {:?}", found.get(ns));
        }
    }
    let (flips, traces) = fleet_flips(client, args, &names[0], &run, &baseline).await?;
    let rss = peak_rss_mib(operator.pid());
    operator.stop();
    Ok(FleetResult {
        fleet: true,
        namespaces: names.len(),
        policies: teams + 1,
        convergence_seconds: convergence,
        label_flip_ms: Stats::of(&flips),
        label_flip_traces: traces,
        peak_rss_mib: rss,
        end_state_verified: true,
    })
}

/// A namespace moved between team 0 and team 1 and back: until it holds exactly what the new
/// team's policies win there. Each flip's trace says when it started (UTC, to find it in the
/// controller's log), when each object it waited for came or went, and what every process and
/// the machine's steal used meanwhile: where a slow one's time went.
async fn fleet_flips(
    client: &Client,
    args: &Args,
    probe: &str,
    run: &str,
    baseline: &str,
) -> anyhow::Result<(Vec<f64>, Vec<FlipTrace>)> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let (mut flips, mut traces) = (Vec::new(), Vec::new());
    for i in 0..args.repetitions {
        let team = (i + 1) % 2;
        // Changes are traced against what the namespace held before the flip.
        let mut before = held_in(client, probe).await;
        let utc = k8s_openapi::jiff::Timestamp::now().to_string();
        let cpu_before = cpu_seconds(std::process::id());
        let started = Instant::now();
        let patch = json!({"metadata": {"labels": {TEAM_LABEL: format!("{run}-{team}")}}});
        namespaces
            .patch(probe, &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        let want = fleet_expected(baseline, team, run);
        let mut changes = Vec::new();
        loop {
            if let Some(have) = held_in(client, probe).await {
                let at = ms(started).round();
                for (object, policy) in before.as_ref().unwrap_or(&have).symmetric_difference(&have)
                {
                    changes.push(Change {
                        ms: at,
                        came: have.contains(&(object.clone(), policy.clone())),
                        object: object.clone(),
                        policy: policy.clone(),
                    });
                }
                if have == want {
                    break;
                }
                before = Some(have);
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("timed out after 60 s waiting for the flipped namespace: {changes:?}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let took = ms(started);
        let used = cpu_used(&cpu_before, &cpu_seconds(std::process::id()));
        traces.push(FlipTrace {
            started_utc: utc,
            ms: took,
            changes,
            cpu_seconds: used,
        });
        flips.push(took);
    }
    Ok((flips, traces))
}
