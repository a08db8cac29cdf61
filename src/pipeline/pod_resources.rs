//! Pod resources as the API server computes them (Kubernetes 1.37, default feature gates), for the
//! audit: what a workload's next pod will be once admitted (API defaults, the namespace's
//! LimitRange defaults, pod-level defaulting), its QoS class, and what ResourceQuota counts for a
//! pod, in-place resizes included. All pure; each function names the upstream code it follows, so
//! the next engineer can check it against a newer release.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerStatus, LimitRange, PodSpec, PodStatus, ResourceQuota, ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::model::quantity;

/// Resource name -> value in nano-units, as the API server stores it.
pub type Amounts = BTreeMap<String, i128>;

type List = BTreeMap<String, Quantity>;

/// Pod QoS classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Qos {
    BestEffort,
    Burstable,
    Guaranteed,
}

impl Qos {
    pub fn as_str(self) -> &'static str {
        match self {
            Qos::BestEffort => "BestEffort",
            Qos::Burstable => "Burstable",
            Qos::Guaranteed => "Guaranteed",
        }
    }
}

fn value(q: &Quantity) -> i128 {
    quantity::stored_value(&q.0).map(|n| n.0).unwrap_or(0)
}

fn amounts(list: Option<&List>) -> Amounts {
    list.into_iter()
        .flatten()
        .map(|(k, q)| (k.clone(), value(q)))
        .collect()
}

/// A quantity for a value in nano-units, in the simplest exact spelling.
pub fn to_quantity(nanos: i128) -> Quantity {
    Quantity(if nanos % 1_000_000_000 == 0 {
        format!("{}", nanos / 1_000_000_000)
    } else if nanos % 1_000_000 == 0 {
        format!("{}m", nanos / 1_000_000)
    } else {
        format!("{nanos}n")
    })
}

fn add(to: &mut Amounts, other: &Amounts) {
    for (k, v) in other {
        *to.entry(k.clone()).or_default() += v;
    }
}

/// `maxResourceList`: each resource of `other` raised into `to`.
fn raise(to: &mut Amounts, other: &Amounts) {
    for (k, v) in other {
        let slot = to.entry(k.clone()).or_insert(*v);
        *slot = (*slot).max(*v);
    }
}

/// cpu, memory and hugepages-*: the resources pod-level `spec.resources` may set.
fn pod_level_resource(name: &str) -> bool {
    name == "cpu" || name == "memory" || name.starts_with("hugepages-")
}

fn requests_of(c: &Container) -> Option<&List> {
    c.resources.as_ref()?.requests.as_ref()
}

fn limits_of(c: &Container) -> Option<&List> {
    c.resources.as_ref()?.limits.as_ref()
}

/// `IsPodLevelResourcesSet`: pod-level requests or limits name cpu, memory or hugepages.
pub fn pod_level_set(spec: &PodSpec) -> bool {
    spec.resources.as_ref().is_some_and(|r| {
        r.requests
            .iter()
            .chain(r.limits.iter())
            .flatten()
            .any(|(k, _)| pod_level_resource(k))
    })
}

fn pod_level_requests_set(spec: &PodSpec) -> bool {
    spec.resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .is_some_and(|r| r.keys().any(|k| pod_level_resource(k)))
}

/// A container's requests and limits once the Container items of `limit_ranges` are applied, as the
/// LimitRanger admission plugin does for each LimitRange in turn: a default fills only a resource
/// the container does not set (`mergeContainerResources`).
fn apply_limit_range(c: &mut Container, lr: &LimitRange) {
    let (default_requests, default_limits) = container_defaults(lr);
    let resources = c.resources.get_or_insert_with(Default::default);
    for (defaults, list) in [
        (default_limits, &mut resources.limits),
        (default_requests, &mut resources.requests),
    ] {
        let list = list.get_or_insert_with(Default::default);
        for (k, v) in defaults {
            list.entry(k).or_insert(v);
        }
    }
}

/// (defaultRequest, default) of a LimitRange's Container items, after the API server's
/// defaulting of each item (`SetDefaults_LimitRangeItem`: default from max, defaultRequest from
/// default, then from min), later items overriding earlier ones
/// (`defaultContainerResourceRequirements`). Live LimitRanges are already defaulted; doing it
/// again changes nothing, and lets plain data in tests behave the same.
pub fn container_defaults(lr: &LimitRange) -> (List, List) {
    let (mut requests, mut limits) = (List::new(), List::new());
    for item in lr.spec.iter().flat_map(|s| s.limits.iter()) {
        if item.type_ != "Container" {
            continue;
        }
        let mut default = item.default.clone().unwrap_or_default();
        for (k, v) in item.max.iter().flatten() {
            default.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let mut default_request = item.default_request.clone().unwrap_or_default();
        for (k, v) in default.iter().chain(item.min.iter().flatten()) {
            default_request
                .entry(k.clone())
                .or_insert_with(|| v.clone());
        }
        requests.extend(default_request);
        limits.extend(default);
    }
    (requests, limits)
}

/// The pod the API server makes of `template` in a namespace holding `limit_ranges` (in the
/// order LimitRanger meets them): requests default to limits per container (`SetDefaults_Pod`,
/// at decoding, so before admission), LimitRange defaults fill what is still unset, then
/// pod-level requests and limits are defaulted (`DefaultPodLevelResources`, in PrepareForCreate
/// since 1.37, after admission).
pub fn next_pod(template: &PodSpec, limit_ranges: &[&LimitRange]) -> PodSpec {
    let mut spec = template.clone();
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        if let Some(limits) = limits_of(c).cloned() {
            let resources = c.resources.get_or_insert_with(Default::default);
            let requests = resources.requests.get_or_insert_with(Default::default);
            for (k, v) in limits {
                requests.entry(k).or_insert(v);
            }
        }
        for lr in limit_ranges {
            apply_limit_range(c, lr);
        }
    }
    default_pod_level(&mut spec);
    spec
}

/// `DefaultPodLevelResources` (pkg/api/pod/util.go): hugepage limits from the containers'; requests
/// from the containers' aggregated requests (cpu, memory), then from pod-level limits; limits,
/// where every container sets one, the larger of the pod-level request and the containers' sum.
fn default_pod_level(spec: &mut PodSpec) {
    let Some(resources) = spec.resources.as_ref() else {
        return;
    };
    if resources.requests.as_ref().is_none_or(|r| r.is_empty())
        && resources.limits.as_ref().is_none_or(|r| r.is_empty())
    {
        return;
    }
    let container_requests = aggregate(spec, None, &|c, _, _| amounts(requests_of(c)));
    let container_limits = aggregate(spec, None, &|c, _, _| amounts(limits_of(c)));
    let all_limit = |name: &str| {
        spec.containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .all(|c| limits_of(c).is_some_and(|l| l.contains_key(name)))
    };
    let candidates_all_limited: Vec<String> = container_limits
        .keys()
        .filter(|k| all_limit(k))
        .cloned()
        .collect();
    let resources = spec.resources.as_mut().expect("checked above");
    let requests = resources.requests.get_or_insert_with(Default::default);
    let limits = resources.limits.get_or_insert_with(Default::default);
    for (k, v) in &container_limits {
        if k.starts_with("hugepages-") && !requests.contains_key(k) {
            limits.entry(k.clone()).or_insert_with(|| to_quantity(*v));
        }
    }
    for (k, v) in &container_requests {
        if pod_level_resource(k) && !k.starts_with("hugepages-") {
            requests.entry(k.clone()).or_insert_with(|| to_quantity(*v));
        }
    }
    for (k, v) in limits.iter() {
        if pod_level_resource(k) {
            requests.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    for k in candidates_all_limited {
        if let Some(request) = requests.get(&k).filter(|_| pod_level_resource(&k))
            && !limits.contains_key(&k)
        {
            let limit = container_limits[&k].max(value(request));
            limits.insert(k, to_quantity(limit));
        }
    }
    if requests.is_empty() {
        resources.requests = None;
    }
    if limits.is_empty() {
        resources.limits = None;
    }
}

/// `requirementsQOS`: one set of requests and limits, judged on cpu and memory.
fn requirements_qos(r: Option<&ResourceRequirements>) -> Qos {
    let requests = amounts(r.and_then(|r| r.requests.as_ref()));
    let limits = amounts(r.and_then(|r| r.limits.as_ref()));
    if requests.is_empty() && limits.is_empty() {
        return Qos::BestEffort;
    }
    let shape = |name: &str| {
        let (req, lim) = (
            requests.get(name).copied().unwrap_or(0),
            limits.get(name).copied().unwrap_or(0),
        );
        if req != lim {
            Qos::Burstable
        } else if req == 0 {
            Qos::BestEffort
        } else {
            Qos::Guaranteed
        }
    };
    match (shape("cpu"), shape("memory")) {
        (a, b) if a == b => a,
        _ => Qos::Burstable,
    }
}

/// `ComputePodQOS` (pkg/apis/core/helper/qos): from pod-level resources when they are set,
/// otherwise each container (init containers too) judged alone: any Burstable, or a mix of
/// BestEffort and Guaranteed, makes the pod Burstable. For an admitted pod's spec.
pub fn qos(spec: &PodSpec) -> Qos {
    if pod_level_set(spec) {
        return requirements_qos(spec.resources.as_ref());
    }
    let mut pod: Option<Qos> = None;
    for c in spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
    {
        match (requirements_qos(c.resources.as_ref()), pod) {
            (Qos::Burstable, _) => return Qos::Burstable,
            (q, None) => pod = Some(q),
            (q, Some(p)) if q != p => return Qos::Burstable,
            _ => {}
        }
    }
    pod.unwrap_or(Qos::BestEffort)
}

type PerContainer<'a> = dyn Fn(&Container, Option<&ContainerStatus>, bool) -> Amounts + 'a;

fn container_status<'a>(status: &'a PodStatus, name: &str) -> Option<&'a ContainerStatus> {
    status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten())
        .find(|s| s.name == name)
}

/// `IsPodResizeInfeasible`: the PodResizePending condition says Infeasible (or, before 1.33, the
/// deprecated `status.resize`).
pub fn resize_infeasible(status: &PodStatus) -> bool {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodResizePending")
        .map(|c| c.reason.as_deref() == Some("Infeasible"))
        .unwrap_or(status.resize.as_deref() == Some("Infeasible"))
}

/// `aggregateContainerResourcesByFn` (component-helpers/resource): containers add up; init
/// containers count at their peak, restartable ones (sidecars) also adding to the total.
fn aggregate(spec: &PodSpec, status: Option<&PodStatus>, each: &PerContainer) -> Amounts {
    let infeasible = status.is_some_and(resize_infeasible);
    let of = |c: &Container| {
        each(
            c,
            status.and_then(|s| container_status(s, &c.name)),
            infeasible,
        )
    };
    let mut total = Amounts::new();
    for c in &spec.containers {
        add(&mut total, &of(c));
    }
    let (mut sidecars, mut init_peak) = (Amounts::new(), Amounts::new());
    for c in spec.init_containers.iter().flatten() {
        let own = of(c);
        if c.restart_policy.as_deref() == Some("Always") {
            add(&mut total, &own);
            add(&mut sidecars, &own);
            raise(&mut init_peak, &sidecars);
        } else {
            let mut with_sidecars = own;
            add(&mut with_sidecars, &sidecars);
            raise(&mut init_peak, &with_sidecars);
        }
    }
    raise(&mut total, &init_peak);
    total
}

fn max_of(lists: &[Amounts]) -> Amounts {
    let mut out = Amounts::new();
    for l in lists {
        raise(&mut out, l);
    }
    out
}

/// A pod's requests as ResourceQuota counts them (`PodUsageFunc` -> `PodRequests` with
/// `UseStatusResources`, InPlacePodVerticalScaling being GA since 1.35): per container the larger
/// of the desired spec, the actuated `status.containerStatuses[].resources` and the
/// `allocatedResources` (only the latter two when the resize is infeasible); pod-level requests
/// replace the containers' sum for the resources they name; overhead is added. `status: None`
/// counts a pod not yet running, as for the next pod of a workload.
pub fn pod_requests(spec: &PodSpec, status: Option<&PodStatus>) -> Amounts {
    let desired = |c: &Container, _: Option<&ContainerStatus>, _: bool| amounts(requests_of(c));
    let mut total = match status {
        None => aggregate(spec, None, &desired),
        Some(status) => {
            let fallback = |c: &Container, infeasible: bool| {
                if infeasible {
                    Amounts::new()
                } else {
                    amounts(requests_of(c))
                }
            };
            let allocated = |c: &Container, cs: Option<&ContainerStatus>, inf: bool| match cs
                .and_then(|s| s.allocated_resources.as_ref())
            {
                Some(a) => amounts(Some(a)),
                None => fallback(c, inf),
            };
            let actuated = |c: &Container, cs: Option<&ContainerStatus>, inf: bool| match cs
                .and_then(|s| s.resources.as_ref()?.requests.as_ref())
            {
                Some(r) => amounts(Some(r)),
                None => allocated(c, cs, inf),
            };
            let (allocated, actuated) = (
                aggregate(spec, Some(status), &allocated),
                aggregate(spec, Some(status), &actuated),
            );
            if resize_infeasible(status) {
                max_of(&[actuated, allocated])
            } else {
                max_of(&[aggregate(spec, None, &desired), actuated, allocated])
            }
        }
    };
    if pod_level_requests_set(spec) {
        let pod = spec.resources.as_ref().and_then(|r| r.requests.as_ref());
        for (k, v) in amounts(pod) {
            if pod_level_resource(&k) {
                total.insert(k, v);
            }
        }
    }
    add(&mut total, &amounts(spec.overhead.as_ref()));
    total
}

/// A pod's limits as ResourceQuota counts them (`PodLimits`): per container the larger of desired
/// and actuated limits (only actuated when the resize is infeasible); pod-level limits replace the
/// containers' sum; overhead is added to the non-zero ones.
pub fn pod_limits(spec: &PodSpec, status: Option<&PodStatus>) -> Amounts {
    let desired = |c: &Container, _: Option<&ContainerStatus>, _: bool| amounts(limits_of(c));
    let mut total = match status {
        None => aggregate(spec, None, &desired),
        Some(status) => {
            let actuated = |c: &Container, cs: Option<&ContainerStatus>, inf: bool| match cs
                .and_then(|s| s.resources.as_ref()?.limits.as_ref())
            {
                Some(l) => amounts(Some(l)),
                None if inf => Amounts::new(),
                None => amounts(limits_of(c)),
            };
            let actuated = aggregate(spec, Some(status), &actuated);
            if resize_infeasible(status) {
                actuated
            } else {
                max_of(&[aggregate(spec, None, &desired), actuated])
            }
        }
    };
    if pod_level_set(spec) {
        let pod = spec.resources.as_ref().and_then(|r| r.limits.as_ref());
        for (k, v) in amounts(pod) {
            if pod_level_resource(&k) {
                total.insert(k, v);
            }
        }
    }
    for (k, v) in amounts(spec.overhead.as_ref()) {
        if let Some(limit) = total.get_mut(&k).filter(|l| **l != 0) {
            *limit += v;
        }
    }
    total
}

/// `QuotaV1Pod`, without the clock: pods in a terminal phase no longer count against quotas.
pub fn counts_for_quota(status: Option<&PodStatus>) -> bool {
    !matches!(
        status.and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// The quota keys a pod's requests and limits fill (`podComputeUsageHelper`, cpu and memory).
fn usage_keys(requests: &Amounts, limits: &Amounts) -> Vec<String> {
    let mut keys = Vec::new();
    for r in ["cpu", "memory"] {
        if requests.contains_key(r) {
            keys.extend([r.to_owned(), format!("requests.{r}")]);
        }
        if limits.contains_key(r) {
            keys.push(format!("limits.{r}"));
        }
    }
    keys
}

/// Whether `quota` judges a pod with this admitted spec and QoS (`podMatchesScopeFunc`): every
/// scope and every scopeSelector expression must match.
pub fn quota_applies(quota: &ResourceQuota, spec: &PodSpec, pod_qos: Qos) -> bool {
    let Some(q) = &quota.spec else { return true };
    let terminating = spec.active_deadline_seconds.is_some_and(|s| s >= 0);
    let priority = spec
        .priority_class_name
        .as_deref()
        .filter(|p| !p.is_empty());
    let scope = |name: &str, op: &str, values: &[String]| match name {
        "Terminating" => terminating,
        "NotTerminating" => !terminating,
        "BestEffort" => pod_qos == Qos::BestEffort,
        "NotBestEffort" => pod_qos != Qos::BestEffort,
        "PriorityClass" => match op {
            "Exists" => priority.is_some(),
            "DoesNotExist" => priority.is_none(),
            "In" => priority.is_some_and(|p| values.iter().any(|v| v == p)),
            "NotIn" => priority.is_none_or(|p| !values.iter().any(|v| v == p)),
            _ => false,
        },
        "CrossNamespacePodAffinity" => cross_namespace_affinity(spec),
        _ => false,
    };
    q.scopes.iter().flatten().all(|s| scope(s, "Exists", &[]))
        && q.scope_selector
            .iter()
            .flat_map(|s| s.match_expressions.iter().flatten())
            .all(|e| {
                let hit = scope(
                    &e.scope_name,
                    &e.operator,
                    e.values.as_deref().unwrap_or_default(),
                );
                // For the boolean scopes, `DoesNotExist` is the negation of the scope.
                if e.scope_name != "PriorityClass" && e.operator == "DoesNotExist" {
                    !hit
                } else {
                    hit
                }
            })
}

fn cross_namespace_affinity(spec: &PodSpec) -> bool {
    let Some(a) = &spec.affinity else {
        return false;
    };
    let term = |t: &k8s_openapi::api::core::v1::PodAffinityTerm| {
        t.namespace_selector.is_some() || t.namespaces.as_ref().is_some_and(|n| !n.is_empty())
    };
    let affinity = a.pod_affinity.iter().flat_map(|p| {
        p.required_during_scheduling_ignored_during_execution
            .iter()
            .flatten()
            .chain(
                p.preferred_during_scheduling_ignored_during_execution
                    .iter()
                    .flatten()
                    .map(|w| &w.pod_affinity_term),
            )
    });
    let anti = a.pod_anti_affinity.iter().flat_map(|p| {
        p.required_during_scheduling_ignored_during_execution
            .iter()
            .flatten()
            .chain(
                p.preferred_during_scheduling_ignored_during_execution
                    .iter()
                    .flatten()
                    .map(|w| &w.pod_affinity_term),
            )
    });
    affinity.chain(anti).any(term)
}

/// What quota admission refuses in a pod it judges (`podEvaluator.Constraints`): when `hard`
/// caps cpu or memory (requests, limits or the bare name), every container must set them, unless
/// pod-level resources are set. Returns resource -> containers missing it, as the API server's
/// "must specify" message lists them.
pub fn missing_for_quota(spec: &PodSpec, hard: &List) -> BTreeMap<String, Vec<String>> {
    const VALIDATED: [&str; 6] = [
        "cpu",
        "memory",
        "requests.cpu",
        "requests.memory",
        "limits.cpu",
        "limits.memory",
    ];
    let mut missing: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if pod_level_set(spec) {
        return missing;
    }
    let required: Vec<&str> = VALIDATED
        .into_iter()
        .filter(|r| hard.contains_key(*r))
        .collect();
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        let have = usage_keys(&amounts(requests_of(c)), &amounts(limits_of(c)));
        for r in &required {
            if !have.iter().any(|h| h == r) {
                missing
                    .entry((*r).to_owned())
                    .or_default()
                    .push(c.name.clone());
            }
        }
    }
    for names in missing.values_mut() {
        names.sort();
        names.dedup();
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn spec(v: Value) -> PodSpec {
        serde_json::from_value(v).unwrap()
    }

    fn container(name: &str, resources: Value) -> Value {
        json!({"name": name, "image": "x", "resources": resources})
    }

    fn limit_range(limits: Value) -> LimitRange {
        serde_json::from_value(json!({"metadata": {"name": "lr"}, "spec": {"limits": limits}}))
            .unwrap()
    }

    fn cpu_mem(a: &Amounts) -> (i128, i128) {
        (
            a.get("cpu").copied().unwrap_or(0) / 1_000_000,
            (a.get("memory").copied().unwrap_or(0) / 1_000_000_000) >> 30,
        )
    }

    #[test]
    fn qos_classes_by_the_kubernetes_rules() {
        let guaranteed = json!({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1000m", "memory": "1024Mi"}});
        let cases = [
            (json!([container("a", json!({}))]), Qos::BestEffort),
            (json!([container("a", guaranteed.clone())]), Qos::Guaranteed),
            // Limits only: requests default to them when the pod is made.
            (
                json!([container(
                    "a",
                    json!({"limits": {"cpu": "1", "memory": "1Gi"}})
                )]),
                Qos::Guaranteed,
            ),
            (
                json!([
                    container("a", guaranteed.clone()),
                    container("b", json!({}))
                ]),
                Qos::Burstable,
            ),
            (
                json!([container("a", json!({"requests": {"cpu": "1"}}))]),
                Qos::Burstable,
            ),
            // Only cpu and memory decide.
            (
                json!([container(
                    "a",
                    json!({"requests": {"ephemeral-storage": "1Gi"}})
                )]),
                Qos::BestEffort,
            ),
        ];
        for (containers, want) in cases {
            let next = next_pod(&spec(json!({"containers": containers})), &[]);
            assert_eq!(qos(&next), want, "{containers}");
        }
        // An init container counts like the others.
        let with_init = spec(json!({"containers": [container("a", guaranteed.clone())],
            "initContainers": [container("i", json!({}))]}));
        assert_eq!(qos(&next_pod(&with_init, &[])), Qos::Burstable);
    }

    #[test]
    fn limit_range_defaults_make_a_bare_template_burstable() {
        let lr = limit_range(json!([{"type": "Container",
            "default": {"cpu": "300m", "memory": "200Mi"},
            "defaultRequest": {"cpu": "200m", "memory": "100Mi"}}]));
        let bare = spec(json!({"containers": [container("a", json!({}))]}));
        assert_eq!(qos(&next_pod(&bare, &[])), Qos::BestEffort);
        let next = next_pod(&bare, &[&lr]);
        assert_eq!(qos(&next), Qos::Burstable);
        assert_eq!(cpu_mem(&pod_requests(&next, None)).0, 200);
        assert_eq!(cpu_mem(&pod_limits(&next, None)).0, 300);
    }

    #[test]
    fn limit_range_defaults_equal_to_each_other_make_guaranteed() {
        // Only `default` given: the API server defaults defaultRequest to it.
        let lr = limit_range(
            json!([{"type": "Container", "default": {"cpu": "500m", "memory": "1Gi"}}]),
        );
        let next = next_pod(
            &spec(json!({"containers": [container("a", json!({}))]})),
            &[&lr],
        );
        assert_eq!(qos(&next), Qos::Guaranteed);
    }

    #[test]
    fn a_set_limit_is_the_request_before_limit_range_defaults_apply() {
        // Requests default to limits at decoding, before LimitRanger: defaultRequest does not win.
        let lr = limit_range(json!([{"type": "Container",
            "default": {"cpu": "300m", "memory": "200Mi"}, "defaultRequest": {"cpu": "200m", "memory": "100Mi"}}]));
        let next = next_pod(
            &spec(json!({"containers": [container("a", json!({"limits": {"cpu": "1"}}))]})),
            &[&lr],
        );
        let c = &next.containers[0].resources.as_ref().unwrap();
        assert_eq!(c.requests.as_ref().unwrap()["cpu"].0, "1");
        assert_eq!(c.requests.as_ref().unwrap()["memory"].0, "100Mi");
        assert_eq!(c.limits.as_ref().unwrap()["memory"].0, "200Mi");
        assert_eq!(qos(&next), Qos::Burstable);
        // A Pod item's bounds default nothing.
        let pod_item = limit_range(json!([{"type": "Pod", "max": {"cpu": "2"}}]));
        let bare = spec(json!({"containers": [container("a", json!({}))]}));
        assert_eq!(qos(&next_pod(&bare, &[&pod_item])), Qos::BestEffort);
        // A Container max defaults the limit, and so the request.
        let max = limit_range(json!([{"type": "Container", "max": {"cpu": "2", "memory": "1Gi"}}]));
        assert_eq!(qos(&next_pod(&bare, &[&max])), Qos::Guaranteed);
    }

    #[test]
    fn pod_level_resources_decide_qos_and_requests() {
        let guaranteed_pod = spec(json!({
            "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
            "containers": [container("a", json!({})), container("b", json!({"requests": {"cpu": "100m"}}))]}));
        let next = next_pod(&guaranteed_pod, &[]);
        assert_eq!(qos(&next), Qos::Guaranteed);
        assert_eq!(cpu_mem(&pod_requests(&next, None)), (1000, 1));
        // Limits only at pod level: requests default to them.
        let limits_only = spec(
            json!({"resources": {"limits": {"cpu": "2", "memory": "2Gi"}},
            "containers": [container("a", json!({}))]}),
        );
        let next = next_pod(&limits_only, &[]);
        assert_eq!(qos(&next), Qos::Guaranteed);
        assert_eq!(cpu_mem(&pod_requests(&next, None)), (2000, 2));
        // Requests only at pod level, no container limits: Burstable, nothing for quota to refuse.
        let requests_only = spec(json!({"resources": {"requests": {"cpu": "500m"}},
            "containers": [container("a", json!({}))]}));
        let next = next_pod(&requests_only, &[]);
        assert_eq!(qos(&next), Qos::Burstable);
        let hard: List = [("requests.memory".to_owned(), Quantity("1Gi".into()))].into();
        assert!(missing_for_quota(&next, &hard).is_empty());
        // LimitRange defaults on the containers feed the pod-level defaults: memory requests from
        // the containers' sum, limits from theirs where every container has one.
        let lr = limit_range(json!([{"type": "Container",
            "default": {"cpu": "300m", "memory": "200Mi"}, "defaultRequest": {"cpu": "200m", "memory": "100Mi"}}]));
        let next = next_pod(&requests_only, &[&lr]);
        let r = next.resources.as_ref().unwrap();
        assert_eq!(r.requests.as_ref().unwrap()["memory"].0, "104857600");
        assert_eq!(r.limits.as_ref().unwrap()["cpu"].0, "500m");
        assert_eq!(qos(&next), Qos::Burstable);
    }

    #[test]
    fn sidecars_and_init_containers_count_as_the_scheduler_counts() {
        let s = spec(json!({
            "initContainers": [
                {"name": "sidecar", "image": "x", "restartPolicy": "Always", "resources": {"requests": {"cpu": "100m"}}},
                container("init", json!({"requests": {"cpu": "2"}}))],
            "containers": [container("a", json!({"requests": {"cpu": "500m"}}))],
            "overhead": {"cpu": "10m"}}));
        // max(500m + 100m, 2 + 100m) + 10m overhead.
        assert_eq!(cpu_mem(&pod_requests(&s, None)).0, 2110);
    }

    fn status(v: Value) -> PodStatus {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn in_place_resize_counts_the_larger_of_desired_and_allocated() {
        let resized_down = spec(json!({"containers": [container("a",
            json!({"requests": {"cpu": "200m"}, "limits": {"cpu": "1"}}))]}));
        let running = |allocated: &str, actual: &str| {
            status(
                json!({"containerStatuses": [{"name": "a", "image": "x", "imageID": "", "ready": true, "restartCount": 0,
                "allocatedResources": {"cpu": allocated},
                "resources": {"requests": {"cpu": actual}, "limits": {"cpu": "1"}}}]}),
            )
        };
        // Down from 500m, not yet actuated: quota still counts 500m.
        let st = running("500m", "500m");
        assert_eq!(cpu_mem(&pod_requests(&resized_down, Some(&st))).0, 500);
        // Up to 800m, allocated 500m: quota counts the desired 800m.
        let resized_up = spec(json!({"containers": [container("a",
            json!({"requests": {"cpu": "800m"}, "limits": {"cpu": "1"}}))]}));
        assert_eq!(cpu_mem(&pod_requests(&resized_up, Some(&st))).0, 800);
        // Infeasible: the desired value is ignored.
        let mut infeasible = st.clone();
        infeasible.conditions = Some(vec![
            serde_json::from_value(
                json!({"type": "PodResizePending", "status": "True", "reason": "Infeasible"}),
            )
            .unwrap(),
        ]);
        assert_eq!(
            cpu_mem(&pod_requests(&resized_up, Some(&infeasible))).0,
            500
        );
        // Terminal pods count for nothing.
        assert!(!counts_for_quota(Some(&status(
            json!({"phase": "Succeeded"})
        ))));
        assert!(counts_for_quota(Some(&status(json!({"phase": "Running"})))));
    }

    #[test]
    fn quota_refuses_pods_that_do_not_declare_what_it_caps() {
        let hard: List = [
            ("requests.cpu".to_owned(), Quantity("4".into())),
            ("pods".to_owned(), Quantity("10".into())),
        ]
        .into();
        let bare = spec(
            json!({"containers": [container("app", json!({})), container("log", json!({"requests": {"cpu": "10m"}}))]}),
        );
        assert_eq!(
            missing_for_quota(&next_pod(&bare, &[]), &hard),
            BTreeMap::from([("requests.cpu".to_owned(), vec!["app".to_owned()])])
        );
        let lr = limit_range(json!([{"type": "Container", "defaultRequest": {"cpu": "100m"}}]));
        assert!(missing_for_quota(&next_pod(&bare, &[&lr]), &hard).is_empty());
    }

    #[test]
    fn quota_scopes_choose_the_pods_they_judge() {
        let quota = |spec: Value| -> ResourceQuota {
            serde_json::from_value(json!({"metadata": {"name": "q"}, "spec": spec})).unwrap()
        };
        let pod =
            spec(json!({"containers": [container("a", json!({}))], "priorityClassName": "high"}));
        assert!(quota_applies(
            &quota(json!({"scopes": ["BestEffort"]})),
            &pod,
            Qos::BestEffort
        ));
        assert!(!quota_applies(
            &quota(json!({"scopes": ["NotBestEffort"]})),
            &pod,
            Qos::BestEffort
        ));
        assert!(!quota_applies(
            &quota(json!({"scopes": ["Terminating"]})),
            &pod,
            Qos::BestEffort
        ));
        let by_class = |op: &str, values: Value| {
            quota(
                json!({"scopeSelector": {"matchExpressions": [{"scopeName": "PriorityClass", "operator": op, "values": values}]}}),
            )
        };
        assert!(quota_applies(
            &by_class("In", json!(["high"])),
            &pod,
            Qos::Burstable
        ));
        assert!(!quota_applies(
            &by_class("NotIn", json!(["high"])),
            &pod,
            Qos::Burstable
        ));
        assert!(quota_applies(
            &by_class("Exists", json!(null)),
            &pod,
            Qos::Burstable
        ));
    }
}
