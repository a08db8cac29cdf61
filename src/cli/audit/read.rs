//! Reading the cluster into the audit's [`Inputs`]: the one part that needs a client.

use super::Inputs;

/// Reads the inputs from the cluster, saying on stderr what it reads (large clusters take a while).
pub async fn read_cluster(client: &kube::Client) -> anyhow::Result<Inputs> {
    use kube::api::{Api, ListParams};
    async fn all<K>(client: &kube::Client, what: &str) -> anyhow::Result<Vec<K>>
    where
        K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        eprint!("\rreading {what}...{}", " ".repeat(20));
        Ok(Api::<K>::all(client.clone())
            .list(&ListParams::default())
            .await?
            .items)
    }
    let inputs = Inputs {
        namespaces: all(client, "namespaces").await?,
        pods: all(client, "pods").await?,
        quotas: all(client, "resourcequotas").await?,
        limit_ranges: all(client, "limitranges").await?,
        pdbs: all(client, "poddisruptionbudgets").await?,
        deployments: all(client, "deployments").await?,
        statefulsets: all(client, "statefulsets").await?,
        daemonsets: all(client, "daemonsets").await?,
        cronjobs: all(client, "cronjobs").await?,
        nodes: all(client, "nodes").await?,
        policies: match all(client, "tenantpolicies").await {
            // Tenantry not installed: no shared budgets to read.
            Err(e) if e.downcast_ref::<kube::Error>().is_some_and(is_not_found) => Vec::new(),
            read => read?,
        },
    };
    eprintln!("\r{}\r", " ".repeat(40));
    Ok(inputs)
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}
