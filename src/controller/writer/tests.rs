//! The writer against a mocked HTTP service: each action sends the request it should (verb,
//! path, parameters, preconditions, body) and says what it found; without leadership nothing
//! is sent. The end-to-end tier runs the same writer against a real API server.

use http::{Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::{self, Handle};

use super::*;
use crate::model::action::Drift;

/// One expected request: method, path, and the answer to give.
struct Expect {
    method: &'static str,
    path: &'static str,
    status: StatusCode,
    answer: Value,
}

fn expect(method: &'static str, path: &'static str, status: u16, answer: Value) -> Expect {
    Expect {
        method,
        path,
        status: StatusCode::from_u16(status).unwrap(),
        answer,
    }
}

/// What the server saw of one request.
#[derive(Debug)]
struct Seen {
    query: String,
    content_type: String,
    body: Value,
}

/// Answers the expected requests in order, asserting method and path, and returns what it saw.
async fn serve(
    mut handle: Handle<Request<Body>, Response<Body>>,
    script: Vec<Expect>,
) -> Vec<Seen> {
    let mut seen = Vec::new();
    for step in script {
        let (request, respond) = handle.next_request().await.expect("a request");
        assert_eq!(
            request.method().as_str(),
            step.method,
            "method of {}",
            request.uri()
        );
        assert_eq!(request.uri().path(), step.path);
        let query = request.uri().query().unwrap_or_default().to_owned();
        let content_type = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        seen.push(Seen {
            query,
            content_type,
            body,
        });
        let response = Response::builder()
            .status(step.status)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&step.answer).unwrap()))
            .unwrap();
        respond.send_response(response);
    }
    seen
}

fn writer_with(leadership: Arc<Leadership>) -> (Writer, Handle<Request<Body>, Response<Body>>) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let reporter = Reporter {
        controller: "tenantry".into(),
        instance: None,
    };
    let writer = Writer::new(
        client,
        Arc::new(Metrics::default()),
        4,
        leadership,
        reporter,
        Arc::new(OwnWrites::default()),
    );
    (writer, handle)
}

fn owner() -> Owner {
    Owner {
        name: "team".into(),
        uid: "uid-team".into(),
    }
}

fn quota() -> Desired {
    let key = ObjectKey {
        kind: Kind::ResourceQuota,
        namespace: "mia".into(),
        name: "compute".into(),
    };
    Desired::of(key, json!({"hard": {"pods": "10"}}))
}

fn live_quota() -> Live {
    Live {
        key: quota().key,
        uid: "uid-q".into(),
        resource_version: "42".into(),
        labels: Default::default(),
        owner_references: vec![],
        spec: json!({"hard": {"pods": "5"}}),
        foreign_manager: None,
        deleting: false,
    }
}

fn stored_quota() -> Value {
    json!({"apiVersion": "v1", "kind": "ResourceQuota",
           "metadata": {"name": "compute", "namespace": "mia", "uid": "uid-q", "resourceVersion": "43"},
           "spec": {"hard": {"pods": "10"}}})
}

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": reason,
           "reason": reason, "code": code})
}

const QUOTAS: &str = "/api/v1/namespaces/mia/resourcequotas";
const QUOTA: &str = "/api/v1/namespaces/mia/resourcequotas/compute";

async fn run_one(action: Action, script: Vec<Expect>) -> (Found, Vec<Seen>) {
    let (writer, handle) = writer_with(Leadership::always());
    let server = tokio::spawn(serve(handle, script));
    let mut executed = writer.execute(&owner(), vec![action]).await;
    let seen = server.await.unwrap();
    (executed.pop().unwrap().1, seen)
}

#[tokio::test]
async fn a_creation_is_a_post_carrying_tenantrys_labels_and_controller_reference() {
    let create = Action::Create {
        desired: quota(),
        drift: None,
    };
    let (found, seen) = run_one(create, vec![expect("POST", QUOTAS, 201, stored_quota())]).await;
    assert!(matches!(found, Found::Done), "{found:?}");
    assert!(seen[0].query.contains("fieldManager=tenantry"));
    let meta = &seen[0].body["metadata"];
    assert_eq!(meta["labels"]["tenantry.io/policy"], "team");
    assert_eq!(meta["ownerReferences"][0]["uid"], "uid-team");
    assert_eq!(meta["ownerReferences"][0]["controller"], true);
    assert_eq!(seen[0].body["spec"]["hard"]["pods"], "10");
}

#[tokio::test]
async fn a_creation_refused_as_existing_reads_the_object_and_returns_it_undecided() {
    let create = Action::Create {
        desired: quota(),
        drift: None,
    };
    let script = vec![
        expect("POST", QUOTAS, 409, status(409, "AlreadyExists")),
        expect("GET", QUOTA, 200, stored_quota()),
    ];
    let (found, seen) = run_one(create, script).await;
    let Found::Exists(object) = found else {
        panic!("expected the object, got {found:?}");
    };
    assert_eq!(object.metadata.uid.as_deref(), Some("uid-q"));
    assert_eq!(seen.len(), 2, "a POST and a GET, no write beyond them");
}

#[tokio::test]
async fn a_look_at_a_name_that_is_free_says_absent() {
    let inspect = Action::Inspect {
        desired: quota(),
        drift: None,
    };
    let (found, _) = run_one(
        inspect,
        vec![expect("GET", QUOTA, 404, status(404, "NotFound"))],
    )
    .await;
    assert!(matches!(found, Found::Absent), "{found:?}");
}

#[tokio::test]
async fn an_update_is_a_forced_server_side_apply_carrying_the_live_uid() {
    let apply = Action::Apply {
        desired: quota(),
        uid: "uid-q".into(),
        drift: Some(Box::new(Drift {
            changed_by: Some("kubectl-edit".into()),
            deleted: false,
        })),
    };
    let (found, seen) = run_one(apply, vec![expect("PATCH", QUOTA, 200, stored_quota())]).await;
    assert!(matches!(found, Found::Done), "{found:?}");
    assert_eq!(seen[0].content_type, "application/apply-patch+yaml");
    assert!(
        seen[0].query.contains("fieldManager=tenantry") && seen[0].query.contains("force=true")
    );
    assert_eq!(seen[0].body["metadata"]["uid"], "uid-q");
}

#[tokio::test]
async fn a_merge_patch_is_sent_as_given_and_its_refusal_returned() {
    let patch = json!({"metadata": {"resourceVersion": "42"}, "spec": {"hard": {"pods": "10", "cpu": null}}});
    let replace = Action::Replace {
        desired: quota(),
        patch: patch.clone(),
        drift: None,
    };
    let script = vec![expect("PATCH", QUOTA, 409, status(409, "Conflict"))];
    let (found, seen) = run_one(replace, script).await;
    assert_eq!(seen[0].content_type, "application/merge-patch+json");
    assert_eq!(seen[0].body, patch);
    assert!(matches!(found, Found::Error(kube::Error::Api(s)) if s.code == 409));
}

#[tokio::test]
async fn a_deletion_carries_uid_and_resource_version_and_a_gone_object_is_done() {
    let delete = Action::Delete {
        live: Box::new(live_quota()),
    };
    let (found, seen) = run_one(
        delete,
        vec![expect("DELETE", QUOTA, 404, status(404, "NotFound"))],
    )
    .await;
    assert!(matches!(found, Found::Done), "{found:?}");
    let preconditions = &seen[0].body["preconditions"];
    assert_eq!(preconditions["uid"], "uid-q");
    assert_eq!(preconditions["resourceVersion"], "42");
}

#[tokio::test]
async fn a_recreation_deletes_then_creates() {
    let recreate = Action::Recreate {
        desired: quota(),
        live: Box::new(live_quota()),
        changed: vec!["provisioner"],
    };
    let script = vec![
        expect("DELETE", QUOTA, 200, stored_quota()),
        expect("POST", QUOTAS, 201, stored_quota()),
    ];
    let (found, seen) = run_one(recreate, script).await;
    assert!(matches!(found, Found::Done), "{found:?}");
    assert_eq!(seen.len(), 2);
}

#[tokio::test]
async fn without_leadership_nothing_is_sent() {
    let (writer, mut handle) = writer_with(Leadership::lost());
    let actions = vec![
        Action::Create {
            desired: quota(),
            drift: None,
        },
        Action::Delete {
            live: Box::new(live_quota()),
        },
    ];
    let executed = writer.execute(&owner(), actions).await;
    assert!(executed.iter().all(|(_, f)| matches!(f, Found::Fenced)));
    writer
        .patch_status("team", &TenantPolicyStatus::default())
        .await
        .unwrap();
    // Nothing reached the server: the mock has no request waiting.
    drop(writer);
    assert!(handle.next_request().await.is_none());
}

#[tokio::test]
async fn a_dry_run_posts_with_dry_run_and_returns_the_servers_answer() {
    let (writer, handle) = writer_with(Leadership::always());
    let script = vec![expect("POST", QUOTAS, 422, status(422, "Invalid"))];
    let server = tokio::spawn(serve(handle, script));
    let answer = writer.dry_run(&owner(), &quota()).await;
    let seen = server.await.unwrap();
    assert!(seen[0].query.contains("dryRun=All"));
    assert!(matches!(answer, Err(kube::Error::Api(s)) if s.code == 422));
}
