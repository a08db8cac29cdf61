//! The audit's tests: reports computed from inputs written as JSON, and the tables rendered
//! from them.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{LimitRange, Namespace, Pod, ResourceQuota};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::ResourceExt;
use serde_json::{Value, json};

use super::*;
use crate::api::{
    MANAGED_BY_LABEL, MANAGED_BY_VALUE, POLICY_LABEL, SHARED_QUOTA_LABEL, TenantPolicy,
};

fn obj<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

fn managed(name: &str, policy: &str) -> Value {
    json!({"name": name, "namespace": "mia", "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE, POLICY_LABEL: policy}})
}

fn deployment(name: &str, pod: Value) -> Deployment {
    obj(json!({"metadata": {"name": name, "namespace": "mia"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod}}}))
}

fn bare() -> Value {
    json!({"containers": [{"name": "app", "image": "x"}]})
}

fn mia(inputs: Inputs) -> Inputs {
    Inputs {
        namespaces: vec![obj(json!({"metadata": {"name": "mia"}}))],
        ..inputs
    }
}

fn defaults_lr() -> LimitRange {
    obj(
        json!({"metadata": managed("defaults", "baseline"), "spec": {"limits": [{"type": "Container",
        "default": {"cpu": "300m", "memory": "200Mi"}, "defaultRequest": {"cpu": "200m", "memory": "100Mi"}}]}}),
    )
}

#[test]
fn governed_by_lists_every_policy_of_a_kind() {
    let quota = |name: &str, policy: &str| -> ResourceQuota {
        obj(json!({"metadata": managed(name, policy), "spec": {"hard": {"pods": "10"}}}))
    };
    let inputs = mia(Inputs {
        quotas: vec![
            quota("compute", "team-mia"),
            quota("besteffort-pods", "team-mia"),
            quota("tenantry-storage", "storage"),
        ],
        limit_ranges: vec![defaults_lr()],
        ..Default::default()
    });
    let report = audit(&inputs, &|_| true);
    let row = &report.namespaces[0];
    assert_eq!(row.governed_by["ResourceQuota"], ["storage", "team-mia"]);
    assert_eq!(row.governed_by["LimitRange"], ["baseline"]);
    let table = render(&report);
    assert!(
        table.contains("LimitRange=baseline; ResourceQuota=storage,team-mia"),
        "{table}"
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(
        json["namespaces"][0]["governedBy"]["ResourceQuota"],
        json!(["storage", "team-mia"])
    );
}

#[test]
fn qos_is_judged_for_the_next_pod_with_limit_range_defaults() {
    let with_lr = mia(Inputs {
        deployments: vec![deployment("api", bare())],
        limit_ranges: vec![defaults_lr()],
        ..Default::default()
    });
    let report = audit(&with_lr, &|_| true);
    let w = &report.workloads[0];
    assert_eq!(
        (w.qos.as_str(), w.template_qos.as_str()),
        ("Burstable", "BestEffort")
    );
    let note = "BestEffort in its template, Burstable for new pods: LimitRange defaults";
    assert_eq!(w.qos_note.as_deref(), Some(note));
    assert_eq!(w.new_pod_requests["cpu"], "200m");
    assert_eq!(w.new_pod_requests["memory"], "100Mi");
    assert!(!report.findings.iter().any(|f| f.contains("is BestEffort")));
    assert!(!report.findings.iter().any(|f| f.contains("existing pod")));
    let table = render(&report);
    let line = table
        .lines()
        .find(|l| l.starts_with("mia/Deployment/api"))
        .unwrap();
    assert!(
        line.contains("Burstable") && line.ends_with(note),
        "{table}"
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["workloads"][0]["qosNote"], note);
    assert_eq!(json["workloads"][0]["templateQos"], "BestEffort");

    let without = mia(Inputs {
        deployments: vec![deployment("api", bare())],
        ..Default::default()
    });
    let report = audit(&without, &|_| true);
    assert_eq!(report.workloads[0].qos, "BestEffort");
    assert_eq!(report.workloads[0].qos_note, None);
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.starts_with("Deployment mia/api is BestEffort"))
    );
}

/// `render` reads nothing but the AuditReport, so the table holds no fact JSON lacks; and each fact
/// the table is meant to show is there.
#[test]
fn the_table_shows_what_json_carries() {
    let quota: ResourceQuota = obj(json!({"metadata": managed("compute", "team-mia"),
        "spec": {"hard": {"requests.cpu": "4"}}}));
    let pdb: PodDisruptionBudget = obj(json!({"metadata": managed("web", "team-mia"),
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "maxUnavailable": 0}}));
    let pod: Pod = obj(json!({"metadata": {"name": "p", "namespace": "mia"},
        "spec": {"containers": [{"name": "app", "image": "x", "resources": {"requests": {"cpu": "250m", "memory": "1Gi"}}}]},
        "status": {"phase": "Pending", "qosClass": "Burstable"}}));
    let inputs = mia(Inputs {
        deployments: vec![deployment("web", bare()), deployment("api", bare())],
        quotas: vec![quota],
        pdbs: vec![pdb],
        pods: vec![pod],
        limit_ranges: vec![defaults_lr()],
        ..Default::default()
    });
    let report = audit(&inputs, &|_| true);
    let table = render(&report);
    let json = serde_json::to_value(&report).unwrap();
    for n in json["namespaces"].as_array().unwrap() {
        let line = table
            .lines()
            .find(|l| l.starts_with(n["name"].as_str().unwrap()))
            .unwrap();
        let mut facts = vec![
            n["pods"].to_string(),
            n["requests"]["cpu"].as_str().unwrap().to_owned(),
        ];
        facts.push(n["requests"]["memory"].as_str().unwrap().to_owned());
        for (kind, policies) in n["governedBy"].as_object().unwrap() {
            let names: Vec<&str> = policies
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap())
                .collect();
            facts.push(format!("{kind}={}", names.join(",")));
        }
        for fact in facts {
            assert!(line.contains(&fact), "{fact:?} missing in {line:?}");
        }
    }
    for w in json["workloads"].as_array().unwrap() {
        let key = format!("mia/Deployment/{}", w["name"].as_str().unwrap());
        let line = table.lines().find(|l| l.starts_with(&key)).unwrap();
        for fact in [&w["qos"], &w["qosNote"]] {
            assert!(
                line.contains(fact.as_str().unwrap()),
                "{fact} missing in {line:?}"
            );
        }
        for p in w["pdbs"].as_array().unwrap() {
            assert!(
                line.contains(p.as_str().unwrap()),
                "{p} missing in {line:?}"
            );
        }
    }
    assert!(!report.findings.is_empty());
    for f in &report.findings {
        assert!(table.contains(&format!("- {f}\n")), "{f} missing");
    }
}

/// A part of shared quota `item` of policy `team-mia` in `ns`: spec.hard, status hard/used.
fn part(ns: &str, item: &str, spec: Value, status_hard: Value, used: Value) -> ResourceQuota {
    obj(
        json!({"metadata": {"name": item, "namespace": ns, "labels": {
            MANAGED_BY_LABEL: MANAGED_BY_VALUE, POLICY_LABEL: "team-mia", SHARED_QUOTA_LABEL: item}},
        "spec": {"hard": spec}, "status": {"hard": status_hard, "used": used}}),
    )
}

fn namespaces(names: &[&str]) -> Vec<Namespace> {
    names
        .iter()
        .map(|n| obj(json!({"metadata": {"name": n}})))
        .collect()
}

#[test]
fn shared_quotas_are_summed_across_their_namespaces_against_the_policys_budget() {
    let policy: TenantPolicy = obj(json!({"apiVersion": "tenantry.io/v1alpha1",
        "kind": "TenantPolicy", "metadata": {"name": "team-mia"}, "spec": {"sharedQuotas": [
            {"name": "pods-budget", "hard": {"pods": "10"}},
            {"name": "cpu-budget", "hard": {"requests.cpu": "2"}}]}}));
    let inputs = Inputs {
        namespaces: namespaces(&["mia", "mia-batch", "other"]),
        policies: vec![policy],
        quotas: vec![
            // 6 + 4 of 10 pods: exhausted. mia's part is being lowered (spec 6, status 7).
            part(
                "mia",
                "pods-budget",
                json!({"pods": "6"}),
                json!({"pods": "7"}),
                json!({"pods": "6"}),
            ),
            part(
                "mia-batch",
                "pods-budget",
                json!({"pods": "4"}),
                json!({"pods": "4"}),
                json!({"pods": "4"}),
            ),
            // 1500m + 1 of 2 CPUs: over budget (a namespace joined with its use).
            part(
                "mia",
                "cpu-budget",
                json!({"requests.cpu": "1500m"}),
                json!({"requests.cpu": "1500m"}),
                json!({"requests.cpu": "1500m"}),
            ),
            part(
                "mia-batch",
                "cpu-budget",
                json!({"requests.cpu": "1"}),
                json!({"requests.cpu": "1"}),
                json!({"requests.cpu": "1"}),
            ),
        ],
        ..Default::default()
    };
    // Auditing one namespace still sums the budget over all its parts.
    let report = audit(&inputs, &|n| n.name_any() == "mia");
    let names: Vec<(&str, &str)> = (report.shared_quotas.iter())
        .map(|q| (q.policy.as_str(), q.name.as_str()))
        .collect();
    assert_eq!(
        names,
        [("team-mia", "cpu-budget"), ("team-mia", "pods-budget")]
    );
    let pods = &report.shared_quotas[1];
    assert_eq!(pods.namespaces, ["mia", "mia-batch"]);
    let r = &pods.resources["pods"];
    assert_eq!(
        (
            r.used.as_str(),
            r.allotted.as_str(),
            r.hard.as_deref(),
            r.percent
        ),
        ("10", "11", Some("10"), Some(100))
    );
    let cpu = &report.shared_quotas[0].resources["requests.cpu"];
    assert_eq!((cpu.used.as_str(), cpu.percent), ("2500m", Some(125)));
    for expected in [
        "shared quota team-mia/pods-budget: pods is exhausted: 10 used of 10 across 2 namespaces; new requests are refused",
        "shared quota team-mia/pods-budget: pods: the parts allow 11 in total, more than the budget of 10",
        "shared quota team-mia/cpu-budget: requests.cpu is over budget: 2500m used of 2 across 2 namespaces; nothing new is admitted until use falls below it",
    ] {
        assert!(
            report.findings.iter().any(|f| f == expected),
            "{expected:?} not in {:#?}",
            report.findings
        );
    }
    // The table shows each fact the JSON carries.
    let table = render(&report);
    assert!(table.contains("\nSHARED QUOTAS"), "{table}");
    let json = serde_json::to_value(&report).unwrap();
    for q in json["sharedQuotas"].as_array().unwrap() {
        let key = format!(
            "{}/{}",
            q["policy"].as_str().unwrap(),
            q["name"].as_str().unwrap()
        );
        let line = table.lines().find(|l| l.starts_with(&key)).unwrap();
        let namespaces: Vec<&str> = (q["namespaces"].as_array().unwrap().iter())
            .map(|n| n.as_str().unwrap())
            .collect();
        assert!(line.ends_with(&namespaces.join(",")), "{line:?}");
        for (resource, r) in q["resources"].as_object().unwrap() {
            let facts =
                [&r["used"], &r["allotted"], &r["hard"]].map(|v| v.as_str().unwrap().to_owned());
            let percent = format!("{}%", r["percent"]);
            assert!(
                line.contains(resource.as_str()) && line.contains(&percent),
                "{line:?}"
            );
            for fact in facts {
                assert!(
                    line.contains(&format!(" {fact} ")),
                    "{fact:?} missing in {line:?}"
                );
            }
        }
    }
    // A budget with no part in an audited namespace is not reported.
    let report = audit(&inputs, &|n| n.name_any() == "other");
    assert!(report.shared_quotas.is_empty());
    assert!(!render(&report).contains("SHARED QUOTAS"));
}

#[test]
fn a_namespace_counts_once_in_the_quota_total_at_its_tightest_quota() {
    let compute: ResourceQuota = obj(json!({"metadata": managed("compute", "team-mia"),
        "spec": {"hard": {"requests.cpu": "10"}}}));
    let inputs = mia(Inputs {
        quotas: vec![
            compute,
            part(
                "mia",
                "budget",
                json!({"requests.cpu": "2"}),
                json!({"requests.cpu": "2"}),
                json!({}),
            ),
        ],
        ..Default::default()
    });
    let report = audit(&inputs, &|_| true);
    assert!(
        report.findings.contains(
            &"quotas allow 2000m of requests.cpu in total, the nodes can allocate 0m (no nodes)"
                .to_owned()
        ),
        "{:#?}",
        report.findings
    );
}

#[test]
fn parts_left_by_a_policy_that_no_longer_declares_them_have_no_budget_and_no_finding() {
    let inputs = Inputs {
        namespaces: namespaces(&["mia"]),
        quotas: vec![part(
            "mia",
            "gone",
            json!({"pods": "3"}),
            json!({"pods": "3"}),
            json!({"pods": "3"}),
        )],
        ..Default::default()
    };
    let report = audit(&inputs, &|_| true);
    let r = &report.shared_quotas[0].resources["pods"];
    assert_eq!(
        (r.used.as_str(), r.hard.as_deref(), r.percent),
        ("3", None, None)
    );
    assert!(
        !report
            .findings
            .iter()
            .any(|f| f.starts_with("shared quota"))
    );
    let line = render(&report)
        .lines()
        .find(|l| l.starts_with("team-mia/gone"))
        .map(str::to_owned);
    assert!(
        line.is_some_and(|l| l.contains(" - ")),
        "no budget shown as -"
    );
}

#[test]
fn best_effort_pods_older_than_the_limit_range_defaults_are_a_finding() {
    let pod: Pod = obj(json!({"metadata": {"name": "old", "namespace": "mia"},
        "spec": bare(), "status": {"phase": "Pending", "qosClass": "BestEffort"}}));
    let inputs = mia(Inputs {
        pods: vec![pod],
        limit_ranges: vec![defaults_lr()],
        ..Default::default()
    });
    let report = audit(&inputs, &|_| true);
    assert!(report.findings.contains(&"namespace mia: 1 existing pod is BestEffort, older than its LimitRange defaults; it keeps that class until recreated (a rollout)".to_owned()), "{:#?}", report.findings);
}

#[test]
fn pod_level_resources_decide_the_workloads_qos() {
    let pod = json!({"resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
        "containers": [{"name": "app", "image": "x"}, {"name": "log", "image": "x"}]});
    let inputs = mia(Inputs {
        deployments: vec![deployment("db", pod.clone())],
        ..Default::default()
    });
    let report = audit(&inputs, &|_| true);
    let w = &report.workloads[0];
    assert_eq!(w.qos, "Guaranteed");
    assert_eq!(w.qos_note.as_deref(), Some("pod-level resources"));
    assert_eq!(w.new_pod_requests["cpu"], "1000m");
    assert!(
        w.resources
            .iter()
            .any(|r| r == "pod: requests -/-, limits 1/1Gi"),
        "{:?}",
        w.resources
    );
    // LimitRange defaults give the containers requests, and pod-level requests default to
    // their sum rather than to the pod-level limits: the pod is Burstable.
    let inputs = mia(Inputs {
        deployments: vec![deployment("db", pod)],
        limit_ranges: vec![defaults_lr()],
        ..Default::default()
    });
    let report = audit(&inputs, &|_| true);
    let w = &report.workloads[0];
    assert_eq!(
        (w.qos.as_str(), w.template_qos.as_str()),
        ("Burstable", "Guaranteed")
    );
    assert_eq!(
        w.qos_note.as_deref(),
        Some(
            "Guaranteed in its template, Burstable for new pods: LimitRange defaults; pod-level resources"
        )
    );
    assert_eq!(w.new_pod_requests["cpu"], "400m");
}

#[test]
fn a_quota_that_new_pods_cannot_satisfy_is_a_finding() {
    let quota: ResourceQuota = obj(json!({"metadata": managed("compute", "team-mia"),
        "spec": {"hard": {"requests.cpu": "4", "limits.memory": "8Gi"}}}));
    let besteffort_only: ResourceQuota = obj(json!({"metadata": managed("be", "team-mia"),
        "spec": {"hard": {"pods": "4"}, "scopes": ["BestEffort"]}}));
    let inputs = mia(Inputs {
        deployments: vec![deployment("api", bare())],
        quotas: vec![quota.clone(), besteffort_only],
        ..Default::default()
    });
    let report = audit(&inputs, &|_| true);
    assert!(
        report.findings.contains(&"new pods of Deployment mia/api are refused by ResourceQuota mia/compute: must specify limits.memory for: app; requests.cpu for: app".to_owned()),
        "{:#?}",
        report.findings
    );
    // LimitRange defaults satisfy the quota.
    let inputs = mia(Inputs {
        deployments: vec![deployment("api", bare())],
        quotas: vec![quota],
        limit_ranges: vec![defaults_lr()],
        ..Default::default()
    });
    let report = audit(&inputs, &|_| true);
    assert!(
        !report.findings.iter().any(|f| f.contains("refused")),
        "{:#?}",
        report.findings
    );
}

#[test]
fn requests_are_summed_as_quota_counts_them_resizes_included() {
    let pod = |name: &str, cpu: &str, status: Value| -> Pod {
        obj(json!({"metadata": {"name": name, "namespace": "mia"},
            "spec": {"containers": [{"name": "app", "image": "x", "resources": {"requests": {"cpu": cpu}}}]},
            "status": status}))
    };
    let resized = pod(
        "resized",
        "200m",
        json!({"phase": "Running", "qosClass": "Burstable",
        "conditions": [{"type": "PodResizeInProgress", "status": "True"}],
        "containerStatuses": [{"name": "app", "image": "x", "imageID": "", "ready": true, "restartCount": 0,
            "allocatedResources": {"cpu": "500m"}, "resources": {"requests": {"cpu": "500m"}}}]}),
    );
    let done = pod(
        "done",
        "2",
        json!({"phase": "Succeeded", "qosClass": "Burstable"}),
    );
    let plain = pod(
        "plain",
        "100m",
        json!({"phase": "Pending", "qosClass": "Burstable"}),
    );
    let inputs = mia(Inputs {
        pods: vec![resized, done, plain],
        ..Default::default()
    });
    let report = audit(&inputs, &|_| true);
    let row = &report.namespaces[0];
    assert_eq!((row.pods, row.requests["cpu"].as_str()), (3, "600m"));
    assert!(
        report.findings.contains(&"Pod mia/resized is counted by quotas at requests.cpu 500m (spec 200m): in-place resize in progress (no reason)".to_owned()),
        "{:#?}",
        report.findings
    );
    assert!(render(&report).contains("600m"));
}
