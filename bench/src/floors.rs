//! The floor: the fastest honest way to write the same 4·N objects with the controller's client
//! settings. A tight loop of POSTs and one of forced server-side applies, both measured, the
//! faster counts; a third, the POSTs beside a controller's watches of the managed kinds
//! ([`crate::watching`]), is reported (never the floor) to show what watching costs any
//! controller. The floor's objects are deleted after each (not measured).

use std::time::Instant;

use anyhow::Context as _;
use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::ApiResource;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tenantry::api::TenantPolicy;
use tenantry::model::key::Owner;
use tenantry_testkit::managed_kinds;

use crate::cli::Args;
use crate::fixtures::{FLOOR_LABEL, declared};
use crate::probe::{Before, Phases};
use crate::quiet::quiet;
use crate::watching::watch_like_a_controller;

#[derive(Clone, Copy, Debug)]
pub enum Verb {
    Post,
    Apply,
    /// POST with [`watch_like_a_controller`]'s watches open.
    PostWatched,
}

/// The floor: 4·N writes of the declared objects (prefixed `floor-`) as tight as the client
/// allows; the same objects the controller writes (its labels and its controller
/// ownerReference, with blockOwnerDeletion, to an existing TenantPolicy `owner`, so that
/// admission's owner checks and kube-controller-manager's garbage collector do for them what
/// they do for Tenantry's), plus the floor's label. Returns seconds, and records the phase in
/// `phases`; the caller deletes the objects (not measured).
pub async fn floor(
    client: &Client,
    names: &[String],
    verb: Verb,
    concurrency: usize,
    owner: &Owner,
    phases: &mut Phases,
) -> anyhow::Result<f64> {
    let mut labels = tenantry::model::object::managed_labels(&owner.name);
    labels.insert(FLOOR_LABEL.into(), "true".into());
    let owners = [owner.owner_reference()];
    let writes: Vec<(String, ApiResource, Value)> = names
        .iter()
        .flat_map(|ns| {
            let (labels, owners) = (&labels, &owners);
            declared("20")
                .into_iter()
                .map(move |(resource, name, spec)| {
                    let object = json!({
                        "apiVersion": resource.api_version, "kind": resource.kind,
                        "metadata": {"name": format!("floor-{name}"), "namespace": ns,
                            "labels": labels, "ownerReferences": owners},
                        "spec": spec,
                    });
                    (ns.clone(), resource, object)
                })
        })
        .collect();
    let before = Before::take(std::process::id());
    let started = Instant::now();
    futures::stream::iter(writes)
        .map(|(ns, resource, object)| {
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &resource);
            async move {
                let name = object["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                match verb {
                    Verb::Post | Verb::PostWatched => {
                        let params = PostParams {
                            field_manager: Some("bench-floor".into()),
                            ..Default::default()
                        };
                        api.create(&params, &serde_json::from_value(object)?)
                            .await?;
                    }
                    Verb::Apply => {
                        let params = PatchParams::apply("bench-floor").force();
                        api.patch(&name, &params, &Patch::Apply(object)).await?;
                    }
                }
                anyhow::Ok(())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    let took = started.elapsed().as_secs_f64();
    eprintln!("[bench N={}] floor {verb:?}: {took:.2}s", names.len());
    phases.record(
        &format!("floor {verb:?}"),
        took,
        std::process::id(),
        &before,
    );
    Ok(took)
}

/// Deletes every object a floor wrote (by the floor's label).
pub async fn delete_floor(client: &Client, concurrency: usize) -> anyhow::Result<()> {
    let lp = ListParams::default().labels(&format!("{FLOOR_LABEL}=true"));
    let mut doomed = Vec::new();
    for resource in managed_kinds() {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        for o in api.list_metadata(&lp).await? {
            doomed.push((
                resource.clone(),
                o.namespace().unwrap_or_default(),
                o.name_any(),
            ));
        }
    }
    futures::stream::iter(doomed)
        .map(|(resource, ns, name)| {
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &resource);
            async move {
                api.delete(&name, &DeleteParams::default()).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// The owner of the floor's objects: a policy named `name` that no controller handles (it has
/// no bench label).
pub async fn floor_owner(client: &Client, name: &str) -> anyhow::Result<Owner> {
    let mut policy = tenantry_testkit::policy(name, Default::default(), json!({}))?;
    policy.metadata.labels = None;
    let api: Api<TenantPolicy> = Api::all(client.clone());
    let created = api.create(&PostParams::default(), &policy).await?;
    Ok(Owner {
        name: name.to_owned(),
        uid: created.metadata.uid.context("a created policy has a uid")?,
    })
}

/// The floors measured in one run: POST and apply (the faster is the floor), and POST with a
/// controller's watches open (not a floor: what watching its own writes costs any controller).
#[derive(Default)]
pub struct Floors {
    pub post: Vec<f64>,
    pub apply: Vec<f64>,
    pub watched: Vec<f64>,
}

/// One measured floor phase: POST, apply and watched POST, in an order that rotates with the run.
pub async fn floor_phase(
    client: &Client,
    names: &[String],
    args: &Args,
    run: usize,
    floors: &mut Floors,
    phases: &mut Phases,
) -> anyhow::Result<()> {
    let mut order = [Verb::Post, Verb::Apply, Verb::PostWatched];
    let turns = run % order.len();
    order.rotate_left(turns);
    let owner = floor_owner(client, &format!("floor-owner-{}-{run}", std::process::id())).await?;
    for verb in order {
        let watching = match verb {
            Verb::PostWatched => Some(watch_like_a_controller(client, args.watch_encoding).await?),
            Verb::Post | Verb::Apply => None,
        };
        quiet(client, names, &format!("floor {verb:?}")).await?;
        let took = floor(client, names, verb, args.concurrency, &owner, phases).await?;
        if let Some(watching) = watching {
            watching.saw(4 * names.len()).await?;
        }
        delete_floor(client, args.concurrency).await?;
        match verb {
            Verb::Post => floors.post.push(took),
            Verb::Apply => floors.apply.push(took),
            Verb::PostWatched => floors.watched.push(took),
        }
    }
    Api::<TenantPolicy>::all(client.clone())
        .delete(&owner.name, &DeleteParams::default())
        .await?;
    Ok(())
}

/// One unmeasured POST floor, so that no measured phase runs on a cold control plane: the
/// first writes after the namespaces' creation are the slowest (caches filling, heaps growing),
/// and the first measured phase would otherwise always be a floor. Not recorded.
pub async fn warm_up(client: &Client, names: &[String], concurrency: usize) -> anyhow::Result<()> {
    quiet(client, names, "warm-up").await?;
    eprintln!("[bench N={}] warm-up (not measured)", names.len());
    let owner = floor_owner(
        client,
        &format!("floor-owner-{}-warm-up", std::process::id()),
    )
    .await?;
    let mut unrecorded = Phases::default();
    floor(
        client,
        names,
        Verb::Post,
        concurrency,
        &owner,
        &mut unrecorded,
    )
    .await?;
    delete_floor(client, concurrency).await?;
    Api::<TenantPolicy>::all(client.clone())
        .delete(&owner.name, &DeleteParams::default())
        .await?;
    Ok(())
}
