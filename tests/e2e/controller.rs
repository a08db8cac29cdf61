//! The TenantPolicy controller against the real control plane: selection, building, overlaps,
//! deletionPolicy, drift, ownership, status and restarts. Each test runs its own operator process
//! scoped to its own policies, so tests run in parallel and counters are the test's own.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{LimitRange, Namespace, Pod, ResourceQuota};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tenantry::api::{MANAGED_BY_LABEL, POLICY_LABEL};

use crate::harness::{
    Canary, Namespaced, Operator, TestNamespace, TestPolicy, api_state, client, event_notes,
    eventually, kubectl, kubectl_ok, ready_condition, unique_name, wait_event_notes, wait_gone,
    wait_present,
};
use crate::smoke::install_crd;

fn defaults_limit_range(name: &str) -> Value {
    json!({"name": name, "limits": [{"type": "Container",
        "default": {"cpu": "300m", "memory": "200Mi"},
        "defaultRequest": {"cpu": "200m", "memory": "100Mi"},
        "max": {"cpu": "2", "memory": "1Gi"}}]})
}

fn quota(name: &str, pods: &str) -> Value {
    json!({"name": name, "hard": {"pods": pods, "requests.cpu": "4", "requests.memory": "8Gi"}})
}

fn pdb(name: &str) -> Value {
    json!({"name": name, "selector": {"matchLabels": {"app": name}}, "minAvailable": 2})
}

async fn setup(shard_prefix: &str) -> (Client, Operator) {
    setup_with(shard_prefix, &[]).await
}

/// As [`setup`], the operator run with extra arguments.
async fn setup_with(shard_prefix: &str, args: &[&str]) -> (Client, Operator) {
    let client = client().await;
    install_crd(&client).await;
    let operator = Operator::start_with(&unique_name(shard_prefix), args, None).await;
    (client, operator)
}

/// Names of the objects of kind K in a namespace carrying Tenantry's labels, with their policy.
async fn managed<K>(client: &Client, ns: &str) -> BTreeMap<String, String>
where
    K: Namespaced,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    api.list(&kube::api::ListParams::default().labels(tenantry::api::MANAGED_SELECTOR))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|o| {
            (
                o.name_any(),
                o.labels().get(POLICY_LABEL).cloned().unwrap_or_default(),
            )
        })
        .collect()
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]}
    }))
    .unwrap()
}

#[tokio::test]
async fn governed_namespace_gives_besteffort_pods_defaults_and_enforces_the_quota() {
    let (client, operator) = setup("besteffort").await;
    let ns = TestNamespace::create(&client, "e2e-mia").await;
    let policy = TestPolicy::create(
        &client,
        &operator,
        "team-mia",
        json!({
            "namespaces": [ns.name],
            "limitRanges": [defaults_limit_range("defaults")],
            "resourceQuotas": [quota("compute", "2")],
        }),
    )
    .await;
    let status = policy.wait_ready(&client).await;
    assert_eq!(
        (status.selected_namespaces, status.ready_namespaces),
        (1, 1)
    );
    ns.wait_for_default_service_account(&client).await;
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), &ns.name);
    eventually("the quota's status.hard", || {
        let quotas = quotas.clone();
        async move { quotas.get("compute").await.ok()?.status?.hard }
    })
    .await;

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let created = pods
        .create(&PostParams::default(), &pod("app-1"))
        .await
        .expect("first pod admitted");
    let resources = created.spec.unwrap().containers[0]
        .resources
        .clone()
        .unwrap();
    assert_eq!(resources.requests.unwrap()["cpu"].0, "200m");
    assert_eq!(resources.limits.unwrap()["memory"].0, "200Mi");
    assert_eq!(
        created.status.unwrap().qos_class.as_deref(),
        Some("Burstable")
    );

    pods.create(&PostParams::default(), &pod("app-2"))
        .await
        .expect("second pod admitted");
    let err = pods
        .create(&PostParams::default(), &pod("app-3"))
        .await
        .expect_err("a third pod exceeds pods: 2");
    let kube::Error::Api(s) = err else {
        panic!("{err:?}")
    };
    assert_eq!(s.code, 403);
    assert!(
        s.message.contains("exceeded quota: compute"),
        "{}",
        s.message
    );
    drop(policy);
}

#[tokio::test]
async fn selection_by_label_and_by_name_and_system_namespaces_only_when_named() {
    let (client, operator) = setup("select").await;
    let tenant = unique_name("t");
    let labelled = TestNamespace::create_labelled(
        &client,
        "e2e-labelled",
        &[("e2e.tenantry.io/tenant", &tenant)],
    )
    .await;
    let named = TestNamespace::create(&client, "e2e-named").await;
    let other = TestNamespace::create(&client, "e2e-other").await;
    // Selects by name label too: kube-system carries kubernetes.io/metadata.name, yet is never
    // selected by a selector; kube-public is, because it is named.
    let lr_name = unique_name("sys");
    let policy = TestPolicy::create(&client, &operator, "select", json!({
        "namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In",
            "values": [labelled.name, "kube-system", "kube-node-lease"]}]},
        "namespaces": [named.name, "kube-public"],
        "limitRanges": [defaults_limit_range(&lr_name)],
    }))
    .await;
    let status = policy.wait_ready(&client).await;
    assert_eq!(
        (status.selected_namespaces, status.ready_namespaces),
        (3, 3)
    );
    for ns in [labelled.name.as_str(), named.name.as_str(), "kube-public"] {
        assert_eq!(
            managed::<LimitRange>(&client, ns).await.get(&lr_name),
            Some(&policy.name),
            "{ns}"
        );
    }
    for ns in [other.name.as_str(), "kube-system", "kube-node-lease"] {
        assert!(
            !managed::<LimitRange>(&client, ns)
                .await
                .contains_key(&lr_name),
            "{ns} must not be governed"
        );
    }

    // A label match alone selects: a selector on a team label.
    let label_policy_lr = unique_name("bylabel");
    let by_label = TestPolicy::create(
        &client,
        &operator,
        "bylabel",
        json!({
            "namespaceSelector": {"matchLabels": {"e2e.tenantry.io/tenant": tenant}},
            "limitRanges": [defaults_limit_range(&label_policy_lr)],
        }),
    )
    .await;
    assert_eq!(by_label.wait_ready(&client).await.selected_namespaces, 1);
    assert!(
        managed::<LimitRange>(&client, &labelled.name)
            .await
            .contains_key(&label_policy_lr)
    );
    drop((policy, by_label));
    wait_gone::<LimitRange>(&client, "kube-public", &lr_name).await;
}

#[tokio::test]
async fn unselected_namespaces_lose_objects_with_delete_and_keep_them_unlabelled_with_retain() {
    let (client, operator) = setup("unselect").await;
    let tenant = unique_name("t");
    let by_label = TestNamespace::create_labelled(
        &client,
        "e2e-bylabel",
        &[("e2e.tenantry.io/tenant", &tenant)],
    )
    .await;
    let by_name = TestNamespace::create(&client, "e2e-byname").await;
    let delete = TestPolicy::create(
        &client,
        &operator,
        "deleting",
        json!({
            "namespaceSelector": {"matchLabels": {"e2e.tenantry.io/tenant": tenant}},
            "limitRanges": [defaults_limit_range("defaults")],
        }),
    )
    .await;
    let retain = TestPolicy::create(
        &client,
        &operator,
        "retaining",
        json!({
            "namespaces": [by_name.name], "deletionPolicy": "Retain",
            "resourceQuotas": [quota("compute", "10")],
        }),
    )
    .await;
    delete.wait_ready(&client).await;
    retain.wait_ready(&client).await;
    wait_present::<LimitRange>(&client, &by_label.name, "defaults").await;
    wait_present::<ResourceQuota>(&client, &by_name.name, "compute").await;

    // Label removed: Delete removes the objects.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .patch(
            &by_label.name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"e2e.tenantry.io/tenant": null}}})),
        )
        .await
        .unwrap();
    wait_gone::<LimitRange>(&client, &by_label.name, "defaults").await;

    // Name dropped: Retain keeps the object, without Tenantry's labels and owner.
    retain.set_spec(&client, json!({"namespaces": [], "deletionPolicy": "Retain", "resourceQuotas": [quota("compute", "10")]})).await;
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), &by_name.name);
    let kept = eventually("the retained quota to be released", || {
        let quotas = quotas.clone();
        async move {
            let q = quotas.get("compute").await.ok()?;
            (!q.labels().contains_key(MANAGED_BY_LABEL)).then_some(q)
        }
    })
    .await;
    assert!(!kept.labels().contains_key(POLICY_LABEL));
    assert!(
        kept.owner_references().is_empty(),
        "{:?}",
        kept.owner_references()
    );
    assert_eq!(kept.spec.unwrap().hard.unwrap()["pods"].0, "10");
    let status = retain.wait_ready(&client).await;
    assert_eq!(status.selected_namespaces, 0);
}

#[tokio::test]
async fn deleting_a_policy_garbage_collects_with_delete_and_keeps_with_retain() {
    let (client, operator) = setup("poldel").await;
    let ns = TestNamespace::create(&client, "e2e-poldel").await;
    let delete = TestPolicy::create(
        &client,
        &operator,
        "gc",
        json!({
            "namespaces": [ns.name], "limitRanges": [defaults_limit_range("defaults")],
        }),
    )
    .await;
    let retain = TestPolicy::create(&client, &operator, "keep", json!({
        "namespaces": [ns.name], "deletionPolicy": "Retain", "podDisruptionBudgets": [pdb("trino-worker")],
    }))
    .await;
    delete.wait_ready(&client).await;
    retain.wait_ready(&client).await;
    wait_present::<LimitRange>(&client, &ns.name, "defaults").await;
    wait_present::<PodDisruptionBudget>(&client, &ns.name, "trino-worker").await;

    drop(delete);
    wait_gone::<LimitRange>(&client, &ns.name, "defaults").await;
    drop(retain);
    let kept: PodDisruptionBudget = Api::namespaced(client.clone(), &ns.name)
        .get("trino-worker")
        .await
        .expect("retained");
    assert!(!kept.labels().contains_key(MANAGED_BY_LABEL));
    assert!(kept.owner_references().is_empty());
}

#[tokio::test]
async fn drift_is_reverted_from_the_watch_with_warning_events() {
    drift_is_reverted(&[]).await;
}

/// The same through kube-runtime's JSON watches (`--watch-encoding json`), which stay an option.
#[tokio::test]
async fn drift_is_reverted_from_json_watches_too() {
    drift_is_reverted(&["--watch-encoding", "json"]).await;
}

async fn drift_is_reverted(args: &[&str]) {
    let (client, operator) = setup_with("drift", args).await;
    let ns = TestNamespace::create(&client, "e2e-drift").await;
    let policy = TestPolicy::create(
        &client,
        &operator,
        "drift",
        json!({
            "namespaces": [ns.name],
            "limitRanges": [defaults_limit_range("defaults")],
            "resourceQuotas": [quota("compute", "20")],
        }),
    )
    .await;
    policy.wait_ready(&client).await;
    let ranges: Api<LimitRange> = Api::namespaced(client.clone(), &ns.name);
    let original = wait_present::<LimitRange>(&client, &ns.name, "defaults").await;

    ranges
        .delete("defaults", &DeleteParams::default())
        .await
        .unwrap();
    let uid = original.uid();
    let recreated = eventually("the deleted LimitRange to be recreated", || {
        let ranges = ranges.clone();
        let uid = uid.clone();
        async move {
            ranges
                .get_opt("defaults")
                .await
                .unwrap()
                .filter(|r| r.uid() != uid)
        }
    })
    .await;
    assert_eq!(recreated.spec, original.spec);

    kubectl_ok(&[
        "patch",
        "resourcequota",
        "compute",
        "-n",
        &ns.name,
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"hard":{"pods":"500","services":"3"}}}"#,
    ]);
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), &ns.name);
    eventually("the edited quota to be reverted exactly", || {
        let quotas = quotas.clone();
        async move {
            let hard = quotas.get("compute").await.ok()?.spec?.hard?;
            (hard.get("pods")?.0 == "20" && !hard.contains_key("services")).then_some(())
        }
    })
    .await;

    let notes = wait_event_notes(&client, &policy.name, "DriftCorrected", |n| n.len() >= 2).await;
    assert!(
        notes
            .iter()
            .any(|n| n.contains("LimitRange/defaults (deleted)")),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.contains("ResourceQuota/compute (changed by kubectl-patch)")),
        "{notes:?}"
    );
    assert!(operator.metric("tenantry_drift_corrections_total", &[]) >= 2.0);
}

#[tokio::test]
async fn an_existing_object_we_do_not_own_is_untouched_and_reported() {
    let (client, operator) = setup("notowned").await;
    let ns = TestNamespace::create(&client, "e2e-notowned").await;
    let ranges: Api<LimitRange> = Api::namespaced(client.clone(), &ns.name);
    let theirs: LimitRange = serde_json::from_value(json!({
        "metadata": {"name": "defaults", "labels": {"team": "theirs"}},
        "spec": {"limits": [{"type": "Container", "default": {"cpu": "1"}}]}
    }))
    .unwrap();
    let theirs = ranges
        .create(&PostParams::default(), &theirs)
        .await
        .unwrap();

    let policy = TestPolicy::create(
        &client,
        &operator,
        "notowned",
        json!({
            "namespaces": [ns.name],
            "limitRanges": [defaults_limit_range("defaults")],
            "resourceQuotas": [quota("compute", "20")],
        }),
    )
    .await;
    let status = policy.wait_condition(&client, "Stalled", "True").await;
    assert_eq!(
        (
            status.selected_namespaces,
            status.ready_namespaces,
            status.failed_namespaces
        ),
        (1, 0, 1)
    );
    assert_eq!(status.failures.len(), 1, "{:?}", status.failures);
    let failure = &status.failures[0];
    assert_eq!(
        (
            failure.namespace.as_str(),
            failure.kind.as_str(),
            failure.name.as_str(),
            failure.reason.as_str()
        ),
        (ns.name.as_str(), "LimitRange", "defaults", "NotOwned")
    );
    let ready = ready_condition(&status);
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "NotOwned")
    );

    // The rest of the policy still applies; the foreign object is exactly as it was.
    wait_present::<ResourceQuota>(&client, &ns.name, "compute").await;
    let after = ranges.get("defaults").await.unwrap();
    assert_eq!(after.resource_version(), theirs.resource_version());
    assert!(!after.labels().contains_key(MANAGED_BY_LABEL));
    let notes = wait_event_notes(&client, &policy.name, "NotOwned", |n| !n.is_empty()).await;
    assert!(
        notes[0].contains(&format!("{}/LimitRange/defaults", ns.name)),
        "{notes:?}"
    );

    // Once the owner removes theirs, the policy takes the name and recovers.
    ranges
        .delete("defaults", &DeleteParams::default())
        .await
        .unwrap();
    let status = policy.wait_ready(&client).await;
    assert_eq!((status.ready_namespaces, status.failed_namespaces), (1, 0));
    assert!(status.failures.is_empty());
}

#[tokio::test]
async fn overlapping_policies_split_each_kind_by_priority_then_name_without_flapping() {
    let (client, operator) = setup("overlap").await;
    let canary = Canary::create(&client, &operator).await;
    let ns = TestNamespace::create(&client, "e2e-overlap").await;
    let suffix = unique_name("o");
    let high = TestPolicy::create_named(&client, &operator, &format!("high-{suffix}"), json!({
        "priority": 10, "namespaces": [ns.name], "limitRanges": [defaults_limit_range("high-defaults")],
    }))
    .await;
    let low = TestPolicy::create_named(
        &client,
        &operator,
        &format!("low-{suffix}"),
        json!({
            "priority": 1, "namespaces": [ns.name],
            "limitRanges": [defaults_limit_range("low-defaults")],
            "resourceQuotas": [quota("low-compute", "20")],
        }),
    )
    .await;
    let tie_a = TestPolicy::create_named(
        &client,
        &operator,
        &format!("a-tie-{suffix}"),
        json!({
            "priority": 5, "namespaces": [ns.name], "podDisruptionBudgets": [pdb("a-budget")],
        }),
    )
    .await;
    let tie_b = TestPolicy::create_named(
        &client,
        &operator,
        &format!("b-tie-{suffix}"),
        json!({
            "priority": 5, "namespaces": [ns.name], "podDisruptionBudgets": [pdb("b-budget")],
        }),
    )
    .await;
    for p in [&high, &low, &tie_a, &tie_b] {
        p.wait_ready(&client).await;
    }
    let expect = |m: BTreeMap<String, String>, name: &str, policy: &TestPolicy| {
        assert_eq!(m, BTreeMap::from([(name.to_owned(), policy.name.clone())]));
    };
    let lr_done = eventually("only the winner's LimitRange", || {
        let client = client.clone();
        let ns = ns.name.clone();
        async move {
            let m = managed::<LimitRange>(&client, &ns).await;
            (m.len() == 1).then_some(m)
        }
    })
    .await;
    expect(lr_done, "high-defaults", &high);
    expect(
        managed::<ResourceQuota>(&client, &ns.name).await,
        "low-compute",
        &low,
    );
    let pdbs = eventually("only the tie winner's PDB", || {
        let client = client.clone();
        let ns = ns.name.clone();
        async move {
            let m = managed::<PodDisruptionBudget>(&client, &ns).await;
            (m.len() == 1).then_some(m)
        }
    })
    .await;
    expect(pdbs, "a-budget", &tie_a);

    for (loser, winner) in [(&low, &high), (&tie_b, &tie_a)] {
        let status = loser.wait_ready(&client).await;
        assert_eq!(status.shadowed_namespaces, 1);
        let ready = ready_condition(&status);
        assert_eq!(ready.reason, "Shadowed");
        assert!(ready.message.contains(&winner.name), "{}", ready.message);
    }
    assert!(!event_notes(&client, &low.name, "Shadowed").await.is_empty());

    // No flapping: after a full round of reconciles of all four policies (and the canary's),
    // nothing was written, as the API server shows it.
    let names = [&high, &low, &tie_a, &tie_b].map(|p| p.name.clone());
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let before = api_state(&client, &[&ns.name], &names).await;
    let _canary_ns = canary.settle(&client, &operator, 5, &[&ns.name]).await;
    assert_eq!(
        api_state(&client, &[&ns.name], &names).await,
        before,
        "a converged overlap must not write"
    );

    // The winner goes: the next in line takes the kind over.
    drop(high);
    let m = eventually("the low policy to take the LimitRange over", || {
        let client = client.clone();
        let ns = ns.name.clone();
        async move {
            let m = managed::<LimitRange>(&client, &ns).await;
            (m.len() == 1 && m.contains_key("low-defaults")).then_some(m)
        }
    })
    .await;
    expect(m, "low-defaults", &low);
    let status = low.wait_ready(&client).await;
    assert_eq!(status.shadowed_namespaces, 0);
}

#[tokio::test]
async fn a_restart_with_everything_converged_makes_zero_writes() {
    let (client, mut operator) = setup("restart").await;
    let canary = Canary::create(&client, &operator).await;
    let a = TestNamespace::create(&client, "e2e-restart-a").await;
    let b = TestNamespace::create(&client, "e2e-restart-b").await;
    let policy = TestPolicy::create(
        &client,
        &operator,
        "restart",
        json!({
            "namespaces": [a.name, b.name],
            "limitRanges": [defaults_limit_range("defaults")],
            "resourceQuotas": [quota("compute", "20")],
            "podDisruptionBudgets": [pdb("web")],
        }),
    )
    .await;
    policy.wait_ready(&client).await;
    let before = api_state(&client, &[&a.name, &b.name], &[&policy.name]).await;
    let tenantry =
        |state: &BTreeMap<String, String>| state.keys().filter(|k| !k.starts_with("Event")).count();
    assert_eq!(
        tenantry(&before),
        7,
        "6 objects and the policy: {before:#?}"
    );

    operator.stop();
    let restarted = Operator::start(&operator.shard).await;
    // The restarted operator's first reconcile of both policies, one more after its namespaces
    // and the canary's changed, and 10 s: the API server shows no write to any object, the policy or its Events.
    let _canary_ns = canary
        .settle(&client, &restarted, 2, &[&a.name, &b.name])
        .await;
    assert_eq!(
        api_state(&client, &[&a.name, &b.name], &[&policy.name]).await,
        before,
        "log: {}",
        restarted.log.display()
    );
    drop(policy);
    drop(canary);
    drop(restarted);
}

#[tokio::test]
async fn status_columns_and_kubectl_wait_show_the_policy() {
    let (client, operator) = setup("columns").await;
    let a = TestNamespace::create(&client, "e2e-cols-a").await;
    let b = TestNamespace::create(&client, "e2e-cols-b").await;
    let policy = TestPolicy::create(&client, &operator, "columns", json!({
        "priority": 3, "namespaces": [a.name, b.name], "limitRanges": [defaults_limit_range("defaults")],
    }))
    .await;
    let wait = kubectl(&[
        "wait",
        "--for=condition=Ready",
        &format!("tenantpolicy/{}", policy.name),
        "--timeout=60s",
    ]);
    assert!(wait.success, "kubectl wait: {}", wait.stderr);

    let table = kubectl_ok(&["get", "tp", &policy.name]);
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        row[..5],
        [policy.name.as_str(), "3", "2", "2", "Reconciled"],
        "{table}"
    );
    let wide = kubectl_ok(&["get", "tp", &policy.name, "-o", "wide"]);
    assert!(wide.contains("2/2 namespaces in policy"), "{wide}");

    let p = policy.get(&client).await;
    let status = p.status.unwrap();
    assert_eq!(status.observed_generation, p.metadata.generation);
    for c in &status.conditions {
        assert_eq!(c.observed_generation, p.metadata.generation, "{c:?}");
    }
    let types: Vec<&str> = status.conditions.iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(types, ["Ready", "Reconciling", "Stalled"]);
}

#[tokio::test]
async fn a_namespace_moving_between_teams_keeps_its_quota_in_place() {
    let (client, operator) = setup("move").await;
    let team = unique_name("t");
    let (from, to) = (format!("{team}-a"), format!("{team}-b"));
    let ns = TestNamespace::create_labelled(&client, "e2e-move", &[("e2e-team", &from)]).await;
    let policy = |label: &str, pods: &str, deletion: &str| {
        json!({"namespaceSelector": {"matchLabels": {"e2e-team": label}},
            "deletionPolicy": deletion,
            "resourceQuotas": [quota("team-compute", pods)],
            "limitRanges": [defaults_limit_range(&format!("{label}-defaults"))]})
    };
    // Leaving under Retain: the quota must be handed over, not released to nobody.
    let a = TestPolicy::create(&client, &operator, "move-a", policy(&from, "10", "Retain")).await;
    let b = TestPolicy::create(&client, &operator, "move-b", policy(&to, "20", "Delete")).await;
    a.wait_ready(&client).await;
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), &ns.name);
    let before = wait_present::<ResourceQuota>(&client, &ns.name, "team-compute").await;

    // A sampler from outside: the quota is listed every 20 ms until the move is complete.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = tokio::spawn({
        let (quotas, done) = (quotas.clone(), done.clone());
        async move {
            let (mut samples, mut missing) = (0, 0);
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                let listed = quotas.list(&Default::default()).await.unwrap();
                samples += 1;
                if !listed.items.iter().any(|q| q.name_any() == "team-compute") {
                    missing += 1;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            (samples, missing)
        }
    });
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let flip = json!({"metadata": {"labels": {"e2e-team": to}}});
    namespaces
        .patch(&ns.name, &PatchParams::default(), &Patch::Merge(flip))
        .await
        .unwrap();
    let after = eventually("the quota to be team b's, as b declares it", || {
        let quotas = quotas.clone();
        let b = b.name.clone();
        async move {
            let q = quotas.get_opt("team-compute").await.unwrap()?;
            let pods = q.spec.as_ref()?.hard.as_ref()?.get("pods")?.0.clone();
            (q.labels().get(POLICY_LABEL) == Some(&b) && pods == "20").then_some(q)
        }
    })
    .await;
    let limit_ranges = eventually("a's LimitRange released, b's in place", || {
        let client = client.clone();
        let ns = ns.name.clone();
        async move {
            let m = managed::<LimitRange>(&client, &ns).await;
            (m.len() == 1).then_some(m)
        }
    })
    .await;
    done.store(true, std::sync::atomic::Ordering::Release);
    let (samples, missing) = sampler.await.unwrap();
    eprintln!("quota sampled {samples} times during the move, missing {missing} times");
    assert!(samples > 0);
    assert_eq!(
        missing, 0,
        "the namespace was without its quota during the move"
    );
    assert_eq!(
        after.uid(),
        before.uid(),
        "taken over in place, not recreated"
    );
    let owners: Vec<String> = after
        .owner_references()
        .iter()
        .map(|r| r.name.clone())
        .collect();
    assert_eq!(
        owners,
        std::slice::from_ref(&b.name),
        "b is the only owner now"
    );
    assert_eq!(
        limit_ranges,
        BTreeMap::from([(format!("{to}-defaults"), b.name.clone())])
    );
    // a's own LimitRange, which b does not declare, was released under a's Retain.
    let released: LimitRange = Api::namespaced(client.clone(), &ns.name)
        .get(&format!("{from}-defaults"))
        .await
        .unwrap();
    assert!(released.labels().get(MANAGED_BY_LABEL).is_none());
    b.wait_ready(&client).await;
    let status = a.wait_ready(&client).await;
    assert_eq!(status.selected_namespaces, 0);
}

/// Two Applied Events about one policy with different notes (objects applied in one namespace,
/// then in another) both reach `kubectl get events`: kube-runtime's Recorder would fold them
/// into one series keeping the first note if their action were the same.
#[tokio::test]
async fn every_distinct_event_note_reaches_the_api_server() {
    let client = client().await;
    install_crd(&client).await;
    let team = unique_name("notes");
    let first = TestNamespace::create_labelled(&client, "e2e-notes-a", &[("notes", &team)]).await;
    let operator = Operator::start(&unique_name("notes")).await;
    let spec = json!({
        "namespaceSelector": {"matchLabels": {"notes": team}},
        "limitRanges": [defaults_limit_range("defaults")],
    });
    let policy = TestPolicy::create(&client, &operator, "notes", spec).await;
    policy.wait_ready(&client).await;
    let mentions = |notes: &[String], ns: &str| notes.iter().any(|n| n.contains(ns));
    let first_ns = first.name.clone();
    wait_event_notes(&client, &policy.name, "Applied", |n| mentions(n, &first_ns)).await;
    let second = TestNamespace::create_labelled(&client, "e2e-notes-b", &[("notes", &team)]).await;
    let second_ns = second.name.clone();
    let notes = wait_event_notes(&client, &policy.name, "Applied", |n| {
        mentions(n, &second_ns)
    })
    .await;
    assert!(
        mentions(&notes, &first.name) && mentions(&notes, &second.name),
        "both notes kept: {notes:?}"
    );
}
