//! Namespaces: in bulk (the benchmark's thousands, the fault suite's hundreds), and one with a
//! unique name per test, removed when the test ends.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};

use crate::cluster::kubectl;
use crate::poll::eventually;

/// Labels from `(key, value)` pairs.
pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    (pairs.iter())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A namespace named `name` with `labels`.
pub fn namespace(name: &str, labels: BTreeMap<String, String>) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

/// What [`create_namespaces`] does with a namespace that exists already.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existing {
    /// An error: the caller expects a fresh cluster.
    Fail,
    /// Leave it as it is (a run repeated on the same cluster).
    Keep,
}

/// Creates the namespaces `names`, the `i`th labelled `labels(i)`, `concurrency` at a time
/// (1: in order).
pub async fn create_namespaces(
    client: &Client,
    names: &[String],
    labels: impl Fn(usize) -> BTreeMap<String, String>,
    concurrency: usize,
    existing: Existing,
) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    futures::stream::iter(names.iter().enumerate())
        .map(|(i, name)| {
            let (api, ns) = (api.clone(), namespace(name, labels(i)));
            async move {
                match api.create(&PostParams::default(), &ns).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(s)) if s.code == 409 && existing == Existing::Keep => {
                        Ok(())
                    }
                    Err(e) => Err(anyhow::Error::from(e).context(format!("creating {name}"))),
                }
            }
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique, DNS-1123 name with the given prefix.
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{n}-{:x}", std::process::id(), nanos & 0xfffff)
}

/// A namespace with a unique name, deleted (without waiting) when the guard drops, so tests can
/// run in parallel and leave nothing behind even when they fail.
pub struct TestNamespace {
    pub name: String,
}

impl TestNamespace {
    pub async fn create(client: &Client, prefix: &str) -> Self {
        Self::create_labelled(client, prefix, &[]).await
    }

    pub async fn create_labelled(client: &Client, prefix: &str, pairs: &[(&str, &str)]) -> Self {
        let name = unique_name(prefix);
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace(&name, labels(pairs)))
            .await
            .expect("create namespace");
        Self { name }
    }

    /// Pods are admitted only once the service-account controller has made `default` here.
    pub async fn wait_for_default_service_account(&self, client: &Client) {
        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &self.name);
        eventually("the default service account", || {
            let accounts = accounts.clone();
            async move { accounts.get_opt("default").await.ok().flatten() }
        })
        .await;
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let _ = kubectl(&[
            "delete",
            "namespace",
            &self.name,
            "--wait=false",
            "--ignore-not-found",
        ]);
    }
}
