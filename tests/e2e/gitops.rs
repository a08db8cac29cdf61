//! GitOps with the engines themselves: Flux kustomize-controller's apply, prune, wait and drift
//! engine (github.com/fluxcd/pkg/ssa, run by hack/gitops/flux), Argo CD's server-side diff,
//! server-side apply sync and foreground prune (as gitops-engine does them, through kubectl), and
//! the Helm chart (charts/tenantry, linted and rendered by a real helm).
//!
//! The samples of config/samples are committed to a directory standing in for the git
//! repository, made unique per test as a kustomize overlay would be: a name suffix, the test's
//! shard label, namespace selectors narrowed by a run label, named namespaces and StorageClasses
//! renamed. So they govern only the test's namespaces, whatever else runs in parallel.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use crate::harness::{
    DEADLINE, Operator, SHARD_LABEL, TestNamespace, TestPolicy, client, eventually, kubectl,
    kubectl_with_input, repo_root, unique_name, wait_gone, wait_present,
};
use crate::smoke::install_crd;

/// The label that narrows the samples' namespace selectors to one test run.
const RUN_LABEL: &str = "e2e.tenantry.io/gitops-run";

fn bin(name: &str) -> PathBuf {
    let state = std::env::var_os("TENANTRY_STATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".tenantry"));
    let path = state.join("bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: hack/controlplane/build.sh builds it (make cluster-up)",
        path.display()
    );
    path
}

/// Multi-document YAML as JSON values (empty documents skipped).
fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|doc| serde::Deserialize::deserialize(doc).expect("valid YAML"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// The test's namespaces, standing in for mia, testing and the labelled ones.
struct Namespaces {
    run: String,
    governed: TestNamespace,
    trino: TestNamespace,
    mia: TestNamespace,
    testing: TestNamespace,
}

impl Namespaces {
    async fn create(client: &Client, run: &str) -> Self {
        let governed = [("tenantry.io/governed", "true"), (RUN_LABEL, run)];
        let trino = [
            ("tenantry.io/governed", "true"),
            ("tenantry.io/workload", "trino"),
            (RUN_LABEL, run),
        ];
        Self {
            run: run.into(),
            governed: TestNamespace::create_labelled(client, "e2e-gitops-gov", &governed).await,
            trino: TestNamespace::create_labelled(client, "e2e-gitops-trino", &trino).await,
            mia: TestNamespace::create(client, "e2e-gitops-mia").await,
            testing: TestNamespace::create(client, "e2e-gitops-testing").await,
        }
    }

    fn rename(&self, name: &str) -> String {
        match name {
            "mia" => self.mia.name.clone(),
            "testing" => self.testing.name.clone(),
            other => panic!("a sample names namespace {other}: map it in Namespaces::rename"),
        }
    }
}

/// Every sample policy (file name, object) as this run commits it: unique, sharded, scoped.
fn samples(operator: &Operator, ns: &Namespaces) -> Vec<(String, Value)> {
    let dir = repo_root().join("config/samples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        for mut policy in documents(&std::fs::read_to_string(&file).unwrap()) {
            scope_sample(&mut policy, &operator.shard, ns);
            out.push((
                file.file_name().unwrap().to_string_lossy().into_owned(),
                policy,
            ));
        }
    }
    assert!(out.len() >= 5, "samples found: {}", out.len());
    out
}

/// What an overlay for this run changes in a sample; everything else is as committed.
fn scope_sample(policy: &mut Value, shard: &str, ns: &Namespaces) {
    let run = &ns.run;
    let name = policy["metadata"]["name"].as_str().unwrap().to_owned();
    policy["metadata"]["name"] = json!(format!("{name}-{run}"));
    policy["metadata"]["labels"] = json!({SHARD_LABEL: shard});
    let spec = &mut policy["spec"];
    // (get_mut, not indexing: IndexMut would insert nulls for absent fields.)
    let selector = spec
        .get_mut("namespaceSelector")
        .and_then(|s| s.get_mut("matchLabels"));
    if let Some(labels) = selector.and_then(Value::as_object_mut) {
        labels.insert(RUN_LABEL.into(), json!(run));
    }
    if let Some(names) = spec.get_mut("namespaces").and_then(Value::as_array_mut) {
        for n in names.iter_mut() {
            *n = json!(ns.rename(n.as_str().unwrap()));
        }
    }
    let class = |c: &str| format!("{c}-{run}");
    if let Some(storage) = spec.get_mut("storage") {
        let classes = storage.get_mut("classes").and_then(Value::as_array_mut);
        for c in classes.into_iter().flatten() {
            c["name"] = json!(class(c["name"].as_str().unwrap()));
        }
        if let Some(allowed) = storage
            .get_mut("allowedClasses")
            .and_then(Value::as_array_mut)
        {
            for c in allowed.iter_mut() {
                *c = json!(class(c.as_str().unwrap()));
            }
        }
        if let Some(quotas) = storage.get_mut("quotas").and_then(Value::as_object_mut) {
            *quotas = std::mem::take(quotas)
                .into_iter()
                .map(|(k, v)| (class(&k), v))
                .collect();
        }
    }
}

/// Names of the policies, guards that delete them (waiting for the finalizer) when dropped.
fn guards(policies: &[(String, Value)]) -> Vec<TestPolicy> {
    policies
        .iter()
        .map(|(_, p)| TestPolicy {
            name: p["metadata"]["name"].as_str().unwrap().into(),
        })
        .collect()
}

fn policy_named<'a>(policies: &'a [(String, Value)], sample: &str) -> &'a Value {
    &policies
        .iter()
        .find(|(file, _)| file == sample)
        .unwrap_or_else(|| panic!("no sample {sample}"))
        .1
}

fn name_of(policy: &Value) -> String {
    policy["metadata"]["name"].as_str().unwrap().to_owned()
}

/// The live policy as JSON, or None once it is gone.
async fn live_policy(client: &Client, name: &str) -> Option<Value> {
    let api: Api<tenantry::api::TenantPolicy> = Api::all(client.clone());
    api.get_opt(name)
        .await
        .unwrap()
        .map(|p| serde_json::to_value(p).unwrap())
}

async fn wait_all_ready(client: &Client, policies: &[TestPolicy]) {
    for policy in policies {
        policy.wait_ready(client).await;
    }
}

/// The retained object stays, no longer labelled or owned by Tenantry.
async fn assert_released(client: &Client, ns: &str, name: &str) {
    let quota: ResourceQuota = Api::namespaced(client.clone(), ns)
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("{ns}/{name} was retained: {e}"));
    assert!(
        !quota.labels().contains_key("tenantry.io/policy") && quota.owner_references().is_empty(),
        "{ns}/{name} still Tenantry's: {:?} {:?}",
        quota.labels(),
        quota.owner_references()
    );
}

// ----------------------------------------------------------------------------------------------
// Flux
// ----------------------------------------------------------------------------------------------

/// (subject, action) entries of a Flux change set.
type Changes = Vec<(String, String)>;

/// A directory standing in for the git repository of a Flux Kustomization.
struct Repo {
    dir: PathBuf,
    inventory: PathBuf,
    kustomization: String,
}

impl Repo {
    fn new(run: &str) -> Self {
        let root = repo_root()
            .join("target/e2e-logs")
            .join(format!("flux-{run}"));
        let dir = root.join("repo");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(
            repo_root().join(tenantry::crd::CRD_PATH),
            dir.join("00-crd.yaml"),
        )
        .unwrap();
        Self {
            dir,
            inventory: root.join("inventory.json"),
            kustomization: run.into(),
        }
    }

    fn commit(&self, file: &str, object: &Value) {
        std::fs::write(self.dir.join(file), serde_yaml::to_string(object).unwrap()).unwrap();
    }

    fn remove(&self, file: &str) {
        std::fs::remove_file(self.dir.join(file)).unwrap();
    }

    fn args(&self, command: &str) -> Vec<String> {
        vec![
            command.into(),
            "-path".into(),
            self.dir.display().to_string(),
            "-name".into(),
            self.kustomization.clone(),
            "-inventory".into(),
            self.inventory.display().to_string(),
        ]
    }

    /// One kustomize-controller reconciliation: Ok(changes, pruned) or Err(its error).
    fn reconcile(&self) -> Result<(Changes, Changes), String> {
        let out = Command::new(bin("flux-ssa"))
            .args(self.args("reconcile"))
            .env("KUBECONFIG", crate::harness::kubeconfig_path())
            .output()
            .expect("run flux-ssa");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() {
            return Err(stderr);
        }
        let result: Value = serde_json::from_slice(&out.stdout).expect("flux-ssa prints JSON");
        let entries = |key: &str| {
            result[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    (
                        c["subject"].as_str().unwrap().to_owned(),
                        c["action"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        };
        Ok((entries("changes"), entries("pruned")))
    }
}

/// The action Flux reports for a TenantPolicy (subjects are `Kind/name` for cluster scope).
fn action_on(changes: &[(String, String)], name: &str) -> Option<String> {
    changes
        .iter()
        .find(|(s, _)| s == &format!("TenantPolicy/{name}"))
        .map(|(_, a)| a.clone())
}

/// `flux-ssa drift` running in the background; its rounds arrive on a channel.
struct Drift {
    child: std::process::Child,
    rounds: mpsc::Receiver<Value>,
    seen: Vec<Value>,
}

impl Drift {
    fn start(repo: &Repo) -> Self {
        let mut args = repo.args("drift");
        args.truncate(5); // no -inventory: drift detection never prunes
        args.extend(["-interval".into(), "500ms".into()]);
        let mut child = Command::new(bin("flux-ssa"))
            .args(args)
            .env("KUBECONFIG", crate::harness::kubeconfig_path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run flux-ssa drift");
        let stdout = child.stdout.take().unwrap();
        let (tx, rounds) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx
                    .send(serde_json::from_str(&line).expect("a JSON round"))
                    .is_err()
                {
                    break;
                }
            }
        });
        Self {
            child,
            rounds,
            seen: Vec::new(),
        }
    }

    /// Waits until `n` more rounds have completed (each a full dry-run diff of every object).
    fn rounds_more(&mut self, n: usize) {
        let target = self.seen.len() + n;
        let start = Instant::now();
        while self.seen.len() < target {
            let left = DEADLINE.saturating_sub(start.elapsed());
            match self.rounds.recv_timeout(left) {
                Ok(round) => self.seen.push(round),
                Err(e) => panic!("flux-ssa drift: no round within {DEADLINE:?} ({e})"),
            }
        }
    }

    /// Closes stdin (one last round), waits for the process; all the rounds it ran.
    fn finish(mut self) -> Vec<Value> {
        drop(self.child.stdin.take());
        let status = self.child.wait().unwrap();
        self.seen.extend(self.rounds.iter());
        assert!(status.success(), "flux-ssa drift failed: {status}");
        self.seen
    }
}

/// Every TenantPolicy that a drift round found different or re-applied.
fn tenant_policy_drift(rounds: &[Value]) -> Vec<String> {
    let mut drifted = Vec::new();
    for round in rounds {
        let found = round["drifted"].as_array().unwrap();
        for entry in found.iter().chain(round["applied"].as_array().unwrap()) {
            if entry["subject"]
                .as_str()
                .unwrap()
                .starts_with("TenantPolicy/")
            {
                drifted.push(format!("round {}: {entry}", round["round"]));
            }
        }
    }
    drifted
}

/// `kubectl patch` of a policy's spec (not in git): the next drift round reports it and
/// re-applies the repository's version.
async fn assert_in_cluster_edit_reverted(client: &Client, repo: &Repo, name: &str) {
    let patch = r#"{"spec":{"priority":3}}"#;
    let out = kubectl(&["patch", "tenantpolicy", name, "--type=merge", "-p", patch]);
    assert!(out.success, "{}", out.stderr);
    let rounds = Drift::start(repo).finish();
    let subject = format!("TenantPolicy/{name}");
    let first = &rounds[0];
    let names =
        |key: &str, action: Option<&str>| {
            first[key].as_array().unwrap().iter().any(|e| {
                e["subject"] == subject.as_str() && action.is_none_or(|a| e["action"] == a)
            })
        };
    assert!(
        names("drifted", None) && names("applied", Some("configured")),
        "Flux missed an in-cluster edit of {name}: {first}"
    );
    let reverted = live_policy(client, name).await.unwrap();
    assert_eq!(
        reverted["spec"]["priority"], 0,
        "Flux did not revert the edit"
    );
}

#[tokio::test]
async fn flux_applies_waits_prunes_and_sees_no_drift_while_tenantry_works() {
    let client = client().await;
    install_crd(&client).await;
    let run = unique_name("flux");
    let mut operator = Operator::start(&run).await;
    let ns = Namespaces::create(&client, &run).await;
    let policies = samples(&operator, &ns);
    let policy_guards = guards(&policies);
    let repo = Repo::new(&run);
    for (file, policy) in &policies {
        repo.commit(file, policy);
    }

    // First revision: the CRD (stage one, waited for), then the policies; all Current.
    let (changes, pruned) = repo.reconcile().expect("the first reconciliation");
    for (_, policy) in &policies {
        let name = name_of(policy);
        assert_eq!(
            action_on(&changes, &name).as_deref(),
            Some("created"),
            "{changes:?}"
        );
    }
    assert!(pruned.is_empty(), "{pruned:?}");
    wait_all_ready(&client, &policy_guards).await;
    // The narrowed selectors reach the run's namespaces: trino's PDB in its namespace.
    wait_present::<PodDisruptionBudget>(&client, &ns.trino.name, "trino-worker").await;

    // Drift detection, round after round, while Tenantry selects a new namespace (status
    // writes), restarts, and reverts a deleted LimitRange.
    let baseline = name_of(policy_named(&policies, "baseline.yaml"));
    let before = live_policy(&client, &baseline).await.unwrap();
    let started = Instant::now();
    let mut drift = Drift::start(&repo);
    drift.rounds_more(2);
    let labels = [("tenantry.io/governed", "true"), (RUN_LABEL, run.as_str())];
    let third = TestNamespace::create_labelled(&client, "e2e-gitops-gov3", &labels).await;
    eventually("baseline to select a third namespace", || {
        let client = client.clone();
        let baseline = baseline.clone();
        async move {
            let p = live_policy(&client, &baseline).await?;
            (p["status"]["selectedNamespaces"] == 3 && p["status"]["readyNamespaces"] == 3)
                .then_some(())
        }
    })
    .await;
    drift.rounds_more(2);
    operator.stop();
    let restarted_operator = Operator::start(&run).await;
    drift.rounds_more(2);
    let ranges: Api<LimitRange> = Api::namespaced(client.clone(), &third.name);
    let range = wait_present::<LimitRange>(&client, &third.name, "defaults").await;
    ranges
        .delete("defaults", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the deleted LimitRange to be recreated", || {
        let ranges = ranges.clone();
        let uid = range.uid();
        async move {
            let now = ranges.get_opt("defaults").await.unwrap()?;
            (now.uid() != uid).then_some(())
        }
    })
    .await;
    drift.rounds_more(2);
    let rounds = drift.finish();
    let window = started.elapsed();
    let after = live_policy(&client, &baseline).await.unwrap();
    assert_ne!(
        before["metadata"]["resourceVersion"], after["metadata"]["resourceVersion"],
        "Tenantry did not write baseline's status during the window"
    );
    assert_eq!(
        before["metadata"]["generation"],
        after["metadata"]["generation"]
    );
    let drifted = tenant_policy_drift(&rounds);
    assert!(
        drifted.is_empty(),
        "Flux saw drift on TenantPolicies:\n{}",
        drifted.join("\n")
    );
    println!(
        "flux drift detection: {} rounds over {:.1} s, {} objects each, 0 TenantPolicy drifted \
         (other objects re-applied: {})",
        rounds.len(),
        window.as_secs_f64(),
        rounds[0]["objects"],
        rounds
            .iter()
            .map(|r| r["applied"].as_array().unwrap().len())
            .sum::<usize>()
    );

    // The detector is live: an edit made in the cluster, not in git, is drift; Flux reverts it.
    assert_in_cluster_edit_reverted(&client, &repo, &baseline).await;

    // A changed policy applies and becomes Current again.
    let mut changed = policy_named(&policies, "baseline.yaml").clone();
    changed["spec"]["resourceQuotas"][0]["hard"]["pods"] = json!("31");
    repo.commit("baseline.yaml", &changed);
    let (changes, _) = repo.reconcile().expect("the changed revision");
    assert_eq!(
        action_on(&changes, &baseline).as_deref(),
        Some("configured"),
        "{changes:?}"
    );
    let others: Vec<_> = policies
        .iter()
        .map(|(_, p)| name_of(p))
        .filter(|n| n != &baseline)
        .collect();
    for name in &others {
        assert_eq!(
            action_on(&changes, name).as_deref(),
            Some("unchanged"),
            "{name}: {changes:?}"
        );
    }
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), &ns.governed.name);
    eventually("the quota to follow the changed policy", || {
        let quotas = quotas.clone();
        async move {
            let q = quotas.get_opt("compute").await.unwrap()?;
            let pods = q.spec?.hard?.get("pods")?.0.clone();
            (pods == "31").then_some(())
        }
    })
    .await;

    // An invalid policy fails the apply, naming the field; nothing of that revision is applied.
    let mut invalid = policy_named(&policies, "team-mia.yaml").clone();
    invalid["metadata"]["name"] = json!(format!("invalid-{run}"));
    invalid["spec"]["resourceQuotas"][0]["hard"]["pods"] = json!("lots");
    repo.commit("zz-invalid.yaml", &invalid);
    // The same revision also changes a valid policy, which must stay as it was.
    let mia_policy = policy_named(&policies, "team-mia.yaml");
    let mut mia_changed = mia_policy.clone();
    mia_changed["spec"]["resourceQuotas"][0]["hard"]["pods"] = json!("41");
    repo.commit("team-mia.yaml", &mia_changed);
    let error = repo
        .reconcile()
        .expect_err("an invalid policy must fail the apply");
    assert!(
        error.contains("spec.resourceQuotas[0].hard.pods")
            && error.contains(&format!("invalid-{run}")),
        "the error names neither the field nor the object: {error}"
    );
    assert!(
        live_policy(&client, &format!("invalid-{run}"))
            .await
            .is_none()
    );
    let mia_live = live_policy(&client, &name_of(mia_policy)).await.unwrap();
    assert_eq!(
        mia_live["spec"]["resourceQuotas"][0]["hard"]["pods"], "40",
        "a failed revision was partly applied"
    );
    repo.remove("zz-invalid.yaml");
    repo.commit("team-mia.yaml", mia_policy);

    // Removed from the repository: pruned, and the finalizer completes under both policies.
    let mia = name_of(policy_named(&policies, "team-mia.yaml"));
    let testing = name_of(policy_named(&policies, "testing.yaml"));
    assert_eq!(
        policy_named(&policies, "testing.yaml")["spec"]["deletionPolicy"],
        "Retain"
    );
    repo.remove("team-mia.yaml");
    repo.remove("testing.yaml");
    let (_, pruned) = repo.reconcile().expect("the revision without two policies");
    for name in [&mia, &testing] {
        assert_eq!(
            action_on(&pruned, name).as_deref(),
            Some("deleted"),
            "{pruned:?}"
        );
        eventually(&format!("{name} to be gone"), || {
            let client = client.clone();
            async move { live_policy(&client, name).await.is_none().then_some(()) }
        })
        .await;
    }
    wait_gone::<ResourceQuota>(&client, &ns.mia.name, "compute").await;
    wait_gone::<ResourceQuota>(&client, &ns.mia.name, "besteffort-pods").await;
    assert_released(&client, &ns.testing.name, "compute").await;
    drop(third);
    drop(policy_guards);
    drop(restarted_operator);
}

// ----------------------------------------------------------------------------------------------
// Argo CD
// ----------------------------------------------------------------------------------------------

const ARGO_MANAGER: &str = "argocd-controller";

/// The desired object as Argo CD sends it: with its tracking annotation (annotation tracking,
/// Argo CD 3's default) for the Application `app`.
fn argo_target(policy: &Value, app: &str) -> Value {
    let mut target = policy.clone();
    let id = format!("{app}:tenantry.io/TenantPolicy:/{}", name_of(policy));
    target["metadata"]["annotations"] = json!({"argocd.argoproj.io/tracking-id": id});
    target
}

/// A sync with ServerSideApply=true: gitops-engine's kubectl apply options (server-side,
/// force-conflicts, its field manager, validation on).
fn argo_sync(target: &Value) {
    let out = kubectl_with_input(
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager",
            ARGO_MANAGER,
            "-f",
            "-",
        ],
        Some(&target.to_string()),
    );
    assert!(
        out.success,
        "Argo CD sync of {}: {}",
        name_of(target),
        out.stderr
    );
}

/// ServerSideDiff's prediction: the same apply as a server dry run, validation off, printed as
/// JSON with managedFields (gitops-engine's K8sServerSideDryRunner).
fn argo_predict(target: &Value) -> Value {
    let out = kubectl_with_input(
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager",
            ARGO_MANAGER,
            "--dry-run=server",
            "--validate=false",
            "-o",
            "json",
            "--show-managed-fields",
            "-f",
            "-",
        ],
        Some(&target.to_string()),
    );
    assert!(
        out.success,
        "dry run of {}: {}",
        name_of(target),
        out.stderr
    );
    serde_json::from_str(&out.stdout).unwrap()
}

/// What Argo CD strips before comparing a predicted live object with the live one
/// (gitops-engine pkg/diff: Normalize removes metadata.creationTimestamp; serverSideDiff removes
/// metadata.managedFields, metadata.resourceVersion and the last-applied annotation; Argo CD's
/// default `ignoreResourceStatusField: all` adds an ignore rule for /status). Nothing else: the
/// known-types normalizer has no fields configured for TenantPolicy, and remarshal does not
/// apply to a type outside the client-go scheme.
fn argo_normalize(object: &Value) -> Value {
    let mut object = object.clone();
    let metadata = object["metadata"].as_object_mut().unwrap();
    for field in ["managedFields", "resourceVersion", "creationTimestamp"] {
        metadata.remove(field);
    }
    if let Some(annotations) = metadata
        .get_mut("annotations")
        .and_then(Value::as_object_mut)
    {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
    object.as_object_mut().unwrap().remove("status");
    object
}

/// JSON paths at which two values differ (semantically: numbers by value).
fn differences(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<_> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let (va, vb) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                differences(&format!("{path}.{k}"), va, vb, out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                differences(&format!("{path}[{i}]"), va, vb, out);
            }
        }
        // YAML re-serializers write 0.0 as 0: a number is its value.
        (Value::Number(x), Value::Number(y)) if x.as_f64() == y.as_f64() => {}
        _ if a != b => out.push(format!("{path}: {a} != {b}")),
        _ => {}
    }
}

/// Argo CD's server-side diff of one policy: the differing paths (empty: Synced).
async fn argo_diff(client: &Client, target: &Value) -> Vec<String> {
    let predicted = argo_predict(target);
    // removeWebhookMutation keeps only what argocd-controller owns in the prediction; it fails
    // the diff when the prediction has no managedFields entry of that manager.
    let owned = predicted["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["manager"] == ARGO_MANAGER && m["operation"] == "Apply");
    assert!(
        owned,
        "the prediction has no {ARGO_MANAGER} Apply entry: {predicted}"
    );
    let live = live_policy(client, &name_of(target)).await.unwrap();
    let mut out = Vec::new();
    differences(
        "",
        &argo_normalize(&predicted),
        &argo_normalize(&live),
        &mut out,
    );
    out
}

#[tokio::test]
async fn argo_cd_server_side_diff_is_clean_sync_converges_and_foreground_prune_completes() {
    let client = client().await;
    install_crd(&client).await;
    let run = unique_name("argo");
    let operator = Operator::start(&run).await;
    let ns = Namespaces::create(&client, &run).await;
    let policies = samples(&operator, &ns);
    let guards = guards(&policies);
    let app = format!("tenants-{run}");
    for (_, policy) in &policies {
        argo_sync(&argo_target(policy, &app));
    }
    wait_all_ready(&client, &guards).await;

    // After Tenantry reconciled (finalizer added, status written): every prediction equals live.
    for (_, policy) in &policies {
        let target = argo_target(policy, &app);
        let diff = argo_diff(&client, &target).await;
        assert!(
            diff.is_empty(),
            "{} OutOfSync:\n{}",
            name_of(policy),
            diff.join("\n")
        );
    }

    // An edited policy: the diff shows exactly the edit; the sync converges to Synced and Ready.
    let baseline = argo_target(policy_named(&policies, "baseline.yaml"), &app);
    let mut edited = baseline.clone();
    edited["spec"]["resourceQuotas"][0]["hard"]["pods"] = json!("31");
    // The raw prediction also carries the next generation; removeWebhookMutation takes
    // metadata.generation from live (no manager owns it), so Argo CD shows the spec line only.
    let diff = argo_diff(&client, &edited).await;
    assert_eq!(
        diff,
        [
            ".metadata.generation: 2 != 1",
            r#".spec.resourceQuotas[0].hard.pods: "31" != "30""#
        ],
        "{diff:?}"
    );
    argo_sync(&edited);
    let guard = TestPolicy {
        name: name_of(&edited),
    };
    let status = guard.wait_ready(&client).await;
    assert_eq!(status.observed_generation, Some(2));
    let diff = argo_diff(&client, &edited).await;
    assert!(
        diff.is_empty(),
        "OutOfSync after the sync:\n{}",
        diff.join("\n")
    );
    std::mem::forget(guard); // the guards below delete it

    // Pruned as Argo CD prunes (foreground propagation): the finalizer completes for Delete and
    // Retain alike; Retain leaves the objects, released.
    let api: Api<tenantry::api::TenantPolicy> = Api::all(client.clone());
    let mia = name_of(policy_named(&policies, "team-mia.yaml"));
    let testing = name_of(policy_named(&policies, "testing.yaml"));
    for name in [&mia, &testing] {
        api.delete(name, &DeleteParams::foreground()).await.unwrap();
    }
    for name in [&mia, &testing] {
        eventually(&format!("{name} pruned"), || {
            let client = client.clone();
            async move { live_policy(&client, name).await.is_none().then_some(()) }
        })
        .await;
    }
    wait_gone::<ResourceQuota>(&client, &ns.mia.name, "compute").await;
    assert_released(&client, &ns.testing.name, "compute").await;
    drop(guards);
    drop(operator);
}

// ----------------------------------------------------------------------------------------------
// Helm
// ----------------------------------------------------------------------------------------------

fn chart() -> String {
    repo_root().join("charts/tenantry").display().to_string()
}

/// Runs helm with its state under target/: (success, stdout, stderr).
fn helm_run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin("helm"))
        .args(args)
        .env("HELM_CACHE_HOME", repo_root().join("target/helm/cache"))
        .env("HELM_CONFIG_HOME", repo_root().join("target/helm/config"))
        .env("HELM_DATA_HOME", repo_root().join("target/helm/data"))
        .output()
        .expect("run helm");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// helm that must succeed; its stdout.
fn helm(args: &[&str]) -> String {
    let (success, stdout, stderr) = helm_run(args);
    assert!(success, "helm {}: {stderr}\n{stdout}", args.join(" "));
    stdout
}

/// `helm template` of the chart (CRDs included) with extra arguments.
fn render(extra: &[&str]) -> Vec<Value> {
    let chart = chart();
    let mut args = vec!["template", "tenantry", chart.as_str(), "--include-crds"];
    args.extend(extra);
    documents(&helm(&args))
}

/// Objects by (apiVersion, kind, namespace, name).
fn by_identity(objects: Vec<Value>) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for o in objects {
        let key = format!(
            "{} {} {}/{}",
            o["apiVersion"].as_str().unwrap(),
            o["kind"].as_str().unwrap(),
            o["metadata"]["namespace"].as_str().unwrap_or(""),
            o["metadata"]["name"].as_str().unwrap()
        );
        assert!(out.insert(key.clone(), o).is_none(), "{key} twice");
    }
    out
}

#[test]
fn helm_lint_is_clean() {
    let out = helm(&["lint", "--strict", &chart()]);
    assert!(
        out.contains("1 chart(s) linted, 0 chart(s) failed"),
        "{out}"
    );
    assert!(
        !out.contains("[WARNING]") && !out.contains("[ERROR]"),
        "{out}"
    );
}

#[test]
fn helm_template_renders_the_objects_of_config_default() {
    let chart = by_identity(render(&[]));
    let kustomize = kubectl(&[
        "kustomize",
        repo_root().join("config/default").to_str().unwrap(),
    ]);
    assert!(kustomize.success, "{}", kustomize.stderr);
    let kustomize = by_identity(documents(&kustomize.stdout));
    assert_eq!(
        chart.keys().collect::<Vec<_>>(),
        kustomize.keys().collect::<Vec<_>>(),
        "the chart and config/default render different objects"
    );
    let mut wrong = Vec::new();
    for (key, object) in &chart {
        differences(key, object, &kustomize[key], &mut wrong);
    }
    assert!(
        wrong.is_empty(),
        "chart != config/default:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn helm_values_set_image_replicas_resources_namespace_and_admission() {
    let custom = by_identity(render(&[
        "--set",
        "namespace.name=platform-tenantry",
        "--set",
        "namespace.create=false",
        "--set",
        "image.repository=registry.example/tenantry",
        "--set",
        "image.tag=9.9.9",
        "--set",
        "replicas=3",
        "--set",
        "resources.limits.memory=1Gi",
    ]));
    let deployment = &custom["apps/v1 Deployment platform-tenantry/tenantry"];
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "registry.example/tenantry:9.9.9");
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert_eq!(container["resources"]["limits"]["memory"], "1Gi");
    assert_eq!(container["resources"]["requests"]["cpu"], "100m");
    assert!(
        container["args"]
            .as_array()
            .unwrap()
            .contains(&json!("--leader-election-namespace=platform-tenantry")),
        "{}",
        container["args"]
    );
    for key in [
        "v1 ServiceAccount platform-tenantry/tenantry",
        "rbac.authorization.k8s.io/v1 Role platform-tenantry/tenantry-leader-election",
        "rbac.authorization.k8s.io/v1 RoleBinding platform-tenantry/tenantry-leader-election",
        "v1 Service platform-tenantry/tenantry-metrics",
    ] {
        assert!(
            custom.contains_key(key),
            "{key} missing: {:?}",
            custom.keys()
        );
    }
    assert!(
        !custom.keys().any(|k| k.contains(" Namespace ")),
        "namespace.create=false"
    );
    for key in [
        "rbac.authorization.k8s.io/v1 ClusterRoleBinding /tenantry",
        "rbac.authorization.k8s.io/v1 RoleBinding platform-tenantry/tenantry-leader-election",
    ] {
        assert_eq!(
            custom[key]["subjects"][0]["namespace"], "platform-tenantry",
            "{key}"
        );
    }
    let protect = custom["admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy /tenantry-protect-managed-objects"].to_string();
    assert!(
        protect.contains("system:serviceaccount:platform-tenantry:tenantry"),
        "{protect}"
    );
    assert!(!protect.contains("tenantry-system"), "{protect}");

    let without = by_identity(render(&["--set", "admissionPolicies.enabled=false"]));
    assert!(
        !without
            .keys()
            .any(|k| k.contains("ValidatingAdmissionPolicy")),
        "{:?}",
        without.keys()
    );
    // Three policies, each with its binding.
    assert_eq!(without.len() + 6, by_identity(render(&[])).len());
}

#[test]
fn helm_refuses_bad_values_naming_them() {
    let chart = chart();
    for (set, named) in [
        ("replicas=0", "/replicas"),
        ("namespace.name=Not_A_Name", "/namespace/name"),
        (
            "admissionPolicies.enabled=maybe",
            "/admissionPolicies/enabled",
        ),
        ("replica=3", "'replica' not allowed"),
    ] {
        let (success, _, stderr) = helm_run(&["template", "tenantry", &chart, "--set", set]);
        assert!(!success && stderr.contains(named), "--set {set}: {stderr}");
    }
}

async fn create_namespace(client: &Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    match Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("creating {name}: {e}"),
    }
}

fn server_dry_run(objects: &[Value]) -> String {
    let stream = objects
        .iter()
        .map(|o| serde_yaml::to_string(o).unwrap())
        .collect::<Vec<_>>()
        .join("---\n");
    let out = kubectl_with_input(
        &["apply", "--dry-run=server", "--server-side", "-f", "-"],
        Some(&stream),
    );
    assert!(out.success, "server dry run of the chart: {}", out.stderr);
    out.stdout
}

#[tokio::test]
async fn helm_install_passes_a_server_dry_run_in_the_default_and_another_namespace() {
    let client = client().await;
    create_namespace(&client, "tenantry-system").await;
    let out = server_dry_run(&render(&[]));
    assert_eq!(out.lines().count(), render(&[]).len(), "{out}");
    let other = TestNamespace::create(&client, "e2e-helm").await;
    let set = format!("namespace.name={}", other.name);
    let objects = render(&["--set", &set, "--set", "namespace.create=false"]);
    let out = server_dry_run(&objects);
    assert!(
        out.contains("deployment.apps/tenantry serverside-applied (server dry run)"),
        "{out}"
    );
}
