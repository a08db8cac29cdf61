//! `tenantry plan`: what applying policy files would do, against the real cluster, checked by
//! then applying them.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use k8s_openapi::api::core::v1::{LimitRange, ResourceQuota};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};

use crate::harness::{
    Operator, SHARD_LABEL, TestNamespace, TestPolicy, client, eventually, kubeconfig_path,
    kubectl_with_input, repo_root, unique_name,
};
use crate::smoke::install_crd;

/// Runs `tenantry plan -f <dir> -o json`: (exit code, stdout, stderr).
pub(crate) fn tenantry_plan(dir: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .args(["plan", "-f", dir.to_str().unwrap(), "-o", "json"])
        .env("KUBECONFIG", kubeconfig_path())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

pub(crate) fn write_policies(dir: &std::path::Path, policies: &[Value]) {
    std::fs::create_dir_all(dir).unwrap();
    let text: Vec<String> = policies
        .iter()
        .map(|p| serde_yaml::to_string(p).unwrap())
        .collect();
    std::fs::write(dir.join("policies.yaml"), text.join("---\n")).unwrap();
}

#[tokio::test]
async fn plan_lists_exactly_what_applying_the_files_does_and_gates_with_its_exit_code() {
    let client = client().await;
    install_crd(&client).await;
    let operator = Operator::start(&unique_name("plan")).await;
    let a = TestNamespace::create(&client, "e2e-plan-a").await;
    let b = TestNamespace::create(&client, "e2e-plan-b").await;
    let base_name = unique_name("plan-base");
    let team_name = unique_name("plan-team");
    let lr = |cpu: &str| json!([{"name": "defaults", "limits": [{"type": "Container", "default": {"cpu": cpu}}]}]);
    let base_spec = |pods: &str| json!({"namespaces": [a.name, b.name], "limitRanges": lr("300m"), "resourceQuotas": [{"name": "compute", "hard": {"pods": pods}}]});
    let base = TestPolicy::create_named(&client, &operator, &base_name, base_spec("10")).await;
    base.wait_ready(&client).await;

    // The change under review: the base quota raised, and a team policy that overrides the
    // LimitRange in namespace a and adds a PDB there.
    let policy = |name: &str, spec: Value| json!({"apiVersion": "tenantry.io/v1alpha1", "kind": "TenantPolicy", "metadata": {"name": name, "labels": {SHARD_LABEL: operator.shard}}, "spec": spec});
    let dir = repo_root()
        .join("target/e2e-logs")
        .join(unique_name("plan-files"));
    let team_spec = json!({"priority": 10, "namespaces": [a.name], "limitRanges": lr("500m"),
        "podDisruptionBudgets": [{"name": "web", "selector": {"matchLabels": {"app": "web"}}, "minAvailable": 1}]});
    write_policies(
        &dir,
        &[
            policy(&base_name, base_spec("20")),
            policy(&team_name, team_spec),
        ],
    );

    let (code, stdout, stderr) = tenantry_plan(&dir);
    assert_eq!(code, 2, "changes pending: {stderr}");
    let plans: Vec<Value> = serde_json::from_str(&stdout).unwrap();
    let listed: BTreeSet<(String, String, String, String, String)> = plans
        .iter()
        .flat_map(|p| {
            p["changes"].as_array().unwrap().iter().map(move |c| {
                let s = |k: &str| c[k].as_str().unwrap_or("").to_owned();
                (
                    p["policy"].as_str().unwrap().to_owned(),
                    s("action"),
                    s("namespace"),
                    s("kind"),
                    s("name"),
                )
            })
        })
        .collect();
    let row = |p: &str, action: &str, ns: &str, kind: &str, name: &str| {
        (
            p.to_owned(),
            action.to_owned(),
            ns.to_owned(),
            kind.to_owned(),
            name.to_owned(),
        )
    };
    let expected = BTreeSet::from([
        row(&base_name, "update", &a.name, "ResourceQuota", "compute"),
        row(&base_name, "update", &b.name, "ResourceQuota", "compute"),
        row(&team_name, "update", &a.name, "LimitRange", "defaults"),
        row(&team_name, "create", &a.name, "PodDisruptionBudget", "web"),
    ]);
    assert_eq!(listed, expected, "{stdout}");
    let team = plans
        .iter()
        .find(|p| p["policy"] == team_name.as_str())
        .unwrap();
    let takeover = team["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "LimitRange")
        .unwrap();
    assert_eq!(takeover["takesOverFrom"], base_name.as_str());
    let base_plan = plans
        .iter()
        .find(|p| p["policy"] == base_name.as_str())
        .unwrap();
    assert_eq!(
        base_plan["changes"][0]["diff"],
        json!({"hard": {"pods": "20"}})
    );
    assert!(
        base_plan["shadowed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s.as_str().unwrap().contains(&team_name))
    );

    // Apply the files: the cluster ends up exactly as planned.
    let out = kubectl_with_input(
        &["apply", "-f", dir.join("policies.yaml").to_str().unwrap()],
        None,
    );
    // Guarded before the check: a partly failed apply may still have created it.
    let team_guard = TestPolicy {
        name: team_name.clone(),
    };
    assert!(out.success, "{}", out.stderr);
    team_guard.wait_ready(&client).await;
    base.wait_ready(&client).await;
    let range: LimitRange = Api::namespaced(client.clone(), &a.name)
        .get("defaults")
        .await
        .unwrap();
    assert_eq!(range.labels()["tenantry.io/policy"], team_name);
    assert!(
        Api::<PodDisruptionBudget>::namespaced(client.clone(), &a.name)
            .get_opt("web")
            .await
            .unwrap()
            .is_some()
    );
    for ns in [&a.name, &b.name] {
        let quota: ResourceQuota = Api::namespaced(client.clone(), ns)
            .get("compute")
            .await
            .unwrap();
        assert_eq!(quota.spec.unwrap().hard.unwrap()["pods"].0, "20");
    }

    // Nothing left to do: exit 0.
    let (code, stdout, stderr) = tenantry_plan(&dir);
    assert_eq!(code, 0, "{stdout}{stderr}");

    // Errors exit 1, naming the field: one the API server rejects, one only the controller sees.
    let bad = repo_root()
        .join("target/e2e-logs")
        .join(unique_name("plan-bad"));
    write_policies(
        &bad,
        &[policy(
            &unique_name("bad"),
            json!({"resourceQuotas": [{"name": "q", "hard": {"pods": "many"}}]}),
        )],
    );
    let (code, _, stderr) = tenantry_plan(&bad);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("spec.resourceQuotas[0].hard.pods"),
        "{stderr}"
    );
    let ratio = repo_root()
        .join("target/e2e-logs")
        .join(unique_name("plan-ratio"));
    write_policies(
        &ratio,
        &[policy(
            &unique_name("ratio"),
            json!({"namespaces": [a.name], "limitRanges": [{"name": "d", "limits": [{"type": "Container",
        "default": {"cpu": "1"}, "defaultRequest": {"cpu": "100m"}, "maxLimitRequestRatio": {"cpu": "2"}}]}]}),
        )],
    );
    let (code, _, stderr) = tenantry_plan(&ratio);
    assert_eq!(code, 1);
    assert!(stderr.contains("spec.limitRanges[0].limits[0]"), "{stderr}");
    drop(team_guard);
}

/// Each shared part's (spec.hard, status.hard, status.used) pods, by namespace.
async fn parts_of(client: &kube::Client, policy: &str) -> BTreeMap<String, [Option<i128>; 3]> {
    let params = ListParams::default().labels(&format!(
        "tenantry.io/policy={policy},tenantry.io/shared-quota=budget"
    ));
    let pods = |map: Option<&BTreeMap<String, Quantity>>| {
        map.and_then(|m| m.get("pods"))
            .and_then(|q| tenantry::model::quantity::milli(&q.0))
    };
    Api::<ResourceQuota>::all(client.clone())
        .list(&params)
        .await
        .unwrap()
        .items
        .iter()
        .map(|q| {
            let spec = q.spec.as_ref().and_then(|s| s.hard.as_ref());
            let status = q.status.as_ref();
            let values = [
                pods(spec),
                pods(status.and_then(|s| s.hard.as_ref())),
                pods(status.and_then(|s| s.used.as_ref())),
            ];
            (q.namespace().unwrap(), values)
        })
        .collect()
}

/// The plan's changes as (action, namespace, kind/name, planned pods of the part).
fn plan_lines(plans: &[Value]) -> BTreeSet<(String, String, String, Option<String>)> {
    plans
        .iter()
        .flat_map(|p| p["changes"].as_array().unwrap())
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or("").to_owned();
            let pods = c["diff"]["hard"]["pods"].as_str().map(str::to_owned);
            (
                s("action"),
                s("namespace"),
                format!("{}/{}", s("kind"), s("name")),
                pods,
            )
        })
        .collect()
}

/// Waits until every part is enforced as written, with the pods each namespace must have.
async fn wait_parts(client: &kube::Client, policy: &str, want: &[(&str, i128)]) {
    let want: BTreeMap<String, i128> = want.iter().map(|(n, p)| (n.to_string(), *p)).collect();
    eventually(
        &format!("parts of {policy} enforced at {want:?}"),
        || async {
            let parts = parts_of(client, policy).await;
            let sizes: BTreeMap<String, i128> = parts
                .iter()
                .filter(|(_, [spec, status, _])| spec.is_some() && spec == status)
                .map(|(ns, [spec, ..])| (ns.clone(), spec.unwrap() / 1000))
                .collect();
            (sizes == want).then_some(())
        },
    )
    .await;
}

/// `tenantry plan` runs the controller's shared-budget step: the parts a new budget creates, and
/// which parts a change of `hard` resizes (the allocator, as a freshly started controller runs it).
#[tokio::test]
async fn plan_shows_the_parts_a_shared_budget_creates_and_resizes() {
    let client = client().await;
    install_crd(&client).await;
    let operator = Operator::start(&unique_name("plan-sq")).await;
    let team = unique_name("team");
    let a = TestNamespace::create_labelled(&client, "e2e-plan-sq-a", &[("e2e-team", &team)]).await;
    let b = TestNamespace::create_labelled(&client, "e2e-plan-sq-b", &[("e2e-team", &team)]).await;
    let name = unique_name("plan-sq");
    let files = |pods: &str| {
        let dir = repo_root()
            .join("target/e2e-logs")
            .join(unique_name("plan-sq-files"));
        let spec = json!({"namespaceSelector": {"matchLabels": {"e2e-team": team}},
            "sharedQuotas": [{"name": "budget", "hard": {"pods": pods}}]});
        write_policies(
            &dir,
            &[
                json!({"apiVersion": "tenantry.io/v1alpha1", "kind": "TenantPolicy",
                "metadata": {"name": name, "labels": {SHARD_LABEL: operator.shard}}, "spec": spec}),
            ],
        );
        dir
    };
    let line = |action: &str, ns: &str, pods: Option<&str>| {
        let what = "ResourceQuota/budget".to_owned();
        (
            action.to_owned(),
            ns.to_owned(),
            what,
            pods.map(str::to_owned),
        )
    };

    // A new budget: one part per namespace, created at zero until its use is known.
    let twenty = files("20");
    let (code, stdout, stderr) = tenantry_plan(&twenty);
    assert_eq!(code, 2, "{stdout}{stderr}");
    let plans: Vec<Value> = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        plan_lines(&plans),
        BTreeSet::from([line("create", &a.name, None), line("create", &b.name, None)]),
        "{stdout}"
    );
    let apply = |dir: &std::path::Path| {
        let out = kubectl_with_input(
            &["apply", "-f", dir.join("policies.yaml").to_str().unwrap()],
            None,
        );
        assert!(out.success, "{}", out.stderr);
    };
    apply(&twenty);
    let policy = TestPolicy { name: name.clone() };
    policy.wait_ready(&client).await;
    // Sized by the headroom rule: a chunk of hard/(2n) = 5 each while nothing is used.
    wait_parts(&client, &name, &[(&a.name, 5), (&b.name, 5)]).await;
    let (code, stdout, stderr) = tenantry_plan(&twenty);
    assert_eq!(code, 0, "converged: {stdout}{stderr}");

    // a runs 2 pods: headroom 3, not below half the target (2.5), so its part stays 5.
    a.wait_for_default_service_account(&client).await;
    let web = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": a.name},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]}}}});
    let out = kubectl_with_input(&["apply", "-f", "-"], Some(&web.to_string()));
    assert!(out.success, "{}", out.stderr);
    eventually("a's part to count its 2 pods", || async {
        let parts = parts_of(&client, &name).await;
        (parts.get(&a.name)?[2] == Some(2000)).then_some(())
    })
    .await;

    // hard raised to 40: the target doubles to 10; a's headroom 3 is now below half of it, b's
    // 5 is not. Only a's part is resized, to its use + 10.
    let forty = files("40");
    let (code, stdout, stderr) = tenantry_plan(&forty);
    assert_eq!(code, 2, "{stdout}{stderr}");
    let plans: Vec<Value> = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        plan_lines(&plans),
        BTreeSet::from([line("update", &a.name, Some("12"))]),
        "{stdout}"
    );
    apply(&forty);
    wait_parts(&client, &name, &[(&a.name, 12), (&b.name, 5)]).await;
    let (code, stdout, stderr) = tenantry_plan(&forty);
    assert_eq!(code, 0, "converged: {stdout}{stderr}");

    // hard lowered to 8: the parts (17) are over it. Target min(8/4, slack 6/2) = 2: a, with the
    // largest surplus above use + target, is lowered to 4, and b by as much as is still needed.
    let eight = files("8");
    let (code, stdout, stderr) = tenantry_plan(&eight);
    assert_eq!(code, 2, "{stdout}{stderr}");
    let plans: Vec<Value> = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        plan_lines(&plans),
        BTreeSet::from([
            line("update", &a.name, Some("4")),
            line("update", &b.name, Some("4"))
        ]),
        "{stdout}"
    );
    let expected = [(a.name.as_str(), 4), (b.name.as_str(), 4)];
    apply(&eight);
    wait_parts(&client, &name, &expected).await;
    let (code, stdout, stderr) = tenantry_plan(&eight);
    assert_eq!(code, 0, "converged as planned: {stdout}{stderr}");
    drop(policy);
}
