//! `tenantry-bench`: Tenantry against the API server's own floor (see the `tenantry_bench`
//! library's documentation, and `--help` for the flags and targets).

use anyhow::Context as _;
use clap::Parser;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, ListParams};
use kube::{Client, ResourceExt};
use tenantry::api::TenantPolicy;
use tenantry_bench::cli::Args;
use tenantry_bench::fixtures::BENCH_LABEL;
use tenantry_bench::floors::{Verb, delete_floor, floor, floor_owner};
use tenantry_bench::probe::Phases;
use tenantry_bench::provenance::provenance;
use tenantry_bench::report::print_table;
use tenantry_bench::results::{Recorded, Run, to_json};
use tenantry_bench::targets::{GATE_FROM, missed};
use tenantry_bench::{fleet, run};

/// The owner of what `--floor-only` leaves (removed by `--floor-cleanup`).
const PROFILE_OWNER: &str = "floor-owner-profile";

/// `--summarize`: the table of earlier runs' files; exits 1 when a target is missed.
fn summarize(args: &Args) -> anyhow::Result<()> {
    let mut results = Vec::new();
    for path in &args.summarize {
        results.push(Run::read(path)?);
    }
    results.sort_by_key(|r| (r.is_fleet(), r.namespaces()));
    print_table(&results);
    let missed: Vec<String> = results.iter().flat_map(|r| missed(r, args)).collect();
    if !missed.is_empty() {
        println!("\nTargets missed:");
        for m in &missed {
            println!("- {m}");
        }
        std::process::exit(1);
    }
    println!(
        "\nAll targets met (ratio <= {:.2}x from N = {GATE_FROM}).",
        args.target_ratio
    );
    Ok(())
}

/// `--floor-only RUN`: one POST floor over the namespaces labelled with RUN, left in place.
async fn floor_only(client: &Client, args: &Args, run: &str) -> anyhow::Result<()> {
    let lp = ListParams::default().labels(&format!("{BENCH_LABEL}={run}"));
    let list = Api::<Namespace>::all(client.clone())
        .list_metadata(&lp)
        .await?;
    let mut names: Vec<String> = list.items.iter().map(|n| n.name_any()).collect();
    if args.floor_hashed {
        names.sort_by_key(|n| tenantry::model::fingerprint::fingerprint(n));
    }
    let owner = floor_owner(client, PROFILE_OWNER).await?;
    let mut unrecorded = Phases::default();
    floor(
        client,
        &names,
        Verb::Post,
        args.concurrency,
        &owner,
        &mut unrecorded,
    )
    .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !args.summarize.is_empty() {
        return summarize(&args);
    }
    std::fs::create_dir_all(&args.out)?;
    let client = Client::try_default().await?;
    if args.floor_cleanup {
        delete_floor(&client, args.concurrency).await?;
        let policies: Api<TenantPolicy> = Api::all(client.clone());
        policies
            .delete(PROFILE_OWNER, &DeleteParams::default())
            .await?;
        return Ok(());
    }
    if let Some(run) = &args.floor_only {
        return floor_only(&client, &args, run).await;
    }
    for &n in &args.namespaces {
        let result = if args.fleet {
            Run::Fleet(fleet::run_fleet(&client, &args, n).await?)
        } else {
            Run::Bench(Box::new(run::run_one(&client, &args, n).await?))
        };
        let recorded = Recorded {
            result: &result,
            provenance: provenance(),
        };
        let kind = if args.fleet { "fleet" } else { "bench" };
        let path = args.out.join(format!("{kind}-{n}.json"));
        std::fs::write(&path, to_json(&recorded)?)
            .with_context(|| format!("writing {}", path.display()))?;
        print_table(std::slice::from_ref(&result));
        println!("\nJSON: {}", path.display());
    }
    Ok(())
}
