//! The window a shared budget leaves, measured on the real control plane (issue 15): quota
//! admission ignores a ResourceQuota whose `status.hard` kube-controller-manager has not written
//! yet, so a part just created limits nothing for a moment. A namespace that already uses what a
//! budget has left joins it (the label flip that makes the policy select it) while a Deployment
//! in it scales up far past the budget, so every pod it gains from then on is past the budget.
//!
//! Evidence from the API server itself: watches order the part's creation, its first
//! `status.hard` and each pod's creation by resourceVersion (on this control plane etcd
//! revisions, one counter across all objects); its audit log says, to the microsecond, when it
//! answered the part's creation and Tenantry's first write to it, and when it received each pod
//! creation that succeeded. A request received before the part existed may be stored after it
//! (the ReplicaSet controller creates a batch concurrently): it was judged before the part was
//! there and counts as what the namespace ran when it joined. A sampler lists the pods and the
//! parts every 50 ms from outside, as in `shared_quotas.rs`.
//!
//! With `config/admission` installed: no pod requested once Tenantry had seen the part enforced
//! (and relabelled it) gets in, asserted; how many requested earlier did, printed. Without it (on
//! a control plane of the test's own: the shared one has the policy bound cluster-wide for the
//! other tests) the test prints what the window let through; nothing is promised there, so
//! nothing is asserted of it.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicy;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Pod, ResourceQuota};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::{Client, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;
use tenantry::api::{ENFORCED_LABEL, SHARED_QUOTA_LABEL};

use crate::harness::{
    Operator, OwnControlPlane, TestNamespace, TestPolicy, client, eventually, repo_root,
    unique_name,
};
use crate::install::state_dir;
use crate::security::install_admission_policy;
use crate::shared_quotas::{
    Maxima, create_deployment, deployment, in_namespace, milli, parts, pods, sampler,
};
use crate::smoke::install_crd;

/// The budget, and what the namespace already in it runs.
const BUDGET: usize = 10;
const MEMBER_PODS: usize = 2;
const PART: &str = "team-budget";
/// What the window policy's refusal says (config/admission/shared_quota_window.yaml).
const WINDOW_REFUSAL: &str = "that the quota controller has not enforced yet";

/// What one join showed.
#[derive(Debug)]
struct Measured {
    /// The joiner's pods by creation: before its part was created, between the part's creation
    /// and its first `status.hard` (the window), after.
    before: usize,
    within: usize,
    after: usize,
    /// From the part's creation to its `status.hard`, as the watch received them.
    window: Duration,
    /// Pod creations the window policy refused (the ReplicaSet controller's FailedCreate Events).
    refused_in_window: i32,
    /// Pod creations in the joiner that succeeded although the API server received them after it
    /// had answered the part's creation (its audit log, to the microsecond). The joiner joins
    /// using what the budget has left, so each is a pod past the budget. One received before
    /// was in flight when the part appeared: nothing can refuse what was judged before it.
    admitted_after_part: usize,
    /// Of those, the ones requested after Tenantry's first write to the part (relabelling it
    /// enforced, `tenantry.io/enforced`) was answered: the window policy refuses until it sees
    /// that label, which quota admission's own cache has had Tenantry's whole reaction time to
    /// catch up with. What the window policy closes.
    admitted_after_relabel: usize,
    /// How long after the part's creation the last of them was requested.
    leaked_within: Option<Duration>,
    /// The run's pods at the end (none is deleted), and what the sampler saw.
    total: usize,
    /// What the parts' `status.used` counted of them at the end: kube-controller-manager counts
    /// a part's use when it first writes its status (and again when spec changes, a pod goes, or
    /// it resyncs: 5 minutes), and quota admission adds what it admits; a pod it let through
    /// unjudged is not counted until then.
    counted: usize,
    maxima: Maxima,
}

type Recorded<K> = Arc<Mutex<Vec<(Instant, WatchEvent<K>)>>>;

/// Every event of a watch from `version` on, with when it arrived, until the task is aborted.
fn record<K>(api: Api<K>, version: String) -> (Recorded<K>, tokio::task::JoinHandle<()>)
where
    K: Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let events: Recorded<K> = Arc::default();
    let sink = events.clone();
    let task = tokio::spawn(async move {
        let stream = api
            .watch(&WatchParams::default(), &version)
            .await
            .expect("watch");
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            let event = event.expect("watch event");
            sink.lock().unwrap().push((Instant::now(), event));
        }
    });
    (events, task)
}

fn revision<K: kube::Resource>(object: &K) -> u64 {
    // Opaque to clients in general; etcd revisions on this control plane (see the module doc).
    object
        .meta()
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .expect("a numeric resourceVersion")
}

/// The part's creation and its first version carrying `status.hard` for each resource of its
/// spec: (revision, when the watch received it) of each.
fn window_of(events: &Recorded<ResourceQuota>) -> Option<((u64, Instant), (u64, Instant))> {
    let events = events.lock().unwrap();
    let part = |q: &ResourceQuota| q.name_any() == PART;
    let created = events.iter().find_map(|(at, e)| match e {
        WatchEvent::Added(q) if part(q) => Some((revision(q), *at)),
        _ => None,
    })?;
    let enforced = events.iter().find_map(|(at, e)| match e {
        WatchEvent::Added(q) | WatchEvent::Modified(q) if part(q) => {
            let spec = q.spec.as_ref()?.hard.as_ref()?;
            let status = q.status.as_ref()?.hard.as_ref()?;
            spec.keys()
                .all(|r| status.contains_key(r))
                .then(|| (revision(q), *at))
        }
        _ => None,
    })?;
    Some((created, enforced))
}

/// Raises the Deployment's replicas every 20 ms (up to 400) until `stop`: by one until `burst`,
/// then by 100 at once and by 20 from then on. Each raise makes the ReplicaSet controller try to create pods at once (whatever its
/// backoff after refusals), in batches created concurrently, so creations are attempted all
/// through the join, many at a time around it.
fn scaler(
    api: Api<Deployment>,
    burst: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<i32> {
    tokio::spawn(async move {
        let mut replicas = 0;
        while !stop.load(Ordering::Relaxed) && replicas < 400 {
            replicas += match (burst.load(Ordering::Relaxed), replicas < 100) {
                (false, _) => 1,
                (true, true) => 100,
                (true, false) => 20,
            };
            let patch = Patch::Merge(json!({"spec": {"replicas": replicas}}));
            api.patch("scaling", &PatchParams::default(), &patch)
                .await
                .expect("scale");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        replicas
    })
}

/// Both parts enforced as written and the budget used up (or over), as status says: what the
/// parts' `status.used` count then.
async fn settled(client: &Client, policy: &TestPolicy) -> Option<usize> {
    let parts = parts(client, &policy.name).await;
    let enforced = parts.len() == 2
        && parts.iter().all(|q| {
            milli(q, "spec", "pods").is_some()
                && milli(q, "spec", "pods") == milli(q, "status", "pods")
        });
    let status = policy.get(client).await.status?;
    let budget = status.shared_quotas.first()?;
    let exhausted = budget.namespaces == 2 && budget.exhausted == ["pods"];
    let counted: i128 = parts.iter().filter_map(|q| milli(q, "used", "pods")).sum();
    (enforced && exhausted).then_some((counted / 1000) as usize)
}

/// Each pod the watch saw created, with its creation revision.
fn creations(events: &Recorded<Pod>) -> Vec<(String, u64)> {
    let events = events.lock().unwrap();
    (events.iter())
        .filter_map(|(_, e)| match e {
            WatchEvent::Added(p) => Some((p.name_any(), revision(p))),
            _ => None,
        })
        .collect()
}

/// What the API server's audit log (`state`/logs/audit.log, see hack/cluster.sh) says of
/// `namespace`: when it answered the part's creation, and Tenantry's first patch of it after
/// (relabelling it enforced, with its sizing if any), and when it received each pod creation
/// there that succeeded. Audit times are UTC to the microsecond in one fixed format: they compare
/// as strings.
struct Audited {
    part_created: String,
    part_patched: Option<String>,
    pods_received: Vec<String>,
}

fn audited(state: &Path, namespace: &str) -> Audited {
    let log = std::fs::read_to_string(state.join("logs/audit.log")).expect("the audit log");
    let mut audited = Audited {
        part_created: String::new(),
        part_patched: None,
        pods_received: Vec::new(),
    };
    for line in log.lines().filter(|l| l.contains(namespace)) {
        let Ok(e) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let object = &e["objectRef"];
        let succeeded = object["namespace"] == namespace
            && object["subresource"].is_null()
            && e["responseStatus"]["code"]
                .as_u64()
                .is_some_and(|c| c < 300);
        let answered = e["stageTimestamp"].as_str().unwrap_or("").to_owned();
        let part = object["resource"] == "resourcequotas" && object["name"] == PART;
        match e["verb"].as_str() {
            Some("create") if succeeded && part => audited.part_created = answered,
            Some("patch") if succeeded && part && audited.part_patched.is_none() => {
                audited.part_patched = Some(answered)
            }
            Some("create") if succeeded && object["resource"] == "pods" => {
                let received = e["requestReceivedTimestamp"].as_str().unwrap_or("");
                audited.pods_received.push(received.to_owned())
            }
            _ => {}
        }
    }
    assert!(
        !audited.part_created.is_empty(),
        "the part's creation is not in the audit log: a control plane started before \
         hack/cluster.sh audited pod and quota creations? make cluster-down cluster-up"
    );
    audited
}

/// Microseconds from `from` to `to`, two audit times of the same day.
fn micros_between(from: &str, to: &str) -> i64 {
    let of_day = |t: &str| {
        let clock = t.split('T').nth(1).unwrap_or("").trim_end_matches('Z');
        let mut parts = clock.split(':');
        let mut next = || parts.next().unwrap_or("0").parse::<f64>().unwrap_or(0.0);
        let (h, m, s) = (next(), next(), next());
        ((h * 3600.0 + m * 60.0 + s) * 1e6).round() as i64
    };
    of_day(to) - of_day(from)
}

/// Pod creations the window policy refused in `namespace`, as the ReplicaSet controller reports
/// them (FailedCreate Events, aggregated with a count).
async fn refused_by_the_window_policy(client: &Client, namespace: &str) -> i32 {
    let events = Api::<Event>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .expect("list events");
    (events.items.iter())
        .filter(|e| e.reason.as_deref() == Some("FailedCreate"))
        .filter(|e| e.message.as_deref().unwrap_or("").contains(WINDOW_REFUSAL))
        .map(|e| e.count.unwrap_or(1))
        .sum()
}

/// A member namespace running [`MEMBER_PODS`] in a budget of [`BUDGET`] pods; a second namespace
/// joins it while its Deployment scales up to far more than the budget.
async fn join_while_scaling(client: &Client, operator: &Operator, state: &Path) -> Measured {
    let team = unique_name("team");
    let member = TestNamespace::create_labelled(client, "sq-win-in", &[("e2e-team", &team)]).await;
    let joiner = TestNamespace::create(client, "sq-win-join").await;
    member.wait_for_default_service_account(client).await;
    joiner.wait_for_default_service_account(client).await;
    let policy = TestPolicy::create(
        client,
        operator,
        "sq-window",
        json!({
            "namespaceSelector": {"matchLabels": {"e2e-team": team}},
            "sharedQuotas": [{"name": PART, "hard": {"pods": BUDGET.to_string()}}],
        }),
    )
    .await;
    policy.wait_ready(client).await;
    crate::shared_quotas::wait_parts_enforced(client, &policy.name, 1, "pods").await;
    let run = unique_name("run");
    let create = |ns: &str, name: &str, replicas: usize| {
        let d = deployment(name, &run, replicas as i32, None);
        let ns = ns.to_owned();
        async move { create_deployment(client, &ns, &d).await }
    };
    create(&member.name, "steady", MEMBER_PODS).await;
    eventually("the member's pods", || async {
        (in_namespace(&pods(client, &run).await, &member.name) == MEMBER_PODS).then_some(())
    })
    .await;
    create(&joiner.name, "scaling", 0).await;

    // From here on every pod and quota event in the joiner, in the API server's order.
    let pod_api = Api::<Pod>::namespaced(client.clone(), &joiner.name);
    let quota_api = Api::<ResourceQuota>::namespaced(client.clone(), &joiner.name);
    let now = pod_api.list_metadata(&ListParams::default()).await.unwrap();
    let from = now.metadata.resource_version.expect("a list revision");
    let (pod_events, pod_watch) = record(pod_api, from.clone());
    let (quota_events, quota_watch) = record(quota_api, from);
    let stop_sampling = Arc::new(AtomicBool::new(false));
    let sampling = sampler(
        client.clone(),
        run.clone(),
        policy.name.clone(),
        "pods",
        stop_sampling.clone(),
    );
    let (burst, stop_scaling) = (Arc::default(), Arc::new(AtomicBool::new(false)));
    let deployments = Api::<Deployment>::namespaced(client.clone(), &joiner.name);
    let scaling = scaler(deployments, Arc::clone(&burst), stop_scaling.clone());

    // The scale-up is under way (ungoverned, so nothing refuses it) and the joiner uses what the
    // budget has left: the namespace joins, and anything it gains from then on is past the budget.
    eventually("the joiner's scale-up to be under way", || async {
        let running = in_namespace(&pods(client, &run).await, &joiner.name);
        (running >= BUDGET - MEMBER_PODS).then_some(())
    })
    .await;
    burst.store(true, Ordering::Relaxed);
    let label = Patch::Merge(json!({"metadata": {"labels": {"e2e-team": team}}}));
    Api::<Namespace>::all(client.clone())
        .patch(&joiner.name, &PatchParams::default(), &label)
        .await
        .expect("label the joiner");
    let ((created, created_at), (enforced, enforced_at)) =
        eventually("the joiner's part to be created and enforced", || async {
            window_of(&quota_events)
        })
        .await;

    // Scaling on until the budget is settled: both parts enforced as written and the budget
    // used up (or over), as status says.
    let counted = eventually("the budget to settle with the joiner in it", || {
        settled(client, &policy)
    })
    .await;
    stop_scaling.store(true, Ordering::Relaxed);
    let replicas = scaling.await.expect("scaler");
    stop_sampling.store(true, Ordering::Relaxed);
    let maxima = sampling.await.expect("sampler");
    let final_pods = pods(client, &run).await;
    let joined: Vec<String> = final_pods
        .iter()
        .filter(|p| p.namespace().as_deref() == Some(joiner.name.as_str()))
        .map(|p| p.name_any())
        .collect();
    // Every pod there is has been seen created by the watch.
    let created_pods = eventually("the watch to have seen every pod's creation", || async {
        let added = creations(&pod_events);
        let seen = |name: &String| added.iter().any(|(n, _)| n == name);
        joined.iter().all(seen).then_some(added)
    })
    .await;
    pod_watch.abort();
    quota_watch.abort();
    assert!(
        (joined.len() as i32) < replicas,
        "the Deployment wanted more than was admitted (it was still scaling up)"
    );
    let refused_in_window = refused_by_the_window_policy(client, &joiner.name).await;
    let audit = audited(state, &joiner.name);
    let patched =
        (audit.part_patched.clone()).expect("Tenantry's relabelling of the part is audited");
    let after = |t: &&String| **t > audit.part_created;
    let leaked: Vec<&String> = audit.pods_received.iter().filter(after).collect();
    let count = |keep: &dyn Fn(u64) -> bool| created_pods.iter().filter(|(_, r)| keep(*r)).count();
    let measured = Measured {
        before: count(&|r| r < created),
        within: count(&|r| r > created && r < enforced),
        after: count(&|r| r > enforced),
        window: enforced_at.saturating_duration_since(created_at),
        refused_in_window,
        admitted_after_part: leaked.len(),
        admitted_after_relabel: leaked.iter().filter(|t| ***t > patched).count(),
        leaked_within: (leaked.iter())
            .map(|t| micros_between(&audit.part_created, t))
            .max()
            .map(|us| Duration::from_micros(us.max(0) as u64)),
        total: final_pods.len(),
        counted,
        maxima,
    };
    drop(policy);
    measured
}

/// Waits until the API server enforces the window policy as this checkout has it: in a namespace
/// of its own, a part-like quota (labelled as parts are) that Tenantry would not have seen
/// enforced yet (`tenantry.io/enforced: "false"`), and a server-side dry run of a creation
/// there, refused once the policy is loaded.
async fn window_policy_in_force(client: &Client) {
    let ns = TestNamespace::create(client, "sq-win-probe").await;
    ns.wait_for_default_service_account(client).await;
    let quotas = Api::<ResourceQuota>::namespaced(client.clone(), &ns.name);
    let probe: ResourceQuota = serde_json::from_value(json!({
        "metadata": {"name": "probe", "labels": {SHARED_QUOTA_LABEL: "probe", ENFORCED_LABEL: "false"}},
        "spec": {"hard": {"pods": "1"}},
    }))
    .unwrap();
    quotas.create(&PostParams::default(), &probe).await.unwrap();
    // Enforced: only the label is left to refuse for (as the policy before it did not).
    eventually("the probe quota's status", || async {
        let q = quotas.get("probe").await.ok()?;
        milli(&q, "status", "pods").map(|_| ())
    })
    .await;
    let configmaps = Api::<ConfigMap>::namespaced(client.clone(), &ns.name);
    let attempt: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "attempt"}})).unwrap();
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    eventually("the window policy to be in force", || async {
        match configmaps.create(&dry_run, &attempt).await {
            Err(kube::Error::Api(e)) if e.message.contains(WINDOW_REFUSAL) => Some(()),
            _ => None,
        }
    })
    .await;
}

#[tokio::test]
async fn with_the_window_policy_nothing_requested_once_a_joining_namespaces_part_is_enforced_gets_past_it()
 {
    let client = client().await;
    install_crd(&client).await;
    install_admission_policy();
    window_policy_in_force(&client).await;
    let operator = Operator::start(&unique_name("sq-window")).await;
    let m = join_while_scaling(&client, &operator, &state_dir()).await;
    report("window policy installed", &m);
    assert!(m.maxima.samples > 2, "the sampler ran: {m:?}");
    assert_eq!(
        m.admitted_after_relabel, 0,
        "pods requested once the part was enforced and relabelled got past the budget: {m:?}"
    );
    assert!(m.maxima.enforced <= BUDGET as i128 * 1000, "{m:?}");
}

/// One line of figures for the README.
fn report(what: &str, m: &Measured) {
    println!(
        "{what}: the part was enforced {:.0} ms after its creation; joiner pods created \
         before/within/after it (resourceVersions): {}/{}/{}; admitted although requested after \
         the part was created (audit log): {}, the last {:?} after it, {} once Tenantry had \
         relabelled it; creations refused by the window policy: {}; {} \
         pods in the budget of {BUDGET}, {} counted by the parts; at most {} pods and {} enforced \
         in {} samples",
        m.window.as_secs_f64() * 1000.0,
        m.before,
        m.within,
        m.after,
        m.admitted_after_part,
        m.leaked_within,
        m.admitted_after_relabel,
        m.refused_in_window,
        m.total,
        m.counted,
        m.maxima.pods,
        m.maxima.enforced / 1000,
        m.maxima.samples
    );
}

#[tokio::test]
async fn without_the_window_policy_what_a_namespace_joining_while_scaling_up_lets_through() {
    let plane = OwnControlPlane::up(&unique_name("window"), 0);
    let client = plane.client().await;
    let crd = repo_root().join(tenantry::crd::CRD_PATH);
    plane.kubectl(&["apply", "--server-side", "-f", crd.to_str().unwrap()]);
    plane.kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd/tenantpolicies.tenantry.io",
        "--timeout=60s",
    ]);
    let policies = Api::<ValidatingAdmissionPolicy>::all(client.clone())
        .list_metadata(&ListParams::default())
        .await
        .unwrap();
    assert!(
        policies.items.is_empty(),
        "this control plane has no admission policy"
    );
    let operator =
        Operator::start_with(&unique_name("sq-window"), &[], Some(&plane.kubeconfig)).await;
    let m = join_while_scaling(&client, &operator, &plane.state).await;
    report("no window policy", &m);
    assert!(m.maxima.samples > 2, "the sampler ran: {m:?}");
    assert_eq!(m.refused_in_window, 0, "no policy refused anything: {m:?}");
    drop(operator);
    drop(plane);
}
