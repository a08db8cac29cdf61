//! Leader election on a coordination.k8s.io/v1 Lease, as client-go does it: the holder renews
//! every retry period; another candidate takes the lease over once it has seen no renewal for a
//! whole lease duration (judged by its own clock, so clock skew between nodes does not matter).
//! Writes are fenced: [`Leadership::holds`] is checked before each one, and a leader that cannot
//! renew within the renew deadline stops writing and exits.
//!
//! The Lease is the one object written outside `apply.rs`: it is what leadership is, so it
//! cannot be fenced by it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::Mutex;
use tracing::{info, warn};

#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub namespace: String,
    pub lease_name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

/// Whether this process may write. Without leader election it always may.
#[derive(Debug)]
pub struct Leadership {
    elected: bool,
    leading: AtomicBool,
    last_renewal: std::sync::Mutex<Instant>,
    /// How long after its last renewal the lease still counts as held by this process: the renew
    /// deadline (at most the lease duration), so a leader stops writing before others may take over.
    renew_deadline: Duration,
}

impl Leadership {
    /// No election: a single instance that always writes.
    pub fn always() -> Arc<Self> {
        Arc::new(Self {
            elected: false,
            leading: AtomicBool::new(true),
            last_renewal: std::sync::Mutex::new(Instant::now()),
            renew_deadline: Duration::MAX,
        })
    }

    /// An elected instance that does not hold the lease (tests of fencing).
    #[cfg(test)]
    pub fn lost() -> Arc<Self> {
        Arc::new(Self {
            elected: true,
            leading: AtomicBool::new(false),
            last_renewal: std::sync::Mutex::new(Instant::now()),
            renew_deadline: Duration::from_secs(10),
        })
    }

    /// True while this process holds an unexpired lease (always, without election).
    pub fn holds(&self) -> bool {
        if !self.elected {
            return true;
        }
        self.leading.load(Ordering::Acquire)
            && self.last_renewal.lock().expect("not poisoned").elapsed() < self.renew_deadline
    }
}

/// What a candidate last saw of the lease, and when it saw it change.
struct Observed {
    holder: Option<String>,
    renew_time: Option<MicroTime>,
    at: Instant,
}

pub struct Elector {
    api: Api<Lease>,
    settings: LeaseSettings,
    observed: Mutex<Option<Observed>>,
}

impl Elector {
    pub fn new(client: Client, settings: LeaseSettings) -> Self {
        Self {
            api: Api::namespaced(client, &settings.namespace),
            settings,
            observed: Mutex::new(None),
        }
    }

    /// Waits until this process holds the lease; then keeps renewing it in the background. When a
    /// renewal has not succeeded within the renew deadline, leadership is dropped (no more writes)
    /// and `lost` is notified.
    pub async fn acquire(self, lost: tokio::sync::oneshot::Sender<()>) -> Arc<Leadership> {
        let s = self.settings.clone();
        info!(lease = %format!("{}/{}", s.namespace, s.lease_name), identity = %s.identity, "waiting for leadership");
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => warn!(error = %e, "leader election: lease not reachable"),
            }
            tokio::time::sleep(s.retry_period).await;
        }
        info!(identity = %s.identity, "became leader");
        let leadership = Arc::new(Leadership {
            elected: true,
            leading: AtomicBool::new(true),
            last_renewal: std::sync::Mutex::new(Instant::now()),
            renew_deadline: s.renew_deadline.min(s.lease_duration),
        });
        let held = leadership.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(s.retry_period).await;
                match self.try_acquire_or_renew().await {
                    Ok(true) => *held.last_renewal.lock().expect("not poisoned") = Instant::now(),
                    Ok(false) => {
                        warn!("leader election: another holder took the lease");
                        break;
                    }
                    Err(e) => warn!(error = %e, "leader election: renewal failed"),
                }
                if held.last_renewal.lock().expect("not poisoned").elapsed() >= s.renew_deadline {
                    warn!("leader election: could not renew within the renew deadline");
                    break;
                }
            }
            held.leading.store(false, Ordering::Release);
            let _ = lost.send(());
        });
        leadership
    }

    /// One round: take the lease if it is free, expired or ours; renew it if ours.
    async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let s = &self.settings;
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let duration_seconds = s.lease_duration.as_secs().max(1) as i32;
        let Some(mut lease) = self.api.get_opt(&s.lease_name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(s.lease_name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(s.identity.clone()),
                    lease_duration_seconds: Some(duration_seconds),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let mine = spec.holder_identity.as_deref() == Some(s.identity.as_str());
        let expired = {
            let mut observed = self.observed.lock().await;
            let changed = observed.as_ref().is_none_or(|o| {
                o.holder != spec.holder_identity || o.renew_time != spec.renew_time
            });
            if changed {
                *observed = Some(Observed {
                    holder: spec.holder_identity.clone(),
                    renew_time: spec.renew_time.clone(),
                    at: Instant::now(),
                });
            }
            let held_for = Duration::from_secs(
                spec.lease_duration_seconds
                    .unwrap_or(duration_seconds)
                    .max(0) as u64,
            );
            spec.holder_identity.as_deref().is_none_or(str::is_empty)
                || observed
                    .as_ref()
                    .is_some_and(|o| o.at.elapsed() >= held_for)
        };
        if !mine && !expired {
            return Ok(false);
        }
        lease.spec = Some(LeaseSpec {
            holder_identity: Some(s.identity.clone()),
            lease_duration_seconds: Some(duration_seconds),
            acquire_time: if mine {
                spec.acquire_time.clone()
            } else {
                Some(now.clone())
            },
            renew_time: Some(now),
            lease_transitions: Some(spec.lease_transitions.unwrap_or(0) + i32::from(!mine)),
            ..spec
        });
        // Replace carries the resourceVersion read above: of two candidates, one wins.
        match self
            .api
            .replace(&s.lease_name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }
}
