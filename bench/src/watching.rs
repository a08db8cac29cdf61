//! What any controller that repairs drift holds while it writes: a watch of each managed kind
//! by Tenantry's label, opened in this process beside the watched floor.

use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{LimitRange, ResourceQuota};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Client;
use kube::api::Api;
use kube::runtime::{reflector, watcher};
use tenantry::api::MANAGED_SELECTOR;
use tenantry::cache::protobuf_watch;
use tenantry::controller::WatchEncoding;
use tenantry_testkit::wait_for;

/// Watches open in this process until dropped, each with the size of its cache.
pub struct Watching {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    cached: Vec<Box<dyn Fn() -> usize + Send + Sync>>,
}

impl Watching {
    /// Waits until the caches hold `objects` in all: the watches saw every write beside them.
    pub async fn saw(&self, objects: usize) -> anyhow::Result<()> {
        let held = || self.cached.iter().map(|len| len()).sum::<usize>();
        wait_for(
            "the watches to see every floor object",
            Duration::from_secs(60),
            || std::future::ready(held() >= objects),
        )
        .await?;
        Ok(())
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A watch of each managed kind by Tenantry's label (the watcher Tenantry uses for `encoding`,
/// typed objects into a reflector store). Returns once every watch has listed, so the floor
/// beside them measures the events, not the lists.
pub async fn watch_like_a_controller(
    client: &Client,
    encoding: WatchEncoding,
) -> anyhow::Result<Watching> {
    let (listed, mut lists) = tokio::sync::mpsc::channel::<()>(3);
    let mut watching = Watching {
        tasks: Vec::new(),
        cached: Vec::new(),
    };
    watch_kind::<LimitRange>(client, encoding, listed.clone(), &mut watching);
    watch_kind::<ResourceQuota>(client, encoding, listed.clone(), &mut watching);
    watch_kind::<PodDisruptionBudget>(client, encoding, listed, &mut watching);
    for _ in 0..watching.tasks.len() {
        tokio::time::timeout(Duration::from_secs(60), lists.recv())
            .await
            .context("a managed kind's watch did not list in 60 s")?
            .context("a managed kind's watch ended")?;
    }
    Ok(watching)
}

fn watch_kind<K: tenantry::cache::protobuf::Watchable>(
    client: &Client,
    encoding: WatchEncoding,
    listed: tokio::sync::mpsc::Sender<()>,
    watching: &mut Watching,
) {
    let (store, writer) = reflector::store::<K>();
    let config = watcher::Config::default().labels(MANAGED_SELECTOR);
    let events = match encoding {
        WatchEncoding::Protobuf => protobuf_watch::watcher(client.clone(), config).boxed(),
        WatchEncoding::Json => watcher(Api::<K>::all(client.clone()), config).boxed(),
    };
    let events = reflector::reflector(writer, events);
    watching.tasks.push(tokio::spawn(async move {
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            if let Ok(watcher::Event::InitDone) = event {
                let _ = listed.try_send(());
            }
        }
    }));
    watching.cached.push(Box::new(move || store.len()));
}
