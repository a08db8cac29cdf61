//! The objects tests create and remove: policies in an operator's shard, storage classes, the
//! canary that shows an operator at work; waiting for objects, conditions and Events.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, PostParams};
use tenantry::api::{TenantPolicy, TenantPolicySpec, TenantPolicyStatus};

use crate::cluster::{kubectl, kubectl_with_input};
use crate::namespaces::{TestNamespace, unique_name};
use crate::operator::{Operator, SHARD_LABEL};
use crate::poll::eventually;

/// A TenantPolicy named `name` with `labels` and `spec` (JSON, as the tests and the benchmark
/// write it).
pub fn policy(
    name: &str,
    labels: BTreeMap<String, String>,
    spec: serde_json::Value,
) -> anyhow::Result<TenantPolicy> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "tenantry.io/v1alpha1", "kind": "TenantPolicy",
        "metadata": {"name": name, "labels": labels}, "spec": spec,
    }))?)
}

/// A TenantPolicy created for a test, labelled with the test's shard; deleted (waiting for its
/// finalizer, so drop it before the Operator) when dropped.
pub struct TestPolicy {
    pub name: String,
}

impl TestPolicy {
    pub async fn create(
        client: &Client,
        operator: &Operator,
        prefix: &str,
        spec: serde_json::Value,
    ) -> Self {
        let name = unique_name(prefix);
        Self::create_named(client, operator, &name, spec).await
    }

    pub async fn create_named(
        client: &Client,
        operator: &Operator,
        name: &str,
        spec: serde_json::Value,
    ) -> Self {
        let labels = crate::namespaces::labels(&[(SHARD_LABEL, &operator.shard)]);
        let policy = policy(name, labels, spec).expect("a valid TenantPolicy");
        Api::<TenantPolicy>::all(client.clone())
            .create(&PostParams::default(), &policy)
            .await
            .expect("create TenantPolicy");
        Self { name: name.into() }
    }

    pub async fn get(&self, client: &Client) -> TenantPolicy {
        Api::<TenantPolicy>::all(client.clone())
            .get(&self.name)
            .await
            .expect("get policy")
    }

    /// Waits until status describes the current generation with Ready=True, and returns it.
    pub async fn wait_ready(&self, client: &Client) -> TenantPolicyStatus {
        self.wait_condition(client, "Ready", "True").await
    }

    /// Waits until status describes the current generation and the condition has that status.
    pub async fn wait_condition(
        &self,
        client: &Client,
        type_: &str,
        status: &str,
    ) -> TenantPolicyStatus {
        let api = Api::<TenantPolicy>::all(client.clone());
        let what = format!("policy {} to have {type_}={status}", self.name);
        eventually(&what, || {
            let api = api.clone();
            async move {
                let p = api.get(&self.name).await.ok()?;
                let s = p.status?;
                let current = s.observed_generation == p.metadata.generation;
                let holds = s
                    .conditions
                    .iter()
                    .any(|c| c.type_ == type_ && c.status == status);
                (current && holds).then_some(s)
            }
        })
        .await
    }

    /// Replaces the spec (read, modify, replace: a new generation). The controller writes the
    /// status and finalizer meanwhile, so a conflict is read again and retried, as kubectl does.
    pub async fn set_spec(&self, client: &Client, spec: serde_json::Value) {
        let api = Api::<TenantPolicy>::all(client.clone());
        let spec: TenantPolicySpec = serde_json::from_value(spec).expect("a valid spec");
        for _ in 0..20 {
            let mut policy = api.get(&self.name).await.expect("get policy");
            policy.spec = spec.clone();
            match api
                .replace(&self.name, &PostParams::default(), &policy)
                .await
            {
                Ok(_) => return,
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => panic!("replace policy: {e}"),
            }
        }
        panic!("replace policy {}: conflicts 20 times in a row", self.name);
    }
}

impl Drop for TestPolicy {
    fn drop(&mut self) {
        let delete = || {
            kubectl(&[
                "delete",
                "tenantpolicy",
                &self.name,
                "--ignore-not-found",
                "--timeout=30s",
            ])
            .success
        };
        // The operator handling the policy removes its finalizer. When no operator is left (a
        // test that failed or stopped it first), remove it here, so that no policy outlives its
        // test; the garbage collector still deletes what the policy owned.
        if !delete() {
            let _ = kubectl(&[
                "patch",
                "tenantpolicy",
                &self.name,
                "--type=merge",
                "-p",
                r#"{"metadata":{"finalizers":null}}"#,
            ]);
            let _ = delete();
        }
    }
}

/// The policy's Ready condition (status always carries one).
pub fn ready_condition(
    status: &TenantPolicyStatus,
) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("a Ready condition")
}

/// Waits until the Events about a policy with this reason satisfy `enough`; returns their notes.
pub async fn wait_event_notes(
    client: &Client,
    policy: &str,
    reason: &str,
    enough: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let enough = &enough;
    eventually(&format!("{reason} Events about {policy}"), || async move {
        let notes = event_notes(client, policy, reason).await;
        enough(&notes).then_some(notes)
    })
    .await
}

/// Notes of the Events recorded about a policy with this reason.
pub async fn event_notes(client: &Client, policy: &str, reason: &str) -> Vec<String> {
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), "default");
    events
        .list(&Default::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(policy)
                && e.reason.as_deref() == Some(reason)
        })
        .filter_map(|e| e.note)
        .collect()
}

/// A namespaced kind the tests read and write.
pub trait Namespaced:
    kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
{
}

impl<K> Namespaced for K where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
{
}

/// Waits until the object is gone.
pub async fn wait_gone<K: Namespaced>(client: &Client, ns: &str, name: &str) {
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    eventually(&format!("{ns}/{name} to be gone"), || {
        let api = api.clone();
        async move { api.get_opt(name).await.unwrap().is_none().then_some(()) }
    })
    .await;
}

/// Waits until the object exists, and returns it.
pub async fn wait_present<K: Namespaced>(client: &Client, ns: &str, name: &str) -> K {
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    eventually(&format!("{ns}/{name} to exist"), || {
        let api = api.clone();
        async move { api.get_opt(name).await.unwrap() }
    })
    .await
}

/// A StorageClass a test creates itself (not Tenantry's), deleted when dropped. Classes are
/// cluster-scoped, so each has a unique name and tests look only at their own.
pub struct TestClass {
    pub name: String,
}

impl TestClass {
    pub fn create(prefix: &str, provisioner: &str) -> Self {
        let name = unique_name(prefix);
        let class = serde_json::json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": name}, "provisioner": provisioner,
        });
        let out = kubectl_with_input(&["create", "-f", "-"], Some(&class.to_string()));
        assert!(out.success, "creating StorageClass {name}: {}", out.stderr);
        Self { name }
    }

    /// Adopts a class made otherwise (one Tenantry released), so it is deleted at the end.
    pub fn named(name: &str) -> Self {
        Self { name: name.into() }
    }
}

impl Drop for TestClass {
    fn drop(&mut self) {
        let _ = kubectl(&[
            "delete",
            "storageclass",
            &self.name,
            "--ignore-not-found",
            "--wait=false",
        ]);
    }
}

/// A policy in an operator's shard that selects only namespaces with its own label: none until
/// [`Canary::settle`] makes one. Its objects appearing there is something the operator must do,
/// seen from outside, so tests can tell the operator has been reconciling without trusting what
/// it reports about itself.
pub struct Canary {
    /// Held for its Drop (the policy is deleted with the canary).
    _policy: TestPolicy,
    label: String,
}

const CANARY_LABEL: &str = "e2e.tenantry.io/canary";

impl Canary {
    pub async fn create(client: &Client, operator: &Operator) -> Self {
        let label = unique_name("canary");
        let spec = serde_json::json!({
            "namespaceSelector": {"matchLabels": {CANARY_LABEL: label}},
            "limitRanges": [{"name": "canary", "limits": [{"type": "Container", "default": {"cpu": "100m"}}]}],
        });
        let policy = TestPolicy::create(client, operator, "canary", spec).await;
        policy.wait_ready(client).await;
        Self {
            _policy: policy,
            label,
        }
    }

    /// Waits until `operator` has finished a reconcile of each of its `policies` (this canary
    /// among them) that began after now, then 10 s more. How: first until it has finished
    /// `policies` reconciles at all (a restarted operator's first round); then a label no policy
    /// selects on is set on each of `namespaces` (a namespace change triggers every policy that
    /// selects it: give the namespaces the other policies select), and `policies - 1` more
    /// finished reconciles; then a new namespace the canary selects and the canary's LimitRange
    /// in it (from the API server: the operator is still at work); then an observation window
    /// in which any late write would show. Returns the canary namespace.
    pub async fn settle(
        &self,
        client: &Client,
        operator: &Operator,
        policies: usize,
        namespaces: &[&str],
    ) -> TestNamespace {
        let policies = policies as f64;
        eventually("the operator's first reconciles", || async {
            (operator.reconciles_finished() >= policies).then_some(())
        })
        .await;
        let finished = operator.reconciles_finished();
        let poke =
            serde_json::json!({"metadata": {"labels": {"e2e.tenantry.io/poke": unique_name("p")}}});
        let all: Api<Namespace> = Api::all(client.clone());
        for ns in namespaces {
            let patch = kube::api::Patch::Merge(&poke);
            all.patch(ns, &kube::api::PatchParams::default(), &patch)
                .await
                .unwrap();
        }
        eventually(
            "a reconcile of every policy after the label change",
            || async {
                (operator.reconciles_finished() >= finished + policies - 1.0).then_some(())
            },
        )
        .await;
        let ns =
            TestNamespace::create_labelled(client, "e2e-canary", &[(CANARY_LABEL, &self.label)])
                .await;
        let ranges: Api<k8s_openapi::api::core::v1::LimitRange> =
            Api::namespaced(client.clone(), &ns.name);
        eventually("the canary's LimitRange", || {
            let ranges = ranges.clone();
            async move { ranges.get_opt("canary").await.unwrap() }
        })
        .await;
        // An observation window, not a stand-in for a condition: writes would show within it.
        tokio::time::sleep(Duration::from_secs(10)).await;
        ns
    }
}
