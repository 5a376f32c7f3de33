//! The manuals router over in-memory ports (`manuel_core::testing`): an upload is stored,
//! recorded and queued for ingestion once; only its owner lists, reads or deletes it; deleting
//! it removes its file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use base64::Engine;
use http_body_util::BodyExt;
use manuel_core::ports::ObjectStore;
use manuel_core::testing::{
    MemoryManuals, MemoryObjects, Passages, RecordingQueue, as_user, security,
};
use manuel_manuals::{ManualsConfig, ManualsDeps, fetcher_from_vars, router};
use serde_json::{Value, json};
use tower::ServiceExt;

struct Fixture {
    app: Router,
    objects: Arc<MemoryObjects>,
    queue: Arc<RecordingQueue>,
}

fn fixture() -> Fixture {
    let objects = Arc::new(MemoryObjects::default());
    let queue = Arc::new(RecordingQueue::default());
    let security = security();
    let deps = ManualsDeps {
        objects: objects.clone(),
        manuals: Arc::new(MemoryManuals::default()),
        knowledge_base: Arc::new(Passages::new(Vec::new())),
        ingestion: queue.clone(),
        fetcher: fetcher_from_vars(&HashMap::new()).unwrap(),
        renderer: None,
        security: security.clone(),
        config: ManualsConfig::default(),
    };
    Fixture {
        app: manuel_core::http::serve_app(router(deps), &security),
        objects,
        queue,
    }
}

async fn call(
    app: &Router,
    who: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, |body| Body::from(body.to_string())))
        .unwrap();
    let response = app.clone().oneshot(as_user(request, who)).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn an_upload_is_stored_queued_once_and_only_its_owner_sees_or_deletes_it() {
    let fixture = fixture();
    let text = "Descale the kettle every month.\n";
    let upload = json!({
        "fileName": "kettle.txt",
        "fileContent": base64::engine::general_purpose::STANDARD.encode(text),
        "contentType": "text/plain",
    });
    let (status, body) = call(
        &fixture.app,
        "alice",
        "POST",
        "/api/manuals/upload",
        Some(upload.clone()),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "processing");
    let id = body["manual_id"].as_str().unwrap().to_owned();
    let key = body["key"].as_str().unwrap().to_owned();
    assert_eq!(
        fixture.objects.get(&key).await.unwrap().as_deref(),
        Some(text.as_bytes())
    );
    assert_eq!(fixture.queue.queued(), [("alice".to_owned(), id.clone())]);

    // The same bytes again are the same manual, not queued twice.
    let (status, again) = call(
        &fixture.app,
        "alice",
        "POST",
        "/api/manuals/upload",
        Some(upload),
    )
    .await;
    assert!(status == 200 || status == 201, "{again}");
    assert_eq!(again["duplicate"], true, "{again}");
    assert_eq!(fixture.queue.queued().len(), 1);

    let (_, listed) = call(&fixture.app, "alice", "GET", "/api/manuals", None).await;
    assert_eq!(listed["count"], 1, "{listed}");
    let (_, bobs) = call(&fixture.app, "bob", "GET", "/api/manuals", None).await;
    assert_eq!(bobs["count"], 0, "{bobs}");
    for (method, path) in [
        ("GET", format!("/api/manuals/{id}")),
        ("DELETE", format!("/api/manuals/{id}")),
    ] {
        let (status, body) = call(&fixture.app, "bob", method, &path, None).await;
        assert_eq!(status, 404, "{method} by another user: {body}");
    }
    assert!(fixture.objects.get(&key).await.unwrap().is_some());

    let (status, body) = call(
        &fixture.app,
        "alice",
        "DELETE",
        &format!("/api/manuals/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        fixture.objects.get(&key).await.unwrap(),
        None,
        "the file outlived its manual"
    );
    let (_, listed) = call(&fixture.app, "alice", "GET", "/api/manuals", None).await;
    assert_eq!(listed["count"], 0, "{listed}");
}
