use clap::{Parser, Subcommand};

/// Tenantry governs namespaces from git: LimitRanges, ResourceQuotas, PodDisruptionBudgets and
/// StorageClasses declared by cluster-scoped TenantPolicies.
#[derive(Parser, Debug)]
#[command(name = "tenantry", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the TenantPolicy CustomResourceDefinition as YAML.
    Crd,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd => print!("{}", tenantry::crd::crd_yaml()),
    }
    Ok(())
}
