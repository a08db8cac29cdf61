use super::*;
use serde_json::json;
use std::borrow::Cow;

fn ns(name: &str, labels: &[(&str, &str)]) -> NamespaceInfo<'static> {
    NamespaceInfo {
        name: Cow::Owned(name.into()),
        labels: Cow::Owned(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        terminating: false,
    }
}

fn winner_in<'c, 'a>(
    section: Section,
    ns: &NamespaceInfo,
    candidates: &'c [Candidate<'a>],
) -> Option<&'c Candidate<'a>> {
    let selecting: Vec<&Candidate> = candidates.iter().filter(|c| c.selects(ns)).collect();
    winner(section, &selecting)
}

fn spec(value: serde_json::Value) -> TenantPolicySpec {
    serde_json::from_value(value).unwrap()
}

const LR: &str =
    r#"[{"name": "defaults", "limits": [{"type": "Container", "default": {"cpu": "1"}}]}]"#;

#[test]
fn selection_by_name_and_label_and_never_all_by_accident() {
    let by_label = spec(
        json!({"namespaceSelector": {"matchLabels": {"team": "mia"}}, "namespaces": ["online"]}),
    );
    let c = Candidate::new("p", &by_label).unwrap();
    assert!(c.selects(&ns("mia", &[("team", "mia")])));
    assert!(c.selects(&ns("online", &[])));
    assert!(!c.selects(&ns("other", &[("team", "x")])));

    let nothing = spec(json!({}));
    assert!(
        !Candidate::new("p", &nothing)
            .unwrap()
            .selects(&ns("any", &[]))
    );
}

#[test]
fn objects_are_built_in_namespace_name_order_whatever_order_the_cache_gives() {
    let s = spec(
        json!({"namespaceSelector": {}, "limitRanges": serde_json::from_str::<serde_json::Value>(LR).unwrap()}),
    );
    let candidates = vec![Candidate::new("p", &s).unwrap()];
    let namespaces = ["team-c", "team-a", "team-b"].map(|n| ns(n, &[]));
    let assignment = assign(&candidates[0], &candidates, &namespaces, &BTreeSet::new());
    let order: Vec<&str> = (assignment.desired.iter())
        .map(|d| d.key.namespace.as_str())
        .collect();
    assert_eq!(order, ["team-a", "team-b", "team-c"]);
}

#[test]
fn protected_namespaces_only_when_named() {
    let everything = spec(json!({"namespaceSelector": {}, "namespaces": ["kube-public"]}));
    let c = Candidate::new("p", &everything).unwrap();
    assert!(c.selects(&ns("team-a", &[])));
    assert!(!c.selects(&ns("kube-system", &[])));
    assert!(!c.selects(&ns("tenantry-system", &[])));
    assert!(!c.selects(&ns("kube-node-lease", &[])));
    assert!(c.selects(&ns("kube-public", &[])));
}

#[test]
fn terminating_namespaces_are_not_selected() {
    let s = spec(json!({"namespaces": ["gone"]}));
    let mut gone = ns("gone", &[]);
    gone.terminating = true;
    assert!(!Candidate::new("p", &s).unwrap().selects(&gone));
}

#[test]
fn invalid_selector_names_the_field() {
    let s = spec(
        json!({"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "Sometimes"}]}}),
    );
    let err = Candidate::new("p", &s).unwrap_err();
    assert_eq!(err.field, "spec.namespaceSelector");
    assert!(
        err.to_string().starts_with("spec.namespaceSelector: "),
        "{err}"
    );
}

#[test]
fn highest_priority_wins_per_kind_and_ties_go_to_the_first_name() {
    let lr: serde_json::Value = serde_json::from_str(LR).unwrap();
    let low = spec(
        json!({"priority": 1, "namespaces": ["a"], "limitRanges": lr,
        "resourceQuotas": [{"name": "q", "hard": {"pods": "1"}}]}),
    );
    let high = spec(json!({"priority": 5, "namespaces": ["a"], "limitRanges": lr}));
    let tie = spec(json!({"priority": 5, "namespaces": ["a"], "limitRanges": lr}));
    let candidates = vec![
        Candidate::new("low", &low).unwrap(),
        Candidate::new("zeta-high", &high).unwrap(),
        Candidate::new("alpha-tie", &tie).unwrap(),
    ];
    let a = ns("a", &[]);
    assert_eq!(
        winner_in(Section::LimitRanges, &a, &candidates)
            .unwrap()
            .name,
        "alpha-tie"
    );
    // Only `low` sets quotas, so it keeps them while losing LimitRanges.
    assert_eq!(
        winner_in(Section::ResourceQuotas, &a, &candidates)
            .unwrap()
            .name,
        "low"
    );

    let low_assignment = assign(
        &candidates[0],
        &candidates,
        std::slice::from_ref(&a),
        &BTreeSet::new(),
    );
    assert_eq!(low_assignment.desired.len(), 1);
    assert_eq!(low_assignment.desired[0].key.kind, Kind::ResourceQuota);
    assert_eq!(
        low_assignment.shadowed,
        vec![Shadowed {
            namespace: "a".into(),
            section: Section::LimitRanges,
            winner: "alpha-tie".into()
        }]
    );
    let defaults = ObjectKey {
        kind: Kind::LimitRange,
        namespace: "a".into(),
        name: "defaults".into(),
    };
    let namespace = |_: &str| Some(a.clone());
    let classes = BTreeSet::new();
    assert!(handed_over(
        "low",
        &defaults,
        &candidates,
        namespace,
        &classes
    ));
    assert!(
        !handed_over("alpha-tie", &defaults, &candidates, namespace, &classes),
        "the winner's own object is not handed over"
    );
}

#[test]
fn shared_quotas_compete_as_a_kind_of_their_own() {
    let shared = spec(json!({"priority": 5, "namespaces": ["a"],
        "sharedQuotas": [{"name": "team", "hard": {"pods": "20"}}]}));
    let other = spec(json!({"priority": 9, "namespaces": ["a"],
        "sharedQuotas": [{"name": "org", "hard": {"pods": "50"}}]}));
    let quotas = spec(json!({"priority": 1, "namespaces": ["a"],
        "resourceQuotas": [{"name": "compute", "hard": {"pods": "10"}}]}));
    let candidates = vec![
        Candidate::new("shared", &shared).unwrap(),
        Candidate::new("other", &other).unwrap(),
        Candidate::new("quotas", &quotas).unwrap(),
    ];
    let a = ns("a", &[]);
    assert_eq!(
        winner_in(Section::SharedQuotas, &a, &candidates)
            .unwrap()
            .name,
        "other"
    );
    assert_eq!(
        winner_in(Section::ResourceQuotas, &a, &candidates)
            .unwrap()
            .name,
        "quotas",
        "a shared budget does not take the per-namespace quotas"
    );
    let assignment = assign(&candidates[0], &candidates, &[a], &BTreeSet::new());
    assert_eq!(
        assignment.shadowed,
        vec![Shadowed {
            namespace: "a".into(),
            section: Section::SharedQuotas,
            winner: "other".into()
        }]
    );
    assert!(
        assignment.desired.is_empty(),
        "the parts are the allocator's, not built here"
    );
}

#[test]
fn the_storage_section_competes_per_namespace_and_classes_by_name() {
    let high = spec(json!({"priority": 5, "namespaces": ["a"], "storage": {
        "classes": [{"name": "fast", "provisioner": "x"}], "allowedClasses": ["fast"]}}));
    let low = spec(json!({"priority": 1, "namespaces": ["a", "b"], "storage": {
        "classes": [{"name": "fast", "provisioner": "y"}, {"name": "slow", "provisioner": "y"}],
        "allowedClasses": []}}));
    let candidates = vec![
        Candidate::new("high", &high).unwrap(),
        Candidate::new("low", &low).unwrap(),
    ];
    let classes = BTreeSet::from(["fast".to_owned(), "slow".to_owned()]);
    let namespaces = [ns("a", &[]), ns("b", &[])];
    let low_assignment = assign(&candidates[1], &candidates, &namespaces, &classes);
    let keys: Vec<String> = low_assignment
        .desired
        .iter()
        .map(|d| d.key.to_string())
        .collect();
    assert_eq!(
        keys,
        vec!["b/ResourceQuota/tenantry-storage", "StorageClass/slow"],
        "the storage quota where it wins the section, and the class only it declares"
    );
    assert_eq!(
        low_assignment.shadowed_classes,
        vec![ShadowedClass {
            name: "fast".into(),
            winner: "high".into()
        }]
    );
    assert_eq!(low_assignment.shadowed[0].section, Section::Storage);
    let high_assignment = assign(&candidates[0], &candidates, &namespaces, &classes);
    let quota = &high_assignment.desired[0];
    assert_eq!(
        quota.spec["hard"],
        json!({"slow.storageclass.storage.k8s.io/persistentvolumeclaims": "0",
               "slow.storageclass.storage.k8s.io/requests.storage": "0"})
    );
    assert_eq!(high_assignment.desired[1].key.name, "fast");
}

#[test]
fn the_index_finds_exactly_the_selections_that_select_a_namespace() {
    let specs = [
        json!({"namespaceSelector": {"matchLabels": {"team": "a", "tier": "x"}}}),
        json!({"namespaceSelector": {"matchLabels": {"team": "b"}}}),
        json!({"namespaces": ["n1"], "namespaceSelector": {"matchLabels": {"team": "b"}}}),
        json!({"namespaceSelector": {"matchExpressions":
            [{"key": "team", "operator": "In", "values": ["a", "b"]}]}}),
        json!({"namespaceSelector": {}}),
        json!({"namespaces": ["kube-system"]}),
        json!({}),
    ];
    let selections: Vec<Selection> = specs
        .iter()
        .map(|s| Selection::new(&spec(s.clone())).unwrap())
        .collect();
    let index = SelectionIndex::new(&selections);
    let namespaces = [
        ns("n1", &[("team", "a")]),
        ns("n2", &[("team", "a"), ("tier", "x")]),
        ns("n3", &[("team", "b")]),
        ns("n4", &[]),
        ns("kube-system", &[("team", "b")]),
        NamespaceInfo {
            terminating: true,
            ..ns("n5", &[("team", "b")])
        },
    ];
    for n in &namespaces {
        let scanned: Vec<usize> = (0..selections.len())
            .filter(|&i| selections[i].selects(n))
            .collect();
        assert_eq!(index.selecting(n), scanned, "{}", n.name);
    }
    assert_eq!(index.selecting(&namespaces[1]), vec![0, 3, 4]);
}

#[test]
fn objects_left_behind_are_handed_to_the_winner_that_declares_their_name() {
    let quota = |name: &str, team: &str| {
        spec(
            json!({"priority": 10, "namespaceSelector": {"matchLabels": {"team": team}},
            "resourceQuotas": [{"name": name, "hard": {"pods": "10"}}]}),
        )
    };
    let (a, b, c) = (
        quota("team-compute", "a"),
        quota("team-compute", "b"),
        quota("other", "c"),
    );
    let candidates = vec![
        Candidate::new("a", &a).unwrap(),
        Candidate::new("b", &b).unwrap(),
        Candidate::new("c", &c).unwrap(),
    ];
    let held = |namespace: &str, kind: Kind, name: &str| ObjectKey {
        kind,
        namespace: namespace.into(),
        name: name.into(),
    };
    let namespaces = [ns("to-b", &[("team", "b")]), ns("to-c", &[("team", "c")])];
    let lookup = |name: &str| namespaces.iter().find(|n| n.name == name).cloned();
    let handed = [
        held("to-b", Kind::ResourceQuota, "team-compute"),
        held("to-b", Kind::LimitRange, "team-compute"),
        held("to-c", Kind::ResourceQuota, "team-compute"),
        held("gone", Kind::ResourceQuota, "team-compute"),
    ]
    .into_iter()
    .filter(|k| handed_over("a", k, &candidates, lookup, &BTreeSet::new()))
    .collect::<Vec<_>>();
    assert_eq!(
        handed,
        [held("to-b", Kind::ResourceQuota, "team-compute")],
        "only the same kind and name, declared by the winner there"
    );
}
