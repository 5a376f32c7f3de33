//! The query router over in-memory ports (`manuel_core::testing`), with no network: what a
//! question costs the asker in every outcome (answered, answered from the cache, refused, the
//! model failing, asked aloud), and that only the caller's own manuals answer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use base64::Engine;
use chrono::Utc;
use http_body_util::BodyExt;
use manuel_core::cache::{Cache, CacheConfig};
use manuel_core::domain::{DocumentKind, Manual, ManualStatus, RetrievedChunk, UserId};
use manuel_core::ports::ManualRepository;
use manuel_core::testing::{
    FirstPassageModel, FixedSpeech, MemoryManuals, MemoryObjects, MemoryUsage, Passages, as_user,
    security,
};
use manuel_core::usage::{Pricing, QuotaLimits, QuotaWindows, SystemClock};
use manuel_query::{QueryConfig, QueryDeps, router};
use serde_json::{Value, json};
use tower::ServiceExt;

const ALICE: &str = "alice";
const BOB: &str = "bob";
const SPOKEN: &str = "How do I descale the kettle?";

fn user(id: &str) -> UserId {
    UserId::parse(id).unwrap()
}

fn ready_manual(owner: &str, id: &str) -> Manual {
    let now = Utc::now();
    Manual {
        id: id.to_owned(),
        user_id: user(owner),
        name: format!("{id}.pdf"),
        key: format!("manuals/{owner}/{id}.pdf"),
        kind: DocumentKind::Pdf,
        size_bytes: 1000,
        sha256: format!("sha-{id}"),
        status: ManualStatus::Ready,
        status_reason: None,
        pages: Some(4),
        created_at: now,
        updated_at: now,
    }
}

struct Fixture {
    app: Router,
    usage: Arc<MemoryUsage>,
    model: Arc<FirstPassageModel>,
    manuals: Arc<MemoryManuals>,
}

/// Alice owns the kettle manual, whose page 3 retrieval finds for every question.
fn fixture(daily_limit: u64) -> Fixture {
    let usage = Arc::new(MemoryUsage::default());
    let model = Arc::new(FirstPassageModel::default());
    let manuals = Arc::new(MemoryManuals::with(vec![ready_manual(ALICE, "kettle")]));
    let passages = Passages::new(vec![RetrievedChunk {
        manual_id: "kettle".into(),
        page: 3,
        text: "Fill the kettle with descaler and boil it twice.".into(),
        score: 0.9,
        similarity: Some(0.7),
    }]);
    let security = security();
    let deps = QueryDeps {
        cache: Arc::new(Cache::new(CacheConfig::default(), None)),
        usage: usage.clone(),
        quota: QuotaLimits {
            daily: daily_limit,
            monthly: 100,
        },
        pricing: Pricing {
            currency: "USD".into(),
            input_per_1k_tokens: 3.0,
            output_per_1k_tokens: 15.0,
            transcribe_per_minute: 0.024,
        },
        model_id: "test-model".into(),
        clock: Arc::new(SystemClock),
        manuals: manuals.clone(),
        knowledge_base: Arc::new(passages),
        answer_model: model.clone(),
        objects: Arc::new(MemoryObjects::default()),
        transcriber: Some(Arc::new(FixedSpeech(SPOKEN.into()))),
        audio_limits: Default::default(),
        security: security.clone(),
        config: QueryConfig::default(),
    };
    Fixture {
        app: manuel_core::http::serve_app(router(deps), &security),
        usage,
        model,
        manuals,
    }
}

async fn ask(app: &Router, who: &str, body: Value) -> (u16, Value) {
    let request = Request::post("/api/query")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = app.clone().oneshot(as_user(request, who)).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn today() -> QuotaWindows {
    QuotaWindows::at(Utc::now())
}

#[tokio::test]
async fn an_answer_is_charged_once_and_the_same_question_again_comes_free_from_the_cache() {
    let fixture = fixture(10);
    let question = json!({"question": "How do I descale it?"});

    let (status, body) = ask(&fixture.app, ALICE, question.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["context_found"], true);
    assert_eq!(body["cache_status"], "miss");
    assert_eq!(body["sources"][0]["page_number"], 3);
    let link = body["sources"][0]["pdf_url"].as_str().unwrap();
    assert!(link.ends_with("#page=3"), "{body}");
    assert_eq!(body["usage"]["daily_used"], 1);
    assert_eq!(body["usage"]["daily_queries"], 1);
    assert_eq!(body["cost_info"]["input_tokens"], 321);
    assert_eq!(body["cost_info"]["currency"], "USD");
    let costs = fixture.usage.costs(&user(ALICE));
    assert_eq!(costs.len(), 1);
    assert_eq!(costs[0].operation.as_str(), "query");
    assert!((costs[0].total_cost - (0.321 * 3.0 + 0.012 * 15.0)).abs() < 1e-9);
    let cited = fixture
        .manuals
        .citations(&user(ALICE), "kettle")
        .await
        .unwrap();
    assert_eq!(cited.count, 1);

    let (status, again) = ask(&fixture.app, ALICE, question).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["cache_status"], "hit");
    assert_eq!(again["answer"], body["answer"]);
    assert_eq!(
        again["usage"]["daily_used"], 1,
        "a cached answer reserves nothing"
    );
    assert_eq!(again["cost_info"]["total_cost_eur"], 0.0);
    assert_eq!(fixture.usage.costs(&user(ALICE)).len(), 1);
}

#[tokio::test]
async fn a_failing_model_is_a_503_and_the_question_is_given_back() {
    let fixture = fixture(10);
    fixture.model.fail(true);
    let (status, body) = ask(&fixture.app, ALICE, json!({"question": "Descale?"})).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "service_unavailable");
    assert_eq!(fixture.usage.daily_used(&user(ALICE), &today()), 0);
    assert!(fixture.usage.costs(&user(ALICE)).is_empty());

    fixture.model.fail(false);
    let (status, body) = ask(&fixture.app, ALICE, json!({"question": "Descale?"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["usage"]["daily_used"], 1, "{body}");
}

#[tokio::test]
async fn past_the_daily_quota_a_question_is_a_429_that_says_when_to_come_back() {
    let fixture = fixture(2);
    for n in 0..2 {
        let question = json!({"question": format!("Question {n}?")});
        let (status, body) = ask(&fixture.app, ALICE, question).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = ask(&fixture.app, ALICE, json!({"question": "One more?"})).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["code"], "quota_exceeded");
    assert!(body["retry_after"].as_u64().unwrap() >= 1, "{body}");
    assert_eq!(fixture.usage.daily_used(&user(ALICE), &today()), 2);
    assert_eq!(fixture.usage.costs(&user(ALICE)).len(), 2);
}

#[tokio::test]
async fn a_spoken_question_is_charged_once_as_a_transcription_covering_its_answer() {
    let fixture = fixture(10);
    let clip = manuel_core::audio::silent_wav(16_000, 2.0);
    let body = json!({
        "question": "",
        "file_data": base64::engine::general_purpose::STANDARD.encode(&clip),
        "content_type": "audio/wav",
    });
    let (status, answer) = ask(&fixture.app, ALICE, body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["question"], SPOKEN);
    assert_eq!(answer["usage"]["daily_used"], 1);
    assert_eq!(answer["cost_info"]["operation"], "transcribe");
    let costs = fixture.usage.costs(&user(ALICE));
    assert_eq!(costs.len(), 1, "{costs:?}");
    assert!((costs[0].audio_seconds - 2.0).abs() < 0.01, "{costs:?}");
}

#[tokio::test]
async fn another_users_manual_never_answers() {
    let fixture = fixture(10);
    let question = json!({"question": "How do I descale it?"});
    let (status, body) = ask(&fixture.app, BOB, question).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["context_found"], false, "{body}");
    assert_eq!(body["sources"], json!([]));
    let answer = body["answer"].as_str().unwrap();
    assert!(!answer.contains("descaler"), "{body}");
}
