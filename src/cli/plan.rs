//! `tenantry plan`: what applying some TenantPolicies would do, computed with the controller's
//! own selection, shared-budget step and diff against the live cluster. The computation is pure
//! ([`compute`]);
//! [`run`] reads the files and the cluster, has the API server dry-run the policies and what they
//! build (through the writer), and prints.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use kube::runtime::events::Reporter;
use serde::Serialize;
use serde_json::Value;

use super::Output;
use crate::api::{AdoptionPolicy, SHARED_QUOTA_LABEL, TenantPolicy};
use crate::controller::leader::Leadership;
use crate::controller::metrics::Metrics;
use crate::controller::writer::Writer;
use crate::model::action::Action;
use crate::model::key::{ObjectKey, Owner, owner_of};
use crate::model::kind::Kind;
use crate::model::live::LiveIndex;
use crate::model::namespace::NamespaceInfo;
use crate::model::object::{Desired, Live};
use crate::pipeline::adoption::{self, Decision, Existing};
use crate::pipeline::diff;
use crate::pipeline::plan::{self, Plan};
use crate::pipeline::select::Candidate;
use crate::pipeline::shared_quotas;
use crate::pipeline::validate::{self, InvalidSpec};

/// One change to one object.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// create, adopt (an existing object of the name taken over, `spec.adoptionPolicy`),
    /// untouched (one that exists and is not adopted: the policy will report it NotOwned),
    /// update, recreate (a StorageClass's immutable fields), delete or release.
    pub action: String,
    pub namespace: String,
    pub kind: String,
    pub name: String,
    /// For updates: the JSON merge patch from the live spec to the desired one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<Value>,
    /// For updates of another policy's object: the policy it is taken over from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub takes_over_from: Option<String>,
    /// For objects left untouched: why they are not adopted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What one policy would do.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyPlan {
    pub policy: String,
    /// True for a policy in the files; false for a policy in the cluster affected by them.
    pub planned: bool,
    pub new: bool,
    pub selected_namespaces: usize,
    pub changes: Vec<Change>,
    /// "namespace: Kind won by policy" for kinds this policy sets but loses.
    pub shadowed: Vec<String>,
}

/// The cluster as the plan sees it.
pub struct ClusterState<'a> {
    pub policies: Vec<TenantPolicy>,
    pub namespaces: Vec<NamespaceInfo<'a>>,
    pub live: Vec<Live>,
    /// The status (hard, used) of each ResourceQuota labelled [`SHARED_QUOTA_LABEL`] (the parts
    /// of shared budgets), as the controller's cache keeps it for the allocator.
    pub quota_status: BTreeMap<ObjectKey, Value>,
    /// Names of the cluster's StorageClasses.
    pub classes: BTreeSet<String>,
    /// Objects of the names the planned policies declare that lack Tenantry's labels (what
    /// adoption would take or leave).
    pub unmanaged: Vec<Existing>,
}

/// The cluster as the diff and the allocator see it, like the controller's caches.
impl LiveIndex for ClusterState<'_> {
    fn get(&self, key: &ObjectKey) -> Option<Live> {
        LiveIndex::get(self.live.as_slice(), key)
    }
    fn labelled_for(
        &self,
        policy: &str,
        keep: &dyn Fn(Kind, &str, &str) -> bool,
    ) -> Vec<ObjectKey> {
        self.live.as_slice().labelled_for(policy, keep)
    }
    fn quota_status(&self, key: &ObjectKey) -> Option<Value> {
        self.quota_status.get(key).cloned()
    }
}

/// The changes `me` would make given `candidates` (the policies in force), planned as the
/// controller plans them, by a controller just started (no memory).
fn changes_for(
    me: &Candidate,
    candidates: &[Candidate],
    owner: &Owner,
    cluster: &ClusterState,
) -> (Plan, Vec<Change>) {
    let namespace = |ns: &str| {
        let found = cluster.namespaces.iter().find(|n| n.name == ns);
        found.map(|n| n.clone().into_owned())
    };
    let view = plan::Cluster {
        namespaces: &cluster.namespaces,
        namespace: &namespace,
        classes: &cluster.classes,
        live: cluster,
    };
    let mut memories = shared_quotas::BudgetMemories::default();
    let now = std::time::Instant::now();
    let mut plan = plan::plan(
        me,
        candidates,
        owner,
        &view,
        &mut memories,
        &HashSet::new(),
        now,
    );
    let actions = std::mem::take(&mut plan.diff.actions);
    let changes = changes_of(&actions, cluster, owner, me.spec.adoption_policy);
    (plan, changes)
}

fn as_candidates(set: &[(String, TenantPolicy)]) -> Vec<Candidate<'_>> {
    set.iter()
        .filter_map(|(n, p)| Candidate::new(n, &p.spec).ok())
        .collect()
}

/// The owner of a planned policy: its uid is the one the cluster's policy of that name has.
fn planned_owner(policy: &TenantPolicy, live_uid: Option<String>) -> Owner {
    let mut policy = policy.clone();
    policy.metadata.uid = live_uid;
    owner_of(&policy)
}

/// A creation as it would turn out: a plain create, or, where an object of the name exists
/// without Tenantry's labels, its adoption (with the spec patch, when it changes) or a refusal.
fn creation(
    desired: &Desired,
    cluster: &ClusterState,
    owner: &Owner,
    adoption: AdoptionPolicy,
) -> (&'static str, Option<Value>, Option<String>) {
    let Some(existing) = cluster.unmanaged.iter().find(|e| e.live.key == desired.key) else {
        return ("create", None, None);
    };
    match adoption::decide(adoption, desired, existing, owner) {
        Decision::Adopt { changed, .. } => {
            let patch =
                (!changed.is_empty()).then(|| diff::spec_patch(desired, &existing.live.spec));
            ("adopt", patch, None)
        }
        Decision::Refuse(why) => (
            "untouched",
            None,
            Some(format!("exists, not adopted: {why}")),
        ),
    }
}

fn changes_of(
    actions: &[Action],
    cluster: &ClusterState,
    owner: &Owner,
    adoption: AdoptionPolicy,
) -> Vec<Change> {
    let (live, policy) = (cluster.live.as_slice(), owner.name.as_str());
    let mut changes: Vec<Change> = actions
        .iter()
        .map(|a| {
            let key = a.key();
            let mut reason = None;
            let (action, diff, takes_over_from) = match a {
                Action::Create { desired, .. } => {
                    let (verb, patch, why) = creation(desired, cluster, owner, adoption);
                    reason = why;
                    (verb, patch, None)
                }
                Action::Apply { desired, .. }
                | Action::Replace { desired, .. }
                | Action::Recreate { desired, .. } => {
                    let current = LiveIndex::get(live, key);
                    let diff = current.as_ref().map(|l| diff::spec_patch(desired, &l.spec));
                    let from = current
                        .and_then(|l| l.policy().filter(|p| *p != policy).map(str::to_owned));
                    let verb = if matches!(a, Action::Recreate { .. }) {
                        "recreate"
                    } else {
                        "update"
                    };
                    (verb, diff, from)
                }
                // Only the writer's answers give rise to these; the diff plans none.
                Action::Inspect { .. } | Action::Adopt { .. } => ("adopt", None, None),
                Action::Delete { .. } => ("delete", None, None),
                Action::Release { .. } => ("release", None, None),
            };
            Change {
                action: action.into(),
                namespace: key.namespace.clone(),
                kind: key.kind.to_string(),
                name: key.name.clone(),
                diff: diff.filter(|d| d.as_object().is_none_or(|m| !m.is_empty())),
                takes_over_from,
                reason,
            }
        })
        .collect();
    changes.sort_by(|a, b| (&a.namespace, &a.kind, &a.name).cmp(&(&b.namespace, &b.kind, &b.name)));
    changes
}

/// Why a plan cannot be made.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("a TenantPolicy without metadata.name")]
    Unnamed,
    #[error("{policy}: {invalid}")]
    Invalid {
        policy: String,
        invalid: Box<InvalidSpec>,
    },
}

/// What applying `planned` would do: the planned policies' own changes, and the changes other
/// policies in the cluster would then make (kinds they lose or win back). Fails with the field
/// named when a planned policy is invalid.
pub fn compute(
    planned: &[TenantPolicy],
    cluster: &ClusterState,
) -> Result<Vec<PolicyPlan>, PlanError> {
    let planned_names: BTreeSet<String> = planned
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    for p in planned {
        let name = p.metadata.name.clone().ok_or(PlanError::Unnamed)?;
        validate::validate(&name, &p.spec).map_err(|invalid| PlanError::Invalid {
            policy: name.clone(),
            invalid: Box::new(invalid),
        })?;
    }
    let alive = |p: &&TenantPolicy| p.metadata.deletion_timestamp.is_none();
    let before: Vec<&TenantPolicy> = cluster.policies.iter().filter(alive).collect();
    let after: Vec<&TenantPolicy> = cluster
        .policies
        .iter()
        .filter(alive)
        .filter(|p| !planned_names.contains(p.metadata.name.as_deref().unwrap_or_default()))
        .chain(planned.iter())
        .collect();
    let candidates = |set: &[&'_ TenantPolicy]| -> Vec<(String, TenantPolicy)> {
        set.iter()
            .map(|p| (p.metadata.name.clone().unwrap_or_default(), (*p).clone()))
            .collect()
    };
    let (before, after) = (candidates(&before), candidates(&after));
    let (before_candidates, after_candidates) = (as_candidates(&before), as_candidates(&after));
    let uid = |name: &str| {
        cluster
            .policies
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(name))
            .and_then(|p| p.metadata.uid.clone())
    };

    let mut plans = Vec::new();
    for me in &after_candidates {
        let policy = &after
            .iter()
            .find(|(n, _)| n == me.name)
            .expect("a candidate")
            .1;
        let owner = planned_owner(policy, uid(me.name));
        let (assignment, mut changes) = changes_for(me, &after_candidates, &owner, cluster);
        let is_planned = planned_names.contains(me.name);
        if !is_planned {
            // Only what the planned policies cause: drop what this policy would do anyway.
            let unchanged = before_candidates
                .iter()
                .find(|c| c.name == me.name)
                .map(|c| changes_for(c, &before_candidates, &owner, cluster).1);
            changes.retain(|c| !unchanged.as_ref().is_some_and(|u| u.contains(c)));
            if changes.is_empty() {
                continue;
            }
        }
        plans.push(PolicyPlan {
            policy: me.name.to_owned(),
            planned: is_planned,
            new: uid(me.name).is_none(),
            selected_namespaces: assignment.selected.len(),
            changes,
            shadowed: assignment
                .shadowed
                .iter()
                .map(|s| format!("{}: {} won by {}", s.namespace, s.section, s.winner))
                .chain(
                    assignment
                        .shadowed_classes
                        .iter()
                        .map(|c| format!("StorageClass {} owned by {}", c.name, c.winner)),
                )
                .collect(),
        });
    }
    // Policies removed from... nothing: plan only adds or changes policies; deletions are not planned.
    plans.sort_by(|a, b| (!a.planned, &a.policy).cmp(&(!b.planned, &b.policy)));
    Ok(plans)
}

/// A human-readable report, grouped by policy and namespace.
pub fn render(plans: &[PolicyPlan]) -> String {
    let mut out = String::new();
    for p in plans {
        let what = if p.planned {
            if p.new { "new" } else { "changed" }
        } else {
            "in the cluster, affected"
        };
        out.push_str(&format!(
            "TenantPolicy {} ({what}): selects {} namespaces\n",
            p.policy, p.selected_namespaces
        ));
        let mut by_namespace: BTreeMap<&str, Vec<&Change>> = BTreeMap::new();
        for c in &p.changes {
            by_namespace
                .entry(c.namespace.as_str())
                .or_default()
                .push(c);
        }
        for (ns, changes) in by_namespace {
            out.push_str(&format!("  {ns}\n"));
            for c in changes {
                let mut line = format!("    {:<8} {}/{}", c.action, c.kind, c.name);
                if let Some(from) = &c.takes_over_from {
                    line.push_str(&format!(" (taken over from {from})"));
                }
                if let Some(reason) = &c.reason {
                    line.push_str(&format!(" ({reason})"));
                }
                if let Some(diff) = &c.diff {
                    line.push_str(&format!("  {diff}"));
                }
                out.push_str(&line);
                out.push('\n');
            }
        }
        for s in &p.shadowed {
            out.push_str(&format!("  shadowed: {s}\n"));
        }
        if p.changes.is_empty() {
            out.push_str("  no changes\n");
        }
    }
    out
}

/// What [`read_cluster`] reads.
pub struct ClusterRead {
    pub policies: Vec<TenantPolicy>,
    pub namespaces: Vec<kube::api::PartialObjectMeta<k8s_openapi::api::core::v1::Namespace>>,
    pub live: Vec<Live>,
    pub quota_status: BTreeMap<ObjectKey, Value>,
    pub classes: BTreeSet<String>,
}

/// Reads what the plan needs from the cluster: policies, namespace metadata, managed objects
/// (StorageClasses among them), the status of the shared budgets' parts and the names of all
/// StorageClasses.
pub async fn read_cluster(client: &kube::Client) -> anyhow::Result<ClusterRead> {
    use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota};
    use k8s_openapi::api::policy::v1::PodDisruptionBudget;
    use kube::ResourceExt;
    use kube::api::{Api, ListParams};
    let policies = Api::<TenantPolicy>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let namespaces = Api::<Namespace>::all(client.clone())
        .list_metadata(&ListParams::default())
        .await?
        .items;
    async fn managed<K: crate::model::object::ManagedResource>(
        client: &kube::Client,
    ) -> anyhow::Result<Vec<K>> {
        let selector = ListParams::default().labels(crate::api::MANAGED_SELECTOR);
        Ok(Api::<K>::all(client.clone()).list(&selector).await?.items)
    }
    let quotas = managed::<ResourceQuota>(client).await?;
    let mut live: Vec<Live> = quotas.iter().map(crate::model::object::live_of).collect();
    let quota_status = quotas
        .iter()
        .filter(|q| q.labels().contains_key(SHARED_QUOTA_LABEL))
        .map(|q| {
            let status = serde_json::to_value(&q.status).unwrap_or_default();
            (crate::model::object::live_of(q).key, status)
        })
        .collect();
    for lr in managed::<LimitRange>(client).await? {
        live.push(crate::model::object::live_of(&lr));
    }
    for pdb in managed::<PodDisruptionBudget>(client).await? {
        live.push(crate::model::object::live_of(&pdb));
    }
    let classes = Api::<k8s_openapi::api::storage::v1::StorageClass>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    live.extend(
        classes
            .iter()
            .map(crate::model::object::live_of_class)
            .filter(Live::is_tenantry_managed),
    );
    let names = classes
        .iter()
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    Ok(ClusterRead {
        policies,
        namespaces,
        live,
        quota_status,
        classes: names,
    })
}

/// Reads the objects of the names the planned policies declare that lack Tenantry's labels, in
/// every namespace (one list per kind and name, by field selector).
async fn read_unmanaged(
    client: &kube::Client,
    planned: &[TenantPolicy],
) -> anyhow::Result<Vec<Existing>> {
    use crate::model::kind::Kind;
    use crate::model::object::{ManagedResource, live_of, live_of_class};
    use crate::pipeline::build::templates;
    use k8s_openapi::api::core::v1::{LimitRange, ResourceQuota};
    use k8s_openapi::api::policy::v1::PodDisruptionBudget;
    use k8s_openapi::api::storage::v1::StorageClass;
    use kube::ResourceExt;
    use kube::api::{Api, ListParams};
    let declared: BTreeSet<(Kind, String)> = planned
        .iter()
        .flat_map(|p| templates(&p.spec, &BTreeSet::new(), ""))
        .map(|d| (d.key.kind, d.key.name))
        .collect();
    async fn named<K: ManagedResource>(
        client: &kube::Client,
        name: &str,
    ) -> anyhow::Result<Vec<Existing>> {
        let by_name = ListParams::default().fields(&format!("metadata.name={name}"));
        Ok(Api::<K>::all(client.clone())
            .list(&by_name)
            .await?
            .items
            .iter()
            .filter(|o| !crate::api::is_managed(o.labels()))
            .map(|o| Existing {
                live: live_of(o),
                finalizers: o.finalizers().to_vec(),
            })
            .collect())
    }
    let mut out = Vec::new();
    for (kind, name) in &declared {
        match kind {
            Kind::LimitRange => out.extend(named::<LimitRange>(client, name).await?),
            Kind::ResourceQuota => out.extend(named::<ResourceQuota>(client, name).await?),
            Kind::PodDisruptionBudget => {
                out.extend(named::<PodDisruptionBudget>(client, name).await?)
            }
            Kind::StorageClass => {
                let class = Api::<StorageClass>::all(client.clone())
                    .get_opt(name)
                    .await?;
                out.extend(
                    class
                        .filter(|c| !crate::api::is_managed(c.labels()))
                        .map(|c| Existing {
                            live: live_of_class(&c),
                            finalizers: c.finalizers().to_vec(),
                        }),
                );
            }
        }
    }
    Ok(out)
}

/// Reads TenantPolicies from files and directories (multi-document YAML or JSON; other kinds
/// are skipped).
pub fn load_policies(paths: &[PathBuf]) -> anyhow::Result<Vec<TenantPolicy>> {
    use anyhow::Context as _;
    use serde::Deserialize;
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut entries: Vec<_> = std::fs::read_dir(path)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension()
                        .is_some_and(|x| x == "yaml" || x == "yml" || x == "json")
                })
                .collect();
            entries.sort();
            files.extend(entries);
        } else {
            files.push(path.clone());
        }
    }
    let mut policies = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        for document in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_yaml::Value::deserialize(document)
                .with_context(|| format!("parsing {}", file.display()))?;
            if value.get("kind").and_then(|k| k.as_str()) != Some("TenantPolicy") {
                continue;
            }
            let policy: TenantPolicy = serde_yaml::from_value(value)
                .with_context(|| format!("{}: not a valid TenantPolicy", file.display()))?;
            policies.push(policy);
        }
    }
    anyhow::ensure!(!policies.is_empty(), "no TenantPolicy found in {paths:?}");
    Ok(policies)
}

/// `tenantry plan`: prints what applying `files` would do; true when something would change.
pub async fn run(files: &[PathBuf], output: Output) -> anyhow::Result<bool> {
    let planned = load_policies(files)?;
    let client = kube::Client::try_default().await?;
    let writer = Writer::new(
        client.clone(),
        Arc::new(Metrics::default()),
        8,
        Leadership::always(),
        Reporter {
            controller: "tenantry-plan".into(),
            instance: None,
        },
        Arc::new(crate::cache::own_writes::OwnWrites::default()),
    );
    // What the API server itself would refuse: the policy at admission (schema, CEL) ...
    for p in &planned {
        let name = p.metadata.name.clone().unwrap_or_default();
        writer
            .dry_run_policy(p)
            .await
            .map_err(|e| anyhow::anyhow!("the API server would reject TenantPolicy {name}: {e}"))?;
    }
    let read = read_cluster(&client).await?;
    let namespaces: Vec<NamespaceInfo> = read
        .namespaces
        .iter()
        .map(|ns| NamespaceInfo::of_meta(&ns.metadata))
        .collect();
    let unmanaged = read_unmanaged(&client, &planned).await?;
    let cluster = ClusterState {
        policies: read.policies,
        namespaces,
        live: read.live,
        quota_status: read.quota_status,
        classes: read.classes,
        unmanaged,
    };
    let plans = compute(&planned, &cluster)?;
    // ... and each object the planned policies would build.
    for p in &planned {
        dry_run_objects(&writer, p, &cluster).await?;
    }
    output.print(&plans, |p| render(p))?;
    Ok(plans.iter().any(|p| !p.changes.is_empty()))
}

/// The server-side dry run of every object `policy` declares, as the controller runs it (whether
/// or not it selects a namespace).
async fn dry_run_objects(
    writer: &Writer,
    policy: &TenantPolicy,
    cluster: &ClusterState<'_>,
) -> anyhow::Result<()> {
    let name = policy.metadata.name.clone().unwrap_or_default();
    let templates = crate::pipeline::build::templates(
        &policy.spec,
        &cluster.classes,
        crate::controller::writer::DRY_RUN_NAMESPACE,
    );
    let owner = owner_of(policy);
    for desired in validate::dry_run_objects(templates) {
        let answer = writer.dry_run(&owner, &desired).await;
        validate::dry_run_verdict(&desired, &answer)
            .map_err(|e| anyhow::anyhow!("TenantPolicy {name}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::object::managed_labels;
    use serde_json::json;

    fn policy(name: &str, uid: &str, spec: Value) -> TenantPolicy {
        serde_json::from_value(json!({
            "apiVersion": "tenantry.io/v1alpha1", "kind": "TenantPolicy",
            "metadata": {"name": name, "uid": uid}, "spec": spec,
        }))
        .unwrap()
    }

    fn namespace(name: &str) -> NamespaceInfo<'static> {
        NamespaceInfo {
            name: name.to_owned().into(),
            labels: std::borrow::Cow::Owned(BTreeMap::from([("team".into(), "mia".into())])),
            terminating: false,
        }
    }

    /// A part of budget `budget` of policy `team`, as read: spec and status hard, status used.
    fn part(namespace: &str, hard: &str, used: &str) -> (Live, Value) {
        let owner = Owner {
            name: "team".into(),
            uid: "uid-team".into(),
        };
        let mut labels = managed_labels("team");
        labels.insert(SHARED_QUOTA_LABEL.into(), "budget".into());
        // Enforced (it has status), and relabelled so by the controller.
        labels.insert(crate::api::ENFORCED_LABEL.into(), "true".into());
        let live = Live {
            key: ObjectKey {
                kind: Kind::ResourceQuota,
                namespace: namespace.into(),
                name: "budget".into(),
            },
            uid: format!("uid-{namespace}"),
            resource_version: "1".into(),
            labels,
            owner_references: vec![owner.owner_reference()],
            spec: json!({"hard": {"pods": hard}}),
            foreign_manager: None,
            deleting: false,
        };
        let status = json!({"hard": {"pods": hard}, "used": {"pods": used}});
        (live, status)
    }

    fn shared(pods: &str) -> Value {
        json!({"namespaceSelector": {"matchLabels": {"team": "mia"}},
            "sharedQuotas": [{"name": "budget", "hard": {"pods": pods}}]})
    }

    /// (action, namespace, kind/name, diff) of each change of the one plan.
    fn listed(plans: &[PolicyPlan]) -> Vec<(String, String, String, Option<Value>)> {
        plans
            .iter()
            .flat_map(|p| &p.changes)
            .map(|c| {
                let what = format!("{}/{}", c.kind, c.name);
                (c.action.clone(), c.namespace.clone(), what, c.diff.clone())
            })
            .collect()
    }

    #[test]
    fn shared_quota_parts_are_planned_as_the_controller_sizes_them() {
        let cluster = |parts: Vec<(Live, Value)>, policies: Vec<TenantPolicy>| ClusterState {
            policies,
            namespaces: vec![namespace("a"), namespace("b")],
            quota_status: parts
                .iter()
                .map(|(l, s)| (l.key.clone(), s.clone()))
                .collect(),
            live: parts.into_iter().map(|(l, _)| l).collect(),
            classes: BTreeSet::new(),
            unmanaged: Vec::new(),
        };
        // A new policy: a part per namespace, created at zero (sized once its use is known).
        let empty = cluster(vec![], vec![]);
        let plans = compute(&[policy("team", "", shared("20"))], &empty).unwrap();
        let create = |ns: &str| {
            (
                "create".into(),
                ns.into(),
                "ResourceQuota/budget".into(),
                None,
            )
        };
        assert_eq!(listed(&plans), vec![create("a"), create("b")]);
        assert!(render(&plans).contains("create   ResourceQuota/budget"));

        // Converged at 20 pods: a part of 5 each (a chunk of hard/2n), a using 2 and b idle:
        // both hold at least half the target headroom of 5.
        let live_policy = policy("team", "uid-team", shared("20"));
        let converged = cluster(
            vec![part("a", "5", "2"), part("b", "5", "0")],
            vec![live_policy.clone()],
        );
        let unchanged = compute(&[live_policy], &converged).unwrap();
        assert_eq!(
            listed(&unchanged),
            vec![],
            "a converged budget plans nothing"
        );
        // Raised to 40: a's headroom of 3 is below half the new target of 10 (40/4), so a grows
        // to its use + 10; b's 5 is not below half of it: b is left alone.
        let raised = compute(&[policy("team", "uid-team", shared("40"))], &converged).unwrap();
        let update = |ns: &str, pods: &str| {
            let diff = Some(json!({"hard": {"pods": pods}}));
            (
                "update".into(),
                ns.into(),
                "ResourceQuota/budget".into(),
                diff,
            )
        };
        assert_eq!(listed(&raised), vec![update("a", "12")]);
        // Lowered to 6: the parts (10) exceed it; the largest surplus above use + target (1) is
        // b's 4, and lowering b to 1 alone brings them to 6. a keeps its part.
        let lowered = compute(&[policy("team", "uid-team", shared("6"))], &converged).unwrap();
        assert_eq!(listed(&lowered), vec![update("b", "1")]);
    }

    #[test]
    fn existing_objects_without_labels_are_planned_as_adoption_policy_decides() {
        let quota = |name: &str, pods: &str| Existing {
            live: Live {
                key: ObjectKey {
                    kind: Kind::ResourceQuota,
                    namespace: "team".into(),
                    name: name.into(),
                },
                uid: format!("uid-{name}"),
                resource_version: "3".into(),
                labels: BTreeMap::new(),
                owner_references: Vec::new(),
                spec: json!({"hard": {"pods": pods}}),
                foreign_manager: None,
                deleting: false,
            },
            finalizers: Vec::new(),
        };
        let cluster = ClusterState {
            policies: Vec::new(),
            namespaces: vec![NamespaceInfo {
                name: "team".into(),
                labels: std::borrow::Cow::Owned(BTreeMap::new()),
                terminating: false,
            }],
            live: Vec::new(),
            quota_status: BTreeMap::new(),
            classes: BTreeSet::new(),
            unmanaged: vec![quota("same", "10"), quota("other", "99")],
        };
        let plan = |adoption: &str| {
            let planned = policy(
                "team",
                "",
                json!({"namespaces": ["team"], "adoptionPolicy": adoption, "resourceQuotas": [
                    {"name": "same", "hard": {"pods": "10"}},
                    {"name": "other", "hard": {"pods": "10"}},
                    {"name": "new", "hard": {"pods": "10"}}]}),
            );
            let plans = compute(&[planned], &cluster).unwrap();
            plans[0]
                .changes
                .iter()
                .map(|c| (c.name.clone(), c.action.clone(), c.diff.clone()))
                .collect::<Vec<_>>()
        };
        let row = |name: &str, action: &str, diff: Option<Value>| {
            (name.to_owned(), action.to_owned(), diff)
        };
        assert_eq!(
            plan("Always"),
            [
                row("new", "create", None),
                row("other", "adopt", Some(json!({"hard": {"pods": "10"}}))),
                row("same", "adopt", None),
            ]
        );
        assert_eq!(
            plan("IfIdentical"),
            [
                row("new", "create", None),
                row("other", "untouched", None),
                row("same", "adopt", None),
            ]
        );
        assert_eq!(
            plan("Never"),
            [
                row("new", "create", None),
                row("other", "untouched", None),
                row("same", "untouched", None),
            ]
        );
        let text = render(&compute(&[policy("team", "", json!({"namespaces": ["team"], "resourceQuotas": [{"name": "same", "hard": {"pods": "10"}}]}))], &cluster).unwrap());
        assert!(
            text.contains(
                "untouched ResourceQuota/same (exists, not adopted: adoptionPolicy Never)"
            ),
            "{text}"
        );
    }

    #[test]
    fn an_immutable_class_change_is_planned_as_a_recreation_and_new_classes_are_capped() {
        let live_policy = policy(
            "storage",
            "uid-1",
            json!({"storage": {"classes": [{"name": "fast", "provisioner": "x"}]}}),
        );
        let owner = Owner {
            name: "storage".into(),
            uid: "uid-1".into(),
        };
        let class = Live {
            key: ObjectKey {
                kind: Kind::StorageClass,
                namespace: String::new(),
                name: "fast".into(),
            },
            uid: "class-uid".into(),
            resource_version: "1".into(),
            labels: managed_labels("storage"),
            owner_references: vec![owner.owner_reference()],
            spec: json!({"provisioner": "x", "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate"}),
            foreign_manager: None,
            deleting: false,
        };
        let cluster = ClusterState {
            policies: vec![live_policy],
            namespaces: vec![NamespaceInfo {
                name: "team".into(),
                labels: std::borrow::Cow::Owned(BTreeMap::new()),
                terminating: false,
            }],
            live: vec![class],
            quota_status: BTreeMap::new(),
            classes: BTreeSet::from(["fast".to_owned(), "legacy".to_owned()]),
            unmanaged: Vec::new(),
        };
        let planned = policy(
            "storage",
            "",
            json!({"namespaces": ["team"], "storage": {
                "classes": [{"name": "fast", "provisioner": "x", "reclaimPolicy": "Retain"}],
                "allowedClasses": ["fast"]}}),
        );
        let plans = compute(&[planned], &cluster).unwrap();
        let changes: Vec<(&str, &str, &str)> = plans[0]
            .changes
            .iter()
            .map(|c| (c.action.as_str(), c.kind.as_str(), c.name.as_str()))
            .collect();
        assert_eq!(
            changes,
            vec![
                ("recreate", "StorageClass", "fast"),
                ("create", "ResourceQuota", "tenantry-storage"),
            ]
        );
        assert_eq!(
            plans[0].changes[0].diff,
            Some(json!({"reclaimPolicy": "Retain"}))
        );
    }
}
