//! The controller under test: a `tenantry run` process of the release build
//! ([`tenantry_testkit::Operator`]), with the floor's concurrency and watch encoding, and
//! waiting for what its policies' status says.

use std::time::Duration;

use anyhow::Context as _;
use kube::api::Api;
use kube::runtime::wait::await_condition;
use tenantry::api::TenantPolicy;
use tenantry_testkit::{Launch, Operator, free_port};

use crate::cli::Args;
use crate::fixtures::{BENCH_LABEL, POLICY_SHARD};

/// Starts `args.tenantry` on the bench's policies (log: `<out>/tenantry-<port>.log`) and waits
/// until it is ready.
pub async fn start(args: &Args) -> anyhow::Result<Operator> {
    let port = free_port();
    let launch = Launch {
        binary: args.tenantry.clone(),
        port,
        label: BENCH_LABEL.into(),
        shard: POLICY_SHARD.into(),
        args: vec![
            "--write-concurrency".into(),
            args.concurrency.to_string(),
            "--watch-encoding".into(),
            args.watch_encoding.as_str().into(),
        ],
        env: Vec::new(),
        log: args.out.join(format!("tenantry-{port}.log")),
        ready_within: Some(Duration::from_secs(300)),
    };
    Operator::launch(launch).await
}

/// Waits (by watching, no polling load) until the policy's status describes `generation` with
/// `ready` namespaces ready.
pub async fn await_ready(
    policies: &Api<TenantPolicy>,
    name: &str,
    generation: i64,
    ready: usize,
    limit: Duration,
) -> anyhow::Result<()> {
    let cond = move |p: Option<&TenantPolicy>| {
        p.and_then(|p| p.status.as_ref()).is_some_and(|s| {
            s.observed_generation == Some(generation) && s.ready_namespaces as usize == ready
        })
    };
    tokio::time::timeout(limit, await_condition(policies.clone(), name, cond))
        .await
        .with_context(|| {
            format!("policy {name}: generation {generation} not ready in {limit:?}")
        })??;
    Ok(())
}
