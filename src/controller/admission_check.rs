//! Whether the admission policies that give governance its teeth are installed and bound:
//! without `tenantry-protect-managed-objects` a tenant can edit or delete what Tenantry keeps
//! (it is put back, but only after the fact), without `tenantry-shared-quota-window` a shared
//! budget can be overrun while a new part is not yet enforced, and without
//! `tenantry-storage-classes` a refused claim names the quota, not the policy. Looked at when the
//! controller starts and again every few minutes; what is missing is logged and exported as
//! `tenantry_admission_policy_installed`.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use kube::Client;
use kube::api::Api;
use tracing::{info, warn};

use crate::controller::metrics::{Metrics, PolicyNameLabels};

/// The admission policies `config/admission` (and the chart) install, each bound by a binding
/// of the same name.
pub const POLICIES: [&str; 3] = [
    "tenantry-protect-managed-objects",
    "tenantry-shared-quota-window",
    "tenantry-storage-classes",
];

/// What was found of one policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    Installed,
    /// The policy or its binding is missing.
    Missing,
    /// It could not be read (no permission, or the API is not served).
    Unknown,
}

impl Presence {
    fn gauge(self) -> i64 {
        match self {
            Presence::Installed => 1,
            Presence::Missing => 0,
            Presence::Unknown => -1,
        }
    }
}

async fn presence(client: &Client, name: &str) -> Presence {
    let policy = Api::<ValidatingAdmissionPolicy>::all(client.clone())
        .get_opt(name)
        .await;
    let binding = Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
        .get_opt(name)
        .await;
    match (policy, binding) {
        (Ok(Some(_)), Ok(Some(_))) => Presence::Installed,
        (Ok(_), Ok(_)) => Presence::Missing,
        (Err(e), _) | (_, Err(e)) => {
            warn!(policy = name, error = %e, "cannot tell whether the admission policy is installed");
            Presence::Unknown
        }
    }
}

/// Looks at every policy once, logging what is missing and setting the gauge.
pub async fn report(client: &Client, metrics: &Metrics) -> Vec<(&'static str, Presence)> {
    let mut found = Vec::new();
    for name in POLICIES {
        let presence = presence(client, name).await;
        let labels = PolicyNameLabels {
            policy: name.to_owned(),
        };
        metrics
            .admission_policy_installed
            .get_or_create(&labels)
            .set(presence.gauge());
        found.push((name, presence));
    }
    let missing: Vec<&str> = (found.iter())
        .filter(|(_, p)| *p == Presence::Missing)
        .map(|(n, _)| *n)
        .collect();
    if missing.is_empty() {
        info!("admission policies installed and bound");
    } else {
        warn!(
            missing = missing.join(", "),
            "admission policies not installed or not bound (config/admission): tenants can change \
             what Tenantry keeps until it puts it back, and shared budgets can be overrun while a \
             part is not yet enforced"
        );
    }
    found
}

/// [`report`] now and then every `interval`, for as long as the process runs.
pub async fn every(client: Client, metrics: Arc<Metrics>, interval: Duration) {
    loop {
        report(&client, &metrics).await;
        tokio::time::sleep(interval).await;
    }
}
