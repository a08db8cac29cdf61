//! Which namespaces a policy selects, and which policy wins each kind in each namespace. Pure:
//! plain data in, plain data out.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kube::core::{Selector, SelectorExt};

use crate::api::{PROTECTED_NAMESPACES, TenantPolicySpec};
use crate::resources::{Desired, Kind, ObjectKey, Section, storage_class};

/// What selection needs to know of a namespace: borrowed from the cache in the controller, so a
/// reconcile does not copy every namespace's labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceInfo<'a> {
    pub name: Cow<'a, str>,
    pub labels: Cow<'a, BTreeMap<String, String>>,
    /// Terminating namespaces are left alone: nothing is created in or pruned from them.
    pub terminating: bool,
}

/// A live (not terminating) policy taking part in selection.
#[derive(Clone, Debug)]
pub struct Candidate<'a> {
    pub name: &'a str,
    pub spec: &'a TenantPolicySpec,
    selector: Option<Selector>,
}

impl<'a> Candidate<'a> {
    /// Fails with the reason when `namespaceSelector` is not a valid label selector.
    pub fn new(name: &'a str, spec: &'a TenantPolicySpec) -> Result<Self, String> {
        let selector = spec
            .namespace_selector
            .clone()
            .map(Selector::try_from)
            .transpose()
            .map_err(|e| format!("spec.namespaceSelector: {}", e.0))?;
        Ok(Self {
            name,
            spec,
            selector,
        })
    }

    /// Named explicitly, or matched by the selector unless the namespace is protected.
    /// Neither field set selects nothing.
    pub fn selects(&self, ns: &NamespaceInfo) -> bool {
        if ns.terminating {
            return false;
        }
        if self.spec.namespaces.iter().any(|n| *n == *ns.name) {
            return true;
        }
        if PROTECTED_NAMESPACES.contains(&ns.name.as_ref()) {
            return false;
        }
        self.selector
            .as_ref()
            .is_some_and(|s| s.matches(ns.labels.as_ref()))
    }
}

/// Higher priority first; ties to the alphabetically first name.
pub fn precedence(a: &Candidate, b: &Candidate) -> Ordering {
    b.spec
        .priority
        .cmp(&a.spec.priority)
        .then_with(|| a.name.cmp(b.name))
}

/// The policy that wins `section` in `ns`: the first by precedence among those that select it
/// and set that section.
pub fn winner<'c, 'a>(
    section: Section,
    ns: &NamespaceInfo,
    candidates: &'c [Candidate<'a>],
) -> Option<&'c Candidate<'a>> {
    candidates
        .iter()
        .filter(|c| section.is_set_by(c.spec) && c.selects(ns))
        .min_by(|a, b| precedence(a, b))
}

/// The policy that owns the StorageClass `name`: the first by precedence among those declaring it.
pub fn class_owner<'c, 'a>(
    name: &str,
    candidates: &'c [Candidate<'a>],
) -> Option<&'c Candidate<'a>> {
    candidates
        .iter()
        .filter(|c| {
            c.spec
                .storage
                .as_ref()
                .is_some_and(|s| s.classes.iter().any(|t| t.name == name))
        })
        .min_by(|a, b| precedence(a, b))
}

/// A section a policy sets in a namespace it selects but another policy wins.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Shadowed {
    pub namespace: String,
    pub section: Section,
    pub winner: String,
}

/// A StorageClass a policy declares that a higher-precedence policy owns.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ShadowedClass {
    pub name: String,
    pub winner: String,
}

/// Everything one policy should hold, computed from all policies and namespaces.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Assignment {
    /// Namespaces the policy selects.
    pub selected: BTreeSet<String>,
    /// The objects it wins, as they should be.
    pub desired: Vec<Desired>,
    /// Sections it loses, per namespace.
    pub shadowed: Vec<Shadowed>,
    /// StorageClasses it declares that another policy owns.
    pub shadowed_classes: Vec<ShadowedClass>,
    /// Objects the winners of those kinds want under the same names: ours may be adopted by them,
    /// so they are neither deleted nor released.
    pub handed_over: BTreeSet<ObjectKey>,
}

/// Computes the assignment of `policy` (which must be one of `candidates`); `cluster_classes`
/// are the names of the StorageClasses in the cluster (the allow-list caps the others).
pub fn assign(
    policy: &Candidate,
    candidates: &[Candidate],
    namespaces: &[NamespaceInfo],
    cluster_classes: &BTreeSet<String>,
) -> Assignment {
    // Built and normalised once, shared by every namespace.
    type Built = Vec<(String, Arc<serde_json::Value>, Arc<serde_json::Value>, u64)>;
    let built: Vec<(Section, Built)> = Section::ALL
        .into_iter()
        .filter(|s| s.is_set_by(policy.spec))
        .map(|s| {
            let specs = s
                .build(policy.spec, cluster_classes)
                .into_iter()
                .map(|(name, spec)| {
                    let normalized = Arc::new(s.kind().normalize(&spec));
                    let fingerprint = crate::resources::spec_fingerprint(&normalized);
                    (name, Arc::new(spec), normalized, fingerprint)
                })
                .collect();
            (s, specs)
        })
        .collect();
    let mut assignment = Assignment::default();
    for ns in namespaces.iter().filter(|ns| policy.selects(ns)) {
        assignment.selected.insert(ns.name.to_string());
        for (section, specs) in &built {
            let Some(winner) = winner(*section, ns, candidates) else {
                continue;
            };
            let kind = section.kind();
            if winner.name == policy.name {
                assignment.desired.extend(specs.iter().map(
                    |(name, spec, normalized, fingerprint)| Desired {
                        key: ObjectKey {
                            kind,
                            namespace: ns.name.to_string(),
                            name: name.clone(),
                        },
                        spec: spec.clone(),
                        normalized: normalized.clone(),
                        fingerprint: *fingerprint,
                    },
                ));
            } else {
                assignment.shadowed.push(Shadowed {
                    namespace: ns.name.to_string(),
                    section: *section,
                    winner: winner.name.to_owned(),
                });
                for (name, _) in section.build(winner.spec, cluster_classes) {
                    assignment.handed_over.insert(ObjectKey {
                        kind,
                        namespace: ns.name.to_string(),
                        name,
                    });
                }
            }
        }
    }
    for template in policy.spec.storage.iter().flat_map(|s| &s.classes) {
        let key = ObjectKey {
            kind: Kind::StorageClass,
            namespace: String::new(),
            name: template.name.clone(),
        };
        match class_owner(&template.name, candidates) {
            Some(owner) if owner.name != policy.name => {
                assignment.shadowed_classes.push(ShadowedClass {
                    name: template.name.clone(),
                    winner: owner.name.to_owned(),
                });
                assignment.handed_over.insert(key);
            }
            _ => assignment
                .desired
                .push(Desired::of(key, storage_class::build(template))),
        }
    }
    assignment
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        assert!(err.starts_with("spec.namespaceSelector"), "{err}");
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
            winner(Section::LimitRanges, &a, &candidates).unwrap().name,
            "alpha-tie"
        );
        // Only `low` sets quotas, so it keeps them while losing LimitRanges.
        assert_eq!(
            winner(Section::ResourceQuotas, &a, &candidates)
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
        assert!(low_assignment.handed_over.contains(&ObjectKey {
            kind: Kind::LimitRange,
            namespace: "a".into(),
            name: "defaults".into()
        }));
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
            winner(Section::SharedQuotas, &a, &candidates).unwrap().name,
            "other"
        );
        assert_eq!(
            winner(Section::ResourceQuotas, &a, &candidates)
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
}
