//! Properties of the pure pipeline over generated policies: selection, building and diffing never
//! panic; a namespace holding exactly what was built (spelled as the API server may spell it)
//! needs no write; quantity comparison is by value.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use proptest::prelude::*;
use serde_json::{Value, json};
use tenantry::api::{DeletionPolicy, TenantPolicySpec};
use tenantry::model::action::Action;
use tenantry::model::key::Owner;
use tenantry::model::namespace::NamespaceInfo;
use tenantry::model::object::{Live, managed_labels};
use tenantry::model::quantity;
use tenantry::pipeline::diff;
use tenantry::pipeline::select::{self, Candidate};

const RESOURCES: [&str; 3] = ["cpu", "memory", "ephemeral-storage"];
const SUFFIXES: [&str; 10] = ["", "m", "k", "M", "G", "Ki", "Mi", "Gi", "u", "n"];

fn quantity_text() -> impl Strategy<Value = String> {
    (
        0u64..5_000_000,
        prop::sample::select(SUFFIXES.to_vec()),
        prop::option::of(0u8..10),
    )
        .prop_map(|(n, suffix, frac)| match frac {
            Some(f) => format!("{n}.{f}{suffix}"),
            None => format!("{n}{suffix}"),
        })
}

/// Another spelling of the same value, as the API server's canonical form may differ from ours.
fn respell(text: &str, choice: u8) -> String {
    let n = quantity::parse(text).expect("generated quantities parse").0;
    let mut spellings = vec![format!("{n}n")];
    for (unit, suffix) in [
        (1_000i128, "u"),
        (1_000_000, "m"),
        (1_000_000_000, ""),
        (1_000_000_000_000, "k"),
    ] {
        if n % unit == 0 {
            spellings.push(format!("{}{suffix}", n / unit));
        }
    }
    for (shift, suffix) in [(10, "Ki"), (20, "Mi"), (30, "Gi")] {
        let unit = (1i128 << shift) * 1_000_000_000;
        if n % unit == 0 {
            spellings.push(format!("{}{suffix}", n / unit));
        }
    }
    spellings[choice as usize % spellings.len()].clone()
}

fn quantity_map() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(
        prop::sample::select(RESOURCES.to_vec()).prop_map(String::from),
        quantity_text(),
        0..3,
    )
}

fn limit_item() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec!["Container", "Pod", "PersistentVolumeClaim"]),
        quantity_map(),
        quantity_map(),
        quantity_map(),
        quantity_map(),
    )
        .prop_map(|(kind, max, min, default, request)| {
            let mut item = json!({"type": kind});
            for (field, map) in [
                ("max", max),
                ("min", min),
                ("default", default),
                ("defaultRequest", request),
            ] {
                if !map.is_empty() && (kind == "Container" || !field.starts_with("default")) {
                    item[field] = json!(map);
                }
            }
            item
        })
}

const CLASSES: [&str; 4] = ["gold", "silver", "bronze", "standard"];

/// The storage section: owned classes, an optional allow-list, per-class quotas.
fn storage() -> impl Strategy<Value = Value> {
    (
        prop::collection::btree_map(
            prop::sample::select(CLASSES.to_vec()),
            (
                prop::option::of(prop::sample::select(vec!["Delete", "Retain"])),
                any::<bool>(),
                prop::option::of(any::<bool>()),
            ),
            0..3,
        ),
        prop::option::of(prop::sample::subsequence(CLASSES.to_vec(), 0..4)),
        prop::collection::btree_map(
            prop::sample::select(CLASSES.to_vec()),
            quantity_text(),
            0..3,
        ),
    )
        .prop_map(|(classes, allowed, quotas)| {
            let classes: Vec<Value> = classes
                .into_iter()
                .map(|(name, (reclaim, params, expansion))| {
                    let mut class = json!({"name": name, "provisioner": "example.com/p"});
                    if let Some(r) = reclaim {
                        class["reclaimPolicy"] = json!(r);
                    }
                    if params {
                        class["parameters"] = json!({"type": name});
                    }
                    if let Some(e) = expansion {
                        class["allowVolumeExpansion"] = json!(e);
                    }
                    class
                })
                .collect();
            // Quotas only for allowed classes, as the CRD requires.
            let quotas: BTreeMap<&str, Value> = quotas
                .into_iter()
                .filter(|(c, _)| allowed.as_ref().is_none_or(|a| a.contains(c)))
                .map(|(c, q)| (c, json!({"requests.storage": q})))
                .collect();
            let mut storage = json!({"classes": classes, "quotas": quotas});
            if let Some(allowed) = allowed {
                storage["allowedClasses"] = json!(allowed);
            }
            storage
        })
}

fn spec() -> impl Strategy<Value = TenantPolicySpec> {
    (
        prop::collection::vec(prop::collection::vec(limit_item(), 1..3), 0..3),
        prop::collection::vec(quantity_map(), 0..3),
        prop::collection::vec((any::<bool>(), 0u8..5), 0..3),
        prop::collection::btree_set(0usize..6, 0..4),
        prop::option::of(prop::sample::select(vec!["a", "b"])),
        any::<i8>(),
        storage(),
    )
        .prop_map(|(ranges, quotas, budgets, named, team, priority, storage)| {
            serde_json::from_value(json!({
                "priority": priority,
                "storage": storage,
                "namespaces": named.iter().map(|i| format!("ns-{i}")).collect::<Vec<_>>(),
                "namespaceSelector": team.map(|t| json!({"matchLabels": {"team": t}})),
                "limitRanges": ranges.into_iter().enumerate().map(|(i, limits)| json!({"name": format!("lr-{i}"), "limits": limits})).collect::<Vec<_>>(),
                "resourceQuotas": quotas.into_iter().enumerate().map(|(i, hard)| json!({"name": format!("q-{i}"), "hard": hard})).collect::<Vec<_>>(),
                "podDisruptionBudgets": budgets.into_iter().enumerate().map(|(i, (min, n))| {
                    let mut b = json!({"name": format!("p-{i}"), "selector": {"matchLabels": {"app": format!("a{i}")}}});
                    b[if min { "minAvailable" } else { "maxUnavailable" }] = json!(n);
                    b
                }).collect::<Vec<_>>(),
            }))
            .expect("generated specs deserialize")
        })
}

/// The cluster's StorageClasses: some the policies declare, one they do not.
fn cluster_classes() -> BTreeSet<String> {
    ["gold", "standard", "other"].map(String::from).into()
}

fn namespaces() -> Vec<NamespaceInfo<'static>> {
    (0..6)
        .map(|i| NamespaceInfo {
            name: format!("ns-{i}").into(),
            labels: std::borrow::Cow::Owned(BTreeMap::from([(
                "team".to_owned(),
                if i % 2 == 0 { "a" } else { "b" }.to_owned(),
            )])),
            terminating: i == 5,
        })
        .collect()
}

/// The objects as the API server would hold them after applying: same values, other spellings.
fn as_stored(desired: &[tenantry::model::object::Desired], owner: &Owner, choice: u8) -> Vec<Live> {
    fn respell_all(v: &Value, choice: u8) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), respell_all(v, choice)))
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(|v| respell_all(v, choice)).collect()),
            Value::String(s)
                if quantity::parse(s).is_some()
                    && s.chars().next().is_some_and(|c| c.is_ascii_digit()) =>
            {
                Value::String(respell(s, choice))
            }
            other => other.clone(),
        }
    }
    desired
        .iter()
        .map(|d| Live {
            key: d.key.clone(),
            uid: format!("uid-{}", d.key),
            resource_version: "1".into(),
            labels: managed_labels(&owner.name),
            owner_references: vec![owner.owner_reference()],
            spec: match d.key.kind {
                tenantry::model::kind::Kind::PodDisruptionBudget => (*d.spec).clone(),
                // The API server fills in a class's defaults.
                tenantry::model::kind::Kind::StorageClass => {
                    let mut stored = (*d.spec).clone();
                    stored["reclaimPolicy"] = stored
                        .get("reclaimPolicy")
                        .cloned()
                        .unwrap_or(json!("Delete"));
                    stored["volumeBindingMode"] = json!("Immediate");
                    stored
                }
                _ => respell_all(&d.spec, choice),
            },
            foreign_manager: None,
            deleting: false,
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn converged_state_needs_no_write(spec in spec(), other in spec(), choice in any::<u8>()) {
        let owner = Owner { name: "mine".into(), uid: "uid-mine".into() };
        let me = Candidate::new("mine", &spec).unwrap();
        let them = Candidate::new("theirs", &other).unwrap();
        let candidates = vec![them, me.clone()];
        let assignment = select::assign(&me, &candidates, &namespaces(), &cluster_classes());
        let live = as_stored(&assignment.desired, &owner, choice);
        let nss = namespaces();
        let handed = |key: &tenantry::model::key::ObjectKey| select::handed_over("mine", key, &candidates, |ns| nss.iter().find(|n| n.name == ns).cloned(), &cluster_classes());
        let plan = diff::compute(&owner, &assignment.desired, live.as_slice(), &handed, DeletionPolicy::Delete, &HashSet::new());
        prop_assert!(plan.actions.is_empty(), "{:?}", plan.actions);
        prop_assert_eq!(plan.converged.len(), assignment.desired.len());
    }

    #[test]
    fn building_and_diffing_never_panic_and_only_touch_what_is_ours(
        spec in spec(), other in spec(), stale in spec(), retain in any::<bool>(), choice in any::<u8>()
    ) {
        let owner = Owner { name: "mine".into(), uid: "uid-mine".into() };
        let me = Candidate::new("mine", &spec).unwrap();
        let candidates = vec![Candidate::new("theirs", &other).unwrap(), me.clone()];
        let assignment = select::assign(&me, &candidates, &namespaces(), &cluster_classes());
        // Live state built from an unrelated spec: ours, but possibly wrong everywhere.
        let old = Candidate::new("mine", &stale).unwrap();
        let old_assignment = select::assign(&old, std::slice::from_ref(&old), &namespaces(), &cluster_classes());
        let mut live = as_stored(&old_assignment.desired, &owner, choice);
        // And objects of another policy, which must never be deleted or released by this one.
        let foreign = Owner { name: "theirs".into(), uid: "uid-theirs".into() };
        live.extend(as_stored(&select::assign(&candidates[0], &candidates, &namespaces(), &cluster_classes()).desired, &foreign, choice));
        let policy = if retain { DeletionPolicy::Retain } else { DeletionPolicy::Delete };
        let nss = namespaces();
        let handed = |key: &tenantry::model::key::ObjectKey| select::handed_over("mine", key, &candidates, |ns| nss.iter().find(|n| n.name == ns).cloned(), &cluster_classes());
        let plan = diff::compute(&owner, &assignment.desired, live.as_slice(), &handed, policy, &HashSet::new());
        let wanted: BTreeSet<_> = assignment.desired.iter().map(|d| d.key.clone()).collect();
        for action in &plan.actions {
            match action {
                Action::Delete { live } | Action::Release { live, .. } => {
                    prop_assert!(live.is_owned_by(&owner), "pruned {} of another policy", live.key);
                    prop_assert!(!wanted.contains(&live.key));
                }
                Action::Create { desired, .. } | Action::Apply { desired, .. } | Action::Replace { desired, .. } | Action::Recreate { desired, .. } => {
                    prop_assert!(wanted.contains(&desired.key));
                }
                Action::Inspect { .. } | Action::Adopt { .. } => {
                    prop_assert!(false, "the diff plans no look or adoption: {:?}", action.key());
                }
            }
        }
    }

    #[test]
    fn quantities_compare_by_value(text in quantity_text(), choice in any::<u8>(), other in quantity_text()) {
        prop_assert!(quantity::same(&text, &respell(&text, choice)));
        let equal = quantity::stored_value(&text) == quantity::stored_value(&other);
        prop_assert_eq!(quantity::same(&text, &other), equal);
    }
}
