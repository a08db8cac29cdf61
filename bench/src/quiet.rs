//! The quiet gate before each measured phase: every phase starts equal, once
//! kube-controller-manager has caught up with what the last one left (quota status, PDB status,
//! service accounts and root CA config maps of every namespace) and the API server's write rate
//! is back to idle.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::bail;
use k8s_openapi::api::core::v1::{ConfigMap, ResourceQuota, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use tenantry_testkit::{pdb_observed, quota_current};

use crate::apiserver::writes_served;

/// Why the control plane is not quiet yet, if it is not.
async fn not_quiet(client: &Client, names: &[String]) -> anyhow::Result<Option<String>> {
    let lp = ListParams::default();
    let quotas = Api::<ResourceQuota>::all(client.clone()).list(&lp).await?;
    let behind = quotas.iter().filter(|q| !quota_current(q)).count();
    if behind > 0 {
        return Ok(Some(format!("{behind} quotas without status.hard")));
    }
    let pdbs = Api::<PodDisruptionBudget>::all(client.clone())
        .list(&lp)
        .await?;
    let behind = pdbs.iter().filter(|p| !pdb_observed(p)).count();
    if behind > 0 {
        return Ok(Some(format!("{behind} PDBs not observed")));
    }
    let accounts = Api::<ServiceAccount>::all(client.clone())
        .list_metadata(&ListParams::default().fields("metadata.name=default"))
        .await?;
    let maps = Api::<ConfigMap>::all(client.clone())
        .list_metadata(&ListParams::default().fields("metadata.name=kube-root-ca.crt"))
        .await?;
    let in_namespaces =
        |items: Vec<Option<String>>| -> BTreeSet<String> { items.into_iter().flatten().collect() };
    let accounts = in_namespaces(accounts.items.iter().map(|o| o.namespace()).collect());
    let maps = in_namespaces(maps.items.iter().map(|o| o.namespace()).collect());
    for (what, present) in [
        ("service account default", accounts),
        ("kube-root-ca.crt", maps),
    ] {
        let missing = names.iter().filter(|n| !present.contains(*n)).count();
        if missing > 0 {
            return Ok(Some(format!("{missing} namespaces without {what}")));
        }
    }
    // Idle: the API server's own background writes (leases) only, over a window.
    let before = writes_served(client).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let writes = writes_served(client).await? - before;
    if writes > 6.0 {
        return Ok(Some(format!("{writes} API writes in 3 s")));
    }
    Ok(None)
}

/// The quiet gate before each measured phase (`before` names it); returns how long it took.
pub async fn quiet(client: &Client, names: &[String], before: &str) -> anyhow::Result<f64> {
    let started = Instant::now();
    let limit = Duration::from_secs(180 + names.len() as u64 / 10);
    loop {
        match not_quiet(client, names).await? {
            None => break,
            Some(why) if started.elapsed() > limit => bail!("not quiet in {limit:?}: {why}"),
            Some(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    let took = started.elapsed().as_secs_f64();
    eprintln!("[bench] quiet before {before} after {took:.1}s");
    Ok(took)
}
