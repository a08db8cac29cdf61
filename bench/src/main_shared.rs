//! `tenantry-bench-shared`: a shared quota over many namespaces (see
//! `tenantry_bench::shared`).

use anyhow::bail;
use clap::Parser;
use kube::Client;
use tenantry_bench::results::to_json;
use tenantry_bench::shared::{Args, RUN, RUN_LABEL, namespace_name, run, start_controller};
use tenantry_testkit::{Existing, create_namespaces, labels};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.out)?;
    let client = Client::try_default().await?;
    let n = args.namespaces;
    let names: Vec<String> = (0..n).map(namespace_name).collect();
    // A repeated run on the same cluster keeps the namespaces it made.
    let label = |_| labels(&[(RUN_LABEL, RUN)]);
    create_namespaces(&client, &names, label, 32, Existing::Keep).await?;
    let mut controller = start_controller(&args).await?;
    let result = run(&args, &client).await;
    controller.kill9();
    let (figures, failures) = result?;
    let json = to_json(&figures)?;
    println!("{json}");
    std::fs::write(args.out.join(format!("bench-shared-{n}.json")), json)?;
    if !failures.is_empty() {
        bail!("targets missed: {}", failures.join("; "));
    }
    Ok(())
}
