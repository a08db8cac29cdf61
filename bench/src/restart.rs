//! A restart with everything converged, checked from outside: resourceVersions and
//! managedFields of every managed object, of the policy and of Tenantry's Events, before the
//! restart and after the restarted controller has reacted to a canary namespace (so its first
//! reconciles are done) and 10 s more. Nothing may change.

use std::time::{Duration, Instant};

use anyhow::bail;
use k8s_openapi::api::core::v1::{LimitRange, Namespace};
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tenantry::api::TenantPolicy;
use tenantry_testkit::{
    Existing, Operator, changed, create_namespaces, labels, managed_state, wait_for,
};

use crate::cli::Args;
use crate::controller::{await_ready, start};
use crate::fixtures::{CANARY_LABEL, lr_limits, policy_object};
use crate::quiet::quiet;

/// What the restart showed, and the restarted controller (still running).
pub struct Restart {
    pub writes: usize,
    pub checked: usize,
    pub ready_seconds: f64,
    pub reacted_seconds: f64,
    pub operator: Operator,
}

/// Restarts the controller with everything converged and counts, from the API server, what the
/// restarted one wrote: nothing may change. A canary policy (selecting nothing yet) exists before
/// the restart; afterwards a canary namespace it selects appears, and its objects prove the
/// restarted controller is reconciling; 10 s more give any late write time to show.
pub async fn restart(
    client: &Client,
    args: &Args,
    mut operator: Operator,
    run: &str,
    names: &[String],
) -> anyhow::Result<Restart> {
    let n = names.len();
    let api: Api<TenantPolicy> = Api::all(client.clone());
    let canary = format!("canary-{run}");
    let spec = json!({"namespaceSelector": {"matchLabels": {CANARY_LABEL: run}},
        "limitRanges": [{"name": "canary", "limits": lr_limits("250m")}]});
    api.create(&PostParams::default(), &policy_object(&canary, spec)?)
        .await?;
    await_ready(&api, &canary, 1, 0, Duration::from_secs(60)).await?;
    // kube-controller-manager first finishes its status writes (quotas after propagation).
    quiet(client, names, "the restart").await?;
    let before = managed_state(client, &canary).await?;
    operator.stop();
    let started = Instant::now();
    let operator = start(args).await?;
    let ready_seconds = started.elapsed().as_secs_f64();
    let limit = Duration::from_secs(120 + n as u64 / 10);
    wait_for(
        "the restarted controller's first reconciles",
        limit,
        || async {
            operator.reconciles_finished() >= 2.0 // the policy and the canary
        },
    )
    .await?;
    // A label no policy selects on, on a namespace the policy selects: a namespace change
    // triggers the policies selecting it, so the policy is reconciled once more.
    let finished = operator.reconciles_finished();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let poke = json!({"metadata": {"labels": {"bench.tenantry.io/poke": format!("{ready_seconds:.6}").replace('.', "-")}}});
    namespaces
        .patch(&names[0], &PatchParams::default(), &Patch::Merge(poke))
        .await?;
    wait_for(
        "a reconcile of the policy after the label change",
        limit,
        || async { operator.reconciles_finished() >= finished + 1.0 },
    )
    .await?;
    let canary_ns = format!("{canary}-ns");
    let canary_labels = |_| labels(&[(CANARY_LABEL, run)]);
    let one = std::slice::from_ref(&canary_ns);
    create_namespaces(client, one, canary_labels, 1, Existing::Fail).await?;
    await_ready(&api, &canary, 1, 1, limit).await?;
    let ranges: Api<LimitRange> = Api::namespaced(client.clone(), &canary_ns);
    wait_for("the canary's LimitRange", limit, || async {
        ranges.get_opt("canary").await.ok().flatten().is_some()
    })
    .await?;
    let reacted_seconds = started.elapsed().as_secs_f64();
    // An observation window, not a stand-in for a condition: writes would show within it.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = managed_state(client, &canary).await?;
    let changed = changed(&before, &after);
    if !changed.is_empty() {
        bail!(
            "the restarted controller wrote {} objects (of {} watched), e.g. {:?}",
            changed.len(),
            before.len(),
            changed.iter().take(5).collect::<Vec<_>>()
        );
    }
    eprintln!(
        "[bench] restart: Ready in {ready_seconds:.2}s, canary reconciled at {reacted_seconds:.2}s, 0 of {} objects written",
        before.len()
    );
    api.delete(&canary, &DeleteParams::default()).await?;
    namespaces
        .delete(&canary_ns, &DeleteParams::background())
        .await?;
    Ok(Restart {
        writes: changed.len(),
        checked: before.len(),
        ready_seconds,
        reacted_seconds,
        operator,
    })
}
