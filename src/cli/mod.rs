//! The commands beside the controller: `tenantry plan` and `tenantry audit`. Each is a pure
//! computation over what it reads of the cluster, plus the glue that reads it and prints.

pub mod audit;
pub mod plan;

use serde::Serialize;

/// How a command prints its report.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
    Yaml,
}

impl Output {
    /// The report as text (via `render`), JSON or YAML.
    pub fn print<T: Serialize>(
        self,
        report: &T,
        render: impl Fn(&T) -> String,
    ) -> anyhow::Result<()> {
        match self {
            Output::Text => print!("{}", render(report)),
            Output::Json => println!("{}", serde_json::to_string_pretty(report)?),
            Output::Yaml => print!("{}", serde_yaml::to_string(report)?),
        }
        Ok(())
    }
}
