//! The usage router over in-memory ports (`manuel_core::testing`): the quota as the counters
//! stand, and erasing a user's data, which removes their manuals, files and cost records but
//! keeps the current quota counters (erasing must not reset the quota).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use chrono::Utc;
use http_body_util::BodyExt;
use manuel_core::cache::{Cache, CacheConfig};
use manuel_core::domain::{DocumentKind, Manual, ManualStatus, UserId};
use manuel_core::ports::{ManualRepository, ObjectStore, UsageStore};
use manuel_core::resilience::Resilience;
use manuel_core::testing::{
    MemoryManuals, MemoryObjects, MemoryUsage, Passages, as_user, security,
};
use manuel_core::usage::{
    CostRecord, Metered, Operation, Pricing, QuotaLimits, QuotaWindows, SystemClock,
};
use manuel_usage::{UsageDeps, router};
use serde_json::Value;
use tower::ServiceExt;

const QUOTA: QuotaLimits = QuotaLimits {
    daily: 5,
    monthly: 50,
};

struct Fixture {
    app: Router,
    usage: Arc<MemoryUsage>,
    manuals: Arc<MemoryManuals>,
    objects: Arc<MemoryObjects>,
}

fn fixture() -> Fixture {
    let usage = Arc::new(MemoryUsage::default());
    let manuals = Arc::new(MemoryManuals::default());
    let objects = Arc::new(MemoryObjects::default());
    let security = security();
    let deps = UsageDeps {
        version: "test",
        cache: Arc::new(Cache::new(CacheConfig::default(), None)),
        usage: usage.clone(),
        quota: QUOTA,
        currency: "EUR".into(),
        clock: Arc::new(SystemClock),
        manuals: manuals.clone(),
        objects: objects.clone(),
        knowledge_base: Arc::new(Passages::new(Vec::new())),
        resilience: Arc::new(Resilience::from_vars(&HashMap::new()).unwrap()),
        security: security.clone(),
    };
    Fixture {
        app: manuel_core::http::serve_app(router(deps), &security),
        usage,
        manuals,
        objects,
    }
}

async fn call(app: &Router, method: &str, path: &str) -> (u16, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .body(Body::empty())
        .unwrap();
    let response = app
        .clone()
        .oneshot(as_user(request, "alice"))
        .await
        .unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Two questions asked and paid for, and one manual with its file.
async fn alice_has_used_the_service(fixture: &Fixture) -> UserId {
    let alice = UserId::parse("alice").unwrap();
    let now = Utc::now();
    let windows = QuotaWindows::at(now);
    for n in 0..2 {
        fixture
            .usage
            .reserve(&alice, &windows, QUOTA, Operation::Query)
            .await
            .unwrap();
        let used = Metered {
            input_tokens: 100,
            output_tokens: 10,
            ..Metered::default()
        };
        let cost: CostRecord =
            Pricing::free().cost(&format!("r-{n}"), now, Operation::Query, "m", used);
        fixture.usage.record_cost(&alice, &cost).await.unwrap();
    }
    let manual = Manual {
        id: "kettle".into(),
        user_id: alice.clone(),
        name: "kettle.txt".into(),
        key: "manuals/alice/kettle.txt".into(),
        kind: DocumentKind::Text,
        size_bytes: 5,
        sha256: "sha".into(),
        status: ManualStatus::Ready,
        status_reason: None,
        pages: Some(1),
        created_at: now,
        updated_at: now,
    };
    fixture.manuals.insert(&manual).await.unwrap();
    fixture
        .objects
        .put(&manual.key, "Boil.".into(), "text/plain")
        .await
        .unwrap();
    alice
}

#[tokio::test]
async fn the_quota_shows_the_questions_counted_today() {
    let fixture = fixture();
    alice_has_used_the_service(&fixture).await;
    let (status, body) = call(&fixture.app, "GET", "/api/user/quota").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["quotas"]["daily"]["used"], 2);
    assert_eq!(body["quotas"]["daily"]["remaining"], 3);
    assert_eq!(body["quotas"]["monthly"]["limit"], 50);
}

#[tokio::test]
async fn erasing_removes_manuals_files_and_costs_but_keeps_the_quota() {
    let fixture = fixture();
    let alice = alice_has_used_the_service(&fixture).await;
    let (status, body) = call(&fixture.app, "DELETE", "/api/user/data").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["deleted"]["manuals"], 1, "{body}");

    assert!(fixture.manuals.list_ready(&alice).await.unwrap().is_empty());
    assert_eq!(
        fixture
            .objects
            .get("manuals/alice/kettle.txt")
            .await
            .unwrap(),
        None
    );
    assert!(fixture.usage.costs(&alice).is_empty());
    let windows = QuotaWindows::at(Utc::now());
    assert_eq!(
        fixture.usage.daily_used(&alice, &windows),
        2,
        "erasing reset the quota"
    );
    let (_, quota) = call(&fixture.app, "GET", "/api/user/quota").await;
    assert_eq!(quota["quotas"]["daily"]["used"], 2, "{quota}");
}
