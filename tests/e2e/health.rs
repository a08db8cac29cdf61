//! Status as users' tools judge it: Argo CD's health check (config/argocd/health.lua, run by a
//! real Lua 5.1 interpreter) and kstatus (sigs.k8s.io/cli-utils, hack/kstatus), on policies in
//! each state produced by a real operator.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use k8s_openapi::api::core::v1::LimitRange;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::harness::{
    Operator, TestNamespace, TestPolicy, client, kubectl_ok, repo_root, unique_name,
};
use crate::smoke::install_crd;

/// A JSON value as a Lua 5.1 table constructor.
fn lua(value: &Value) -> String {
    match value {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => {
            let mut out = String::from("\"");
            for byte in s.bytes() {
                match byte {
                    b'"' => out.push_str("\\\""),
                    b'\\' => out.push_str("\\\\"),
                    b' '..=b'~' => out.push(byte as char),
                    other => out.push_str(&format!("\\{other}")),
                }
            }
            out.push('"');
            out
        }
        Value::Array(items) => format!(
            "{{{}}}",
            items.iter().map(lua).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("[{}] = {}", lua(&Value::String(k.clone())), lua(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// (status, message) from Argo CD's health script for this TenantPolicy.
pub fn argocd_health(object: &Value) -> (String, String) {
    let script = repo_root().join("config/argocd/health.lua");
    let program = format!(
        "obj = {}\nlocal hs = dofile({})\nio.write(hs.status, \"\\t\", hs.message)",
        lua(object),
        lua(&Value::String(script.display().to_string()))
    );
    let out = Command::new("lua5.1")
        .args(["-e", &program])
        .output()
        .expect("lua5.1 (Debian package lua5.1; make test installs it)");
    assert!(
        out.status.success(),
        "lua: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (status, message) = text.split_once('\t').unwrap();
    (status.to_owned(), message.to_owned())
}

fn kstatus(object: &Value) -> String {
    let state = std::env::var_os("TENANTRY_STATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".tenantry"));
    let mut child = Command::new(state.join("bin/kstatus"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the kstatus checker (built by make cluster-up)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(object.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .split('\t')
        .next()
        .unwrap()
        .to_owned()
}

fn live(name: &str) -> Value {
    let mut object: Value =
        serde_json::from_str(&kubectl_ok(&["get", "tenantpolicy", name, "-o", "json"])).unwrap();
    object["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("managedFields");
    object
}

/// With TENANTRY_CAPTURE_FIXTURES=1, the live objects are written as the fixtures of
/// config/argocd/health_test.yaml.
fn capture(file: &str, object: &Value) {
    if std::env::var("TENANTRY_CAPTURE_FIXTURES").as_deref() == Ok("1") {
        let path = repo_root().join("config/argocd/testdata").join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, serde_yaml::to_string(object).unwrap()).unwrap();
    }
}

#[tokio::test]
async fn argo_cd_and_kstatus_judge_each_state_of_a_real_policy() {
    let client = client().await;
    install_crd(&client).await;
    let mut operator = Operator::start(&unique_name("health")).await;
    let ns = TestNamespace::create(&client, "e2e-health").await;
    let spec = |pods: &str| {
        json!({"namespaces": [ns.name], "resourceQuotas": [{"name": "compute", "hard": {"pods": pods}}],
            "limitRanges": [{"name": "defaults", "limits": [{"type": "Container", "default": {"cpu": "1"}}]}]})
    };
    let mut seen = Vec::new();

    // Healthy: converged.
    let policy = TestPolicy::create(&client, &operator, "health", spec("10")).await;
    policy.wait_ready(&client).await;
    let healthy = live(&policy.name);
    capture("healthy.yaml", &healthy);
    seen.push((
        "converged",
        argocd_health(&healthy),
        kstatus(&healthy),
        "Healthy",
        "Current",
    ));

    // Progressing (Reconciling=True): a managed object held in deletion by someone else's finalizer.
    let ranges: Api<LimitRange> = Api::namespaced(client.clone(), &ns.name);
    ranges
        .patch(
            "defaults",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["e2e.tenantry.io/hold"]}})),
        )
        .await
        .unwrap();
    ranges
        .delete("defaults", &DeleteParams::default())
        .await
        .unwrap();
    policy.wait_condition(&client, "Reconciling", "True").await;
    let reconciling = live(&policy.name);
    capture("progressing-reconciling.yaml", &reconciling);
    seen.push((
        "reconciling",
        argocd_health(&reconciling),
        kstatus(&reconciling),
        "Progressing",
        "InProgress",
    ));
    ranges
        .patch(
            "defaults",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    policy.wait_ready(&client).await;

    // Progressing (a generation not yet observed): the operator is down while the spec changes.
    operator.stop();
    policy.set_spec(&client, spec("20")).await;
    let stale = live(&policy.name);
    assert!(
        stale["status"]["observedGeneration"].as_i64() < stale["metadata"]["generation"].as_i64()
    );
    capture("progressing-stale-generation.yaml", &stale);
    seen.push((
        "stale generation",
        argocd_health(&stale),
        kstatus(&stale),
        "Progressing",
        "InProgress",
    ));
    let operator = Operator::start(&operator.shard).await;

    // Degraded (Stalled=True): an object of the same name that Tenantry does not own.
    let other = TestNamespace::create(&client, "e2e-health-theirs").await;
    let theirs: LimitRange = serde_json::from_value(json!({"metadata": {"name": "defaults"}, "spec": {"limits": [{"type": "Pod", "max": {"cpu": "4"}}]}})).unwrap();
    Api::<LimitRange>::namespaced(client.clone(), &other.name)
        .create(&PostParams::default(), &theirs)
        .await
        .unwrap();
    let stalled_spec = json!({"namespaces": [other.name], "limitRanges": [{"name": "defaults", "limits": [{"type": "Container", "default": {"cpu": "1"}}]}]});
    let stalled = TestPolicy::create(&client, &operator, "health-stalled", stalled_spec).await;
    stalled.wait_condition(&client, "Stalled", "True").await;
    let degraded = live(&stalled.name);
    capture("degraded.yaml", &degraded);
    seen.push((
        "stalled",
        argocd_health(&degraded),
        kstatus(&degraded),
        "Degraded",
        "Failed",
    ));

    // Deleted while the operator that handles their finalizer still runs (declared before it,
    // they would otherwise be dropped after it).
    drop(stalled);
    drop(policy);
    for (state, (health, message), kstatus, want_health, want_kstatus) in &seen {
        assert_eq!(health, want_health, "{state}: Argo CD health ({message})");
        assert_eq!(kstatus, want_kstatus, "{state}: kstatus");
        assert!(!message.is_empty(), "{state}: Argo CD message");
    }
}

/// The fixtures in config/argocd/testdata (captured from the test above), in Argo CD's own
/// health_test.yaml form, give the statuses and messages it lists.
#[test]
fn argo_cd_health_test_fixtures_pass() {
    let dir = repo_root().join("config/argocd");
    let tests: Value =
        serde_yaml::from_str(&std::fs::read_to_string(dir.join("health_test.yaml")).unwrap())
            .unwrap();
    let tests = tests["tests"].as_array().unwrap();
    assert!(tests.len() >= 4);
    let snippet: Value =
        serde_yaml::from_str(&std::fs::read_to_string(dir.join("argocd-cm.yaml")).unwrap())
            .unwrap();
    assert_eq!(
        snippet["data"]["resource.customizations.health.tenantry.io_TenantPolicy"].as_str(),
        Some(
            std::fs::read_to_string(dir.join("health.lua"))
                .unwrap()
                .as_str()
        ),
        "argocd-cm.yaml must carry health.lua as it is"
    );
    for test in tests {
        let input = test["inputPath"].as_str().unwrap();
        let object: Value =
            serde_yaml::from_str(&std::fs::read_to_string(dir.join(input)).unwrap()).unwrap();
        let (status, message) = argocd_health(&object);
        assert_eq!(
            status,
            test["healthStatus"]["status"].as_str().unwrap(),
            "{input}"
        );
        assert_eq!(
            message,
            test["healthStatus"]["message"].as_str().unwrap(),
            "{input}"
        );
    }
}
