//! The transcribe router over in-memory ports (`manuel_core::testing`): a clip is heard and
//! charged once, by its decoded length; a clip refused for what it is, or a full quota, costs
//! nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use base64::Engine;
use http_body_util::BodyExt;
use manuel_core::domain::UserId;
use manuel_core::testing::{FixedSpeech, MemoryUsage, as_user, security};
use manuel_core::usage::{Pricing, QuotaLimits, SystemClock};
use manuel_transcribe::{TranscribeDeps, router};
use serde_json::{Value, json};
use tower::ServiceExt;

fn app(usage: Arc<MemoryUsage>, daily: u64) -> Router {
    let security = security();
    let deps = TranscribeDeps {
        usage,
        quota: QuotaLimits {
            daily,
            monthly: 100,
        },
        pricing: Pricing {
            transcribe_per_minute: 0.024,
            ..Pricing::free()
        },
        clock: Arc::new(SystemClock),
        transcriber: Some(Arc::new(FixedSpeech("Where is the reset button?".into()))),
        limits: Default::default(),
        security: security.clone(),
    };
    manuel_core::http::serve_app(router(deps), &security)
}

async fn transcribe(app: &Router, body: Value) -> (u16, Value) {
    let request = Request::post("/api/transcribe")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
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

fn wav(seconds: f64) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(manuel_core::audio::silent_wav(16_000, seconds))
}

#[tokio::test]
async fn a_clip_is_heard_and_charged_once_by_its_length() {
    let usage = Arc::new(MemoryUsage::default());
    let app = app(usage.clone(), 10);
    let (status, body) = transcribe(
        &app,
        json!({"audio_data": wav(3.0), "content_type": "audio/wav"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["transcription"], "Where is the reset button?");
    assert_eq!(body["format"], "wav");
    assert_eq!(body["duration_seconds"], 3.0);
    assert_eq!(body["usage"]["daily_used"], 1);
    assert_eq!(body["cost"]["operation"], "transcribe");
    let costs = usage.costs(&UserId::parse("alice").unwrap());
    assert_eq!(costs.len(), 1);
    assert!((costs[0].audio_seconds - 3.0).abs() < 1e-9);
    assert!((costs[0].total_cost - 0.0012).abs() < 1e-9, "{costs:?}");
}

#[tokio::test]
async fn a_refused_clip_or_a_full_quota_costs_nothing() {
    let usage = Arc::new(MemoryUsage::default());
    let app = app(usage.clone(), 1);
    let alice = UserId::parse("alice").unwrap();
    for bad in [
        json!({"audio_data": "not base64!", "content_type": "audio/wav"}),
        json!({"audio_data": base64::engine::general_purpose::STANDARD.encode(b"plain text"), "content_type": "audio/wav"}),
        json!({"content_type": "audio/wav"}),
    ] {
        let (status, body) = transcribe(&app, bad.clone()).await;
        assert_eq!(status, 400, "{bad} → {body}");
        assert_eq!(body["code"], "validation_failed");
    }
    assert!(usage.costs(&alice).is_empty());

    let clip = json!({"audio_data": wav(1.0), "content_type": "audio/wav"});
    assert_eq!(transcribe(&app, clip.clone()).await.0, 200);
    let (status, body) = transcribe(&app, clip).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(
        usage.costs(&alice).len(),
        1,
        "the refused clip was not billed"
    );
}
