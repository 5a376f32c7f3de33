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
use manuel_core::ports::{AnswerModel, ManualRepository};
use manuel_core::testing::{
    FirstPassageModel, FixedSpeech, MemoryManuals, MemoryObjects, MemoryUsage, PacedModel,
    Passages, as_user, security,
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
    let model = Arc::new(FirstPassageModel::default());
    fixture_with(daily_limit, model.clone(), model)
}

/// [`fixture`] with `answer_model` answering (`model` is only kept for the test).
fn fixture_with(
    daily_limit: u64,
    answer_model: Arc<dyn AnswerModel>,
    model: Arc<FirstPassageModel>,
) -> Fixture {
    let usage = Arc::new(MemoryUsage::default());
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
        answer_model,
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

// --- POST /api/query/stream ---

/// One Server-Sent Event: its name and its JSON data.
type SseEvent = (String, Value);

fn sse_events(text: &str) -> Vec<SseEvent> {
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty() && !block.starts_with(':'))
        .map(|block| {
            let mut name = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("event: ") {
                    name = value.to_owned();
                } else if let Some(value) = line.strip_prefix("data: ") {
                    data.push_str(value);
                }
            }
            (name, serde_json::from_str(&data).unwrap_or(Value::Null))
        })
        .collect()
}

fn stream_request(who: &str, body: &Value) -> Request<Body> {
    let request = Request::post("/api/query/stream")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    as_user(request, who)
}

/// The status, the content type and, for a stream, its events (else the JSON body as one
/// event named `json`).
async fn ask_streaming(app: &Router, who: &str, body: Value) -> (u16, String, Vec<SseEvent>) {
    let response = app
        .clone()
        .oneshot(stream_request(who, &body))
        .await
        .unwrap();
    let status = response.status().as_u16();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let events = if content_type.starts_with("text/event-stream") {
        sse_events(&text)
    } else {
        vec![("json".to_owned(), serde_json::from_str(&text).unwrap())]
    };
    (status, content_type, events)
}

fn names(events: &[SseEvent]) -> Vec<&str> {
    events.iter().map(|(name, _)| name.as_str()).collect()
}

fn streamed_text(events: &[SseEvent]) -> String {
    events
        .iter()
        .filter(|(name, _)| name == "delta")
        .map(|(_, data)| data["text"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn a_streamed_answer_sends_sources_then_words_then_the_whole_answer_once_charged() {
    let paced = Arc::new(PacedModel::new(std::time::Duration::from_millis(1)));
    let fixture = fixture_with(10, paced.clone(), Arc::default());
    let question = json!({"question": "How do I descale it?"});
    let (status, content_type, events) = ask_streaming(&fixture.app, ALICE, question.clone()).await;
    assert_eq!((status, content_type.as_str()), (200, "text/event-stream"));
    let order = names(&events);
    assert_eq!(order.first(), Some(&"sources"), "{events:?}");
    assert_eq!(order.last(), Some(&"done"), "{events:?}");
    assert!(
        order[1..order.len() - 1]
            .iter()
            .all(|name| *name == "delta")
    );
    assert!(order.len() > 4, "the answer came in one piece: {events:?}");
    let sources = &events[0].1["sources"];
    assert_eq!(sources[0]["number"], 1);
    assert_eq!(sources[0]["page_number"], 3);
    assert!(sources[0]["pdf_url"].as_str().unwrap().ends_with("#page=3"));
    assert_eq!(
        streamed_text(&events),
        "Fill the kettle with descaler and boil it twice. [1]"
    );
    let done = &events.last().unwrap().1;
    assert_eq!(
        done["answer"],
        "Fill the kettle with descaler and boil it twice. [1]"
    );
    assert_eq!(
        (done["context_found"].clone(), done["cache_status"].clone()),
        (json!(true), json!("miss"))
    );
    assert_eq!(done["sources"][0]["cited"], true);
    assert_eq!(done["usage"]["daily_used"], 1);
    assert_eq!(done["cost_info"]["output_tokens"], 10);
    assert_eq!(fixture.usage.costs(&user(ALICE)).len(), 1);

    // Asked again, from the cache: at once, in one delta, free; and /api/query hits it too.
    let (_, _, again) = ask_streaming(&fixture.app, ALICE, question.clone()).await;
    assert_eq!(names(&again), ["sources", "delta", "done"]);
    assert_eq!(again[2].1["cache_status"], "hit");
    assert_eq!(again[0].1["sources"][0]["number"], 1);
    let (_, plain) = ask(&fixture.app, ALICE, question).await;
    assert_eq!(plain["cache_status"], "hit", "{plain}");
    assert_eq!(plain["answer"], done["answer"]);
    assert_eq!(fixture.usage.daily_used(&user(ALICE), &today()), 1);
    assert_eq!(paced.produced(), 10, "the model ran once");
}

#[tokio::test]
async fn a_spoken_question_streams_its_transcript_first_and_is_charged_as_one_transcription() {
    let fixture = fixture(10);
    let clip = manuel_core::audio::silent_wav(16_000, 2.0);
    let body = json!({
        "question": "",
        "file_data": base64::engine::general_purpose::STANDARD.encode(&clip),
        "content_type": "audio/wav",
    });
    let (status, _, events) = ask_streaming(&fixture.app, ALICE, body).await;
    assert_eq!(status, 200);
    assert_eq!(names(&events)[..2], ["question", "sources"]);
    assert_eq!(events[0].1["question"], SPOKEN);
    let done = &events.last().unwrap().1;
    assert_eq!(done["question"], SPOKEN);
    assert_eq!(done["cost_info"]["operation"], "transcribe");
    assert_eq!(fixture.usage.costs(&user(ALICE)).len(), 1);
    assert_eq!(fixture.usage.daily_used(&user(ALICE), &today()), 1);
}

#[tokio::test]
async fn refusals_before_the_stream_are_json_errors_with_their_status() {
    let fixture = fixture(0);
    let (status, content_type, events) =
        ask_streaming(&fixture.app, ALICE, json!({"question": "Descale?"})).await;
    assert_eq!((status, content_type.as_str()), (429, "application/json"));
    assert_eq!(events[0].1["code"], "quota_exceeded");
    let (status, _, events) = ask_streaming(&fixture.app, ALICE, json!({"question": " "})).await;
    assert_eq!(status, 400, "{events:?}");
    let request = Request::post("/api/query/stream")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"question":"Descale?"}"#))
        .unwrap();
    let response = fixture.app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status().as_u16(), 401);
}

#[tokio::test]
async fn a_model_failing_before_any_word_is_an_error_event_and_the_question_is_given_back() {
    let fixture = fixture(10);
    fixture.model.fail(true);
    let (status, _, events) =
        ask_streaming(&fixture.app, ALICE, json!({"question": "Descale?"})).await;
    assert_eq!(status, 200);
    assert_eq!(names(&events), ["sources", "error"]);
    assert_eq!(events[1].1["code"], "service_unavailable");
    assert!(
        events[1].1["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    assert_eq!(fixture.usage.daily_used(&user(ALICE), &today()), 0);
    assert!(fixture.usage.costs(&user(ALICE)).is_empty());
}

#[tokio::test]
async fn a_model_failing_mid_answer_ends_the_stream_with_an_error_and_nothing_is_cached() {
    let paced = Arc::new(PacedModel::failing_after(
        3,
        std::time::Duration::from_millis(1),
    ));
    let fixture = fixture_with(10, paced, Arc::default());
    let question = json!({"question": "Descale?"});
    let (_, _, events) = ask_streaming(&fixture.app, ALICE, question.clone()).await;
    assert_eq!(
        names(&events),
        ["sources", "delta", "delta", "delta", "error"]
    );
    assert_eq!(events[4].1["code"], "service_unavailable");
    // Words reached the client: the question counts, with no cost record (no token count came).
    assert_eq!(fixture.usage.daily_used(&user(ALICE), &today()), 1);
    assert!(fixture.usage.costs(&user(ALICE)).is_empty());
    let (_, _, again) = ask_streaming(&fixture.app, ALICE, question).await;
    assert_ne!(
        names(&again),
        ["sources", "delta", "done"],
        "a failed answer was cached"
    );
}

#[tokio::test]
async fn a_client_that_leaves_stops_the_model() {
    let paced = Arc::new(PacedModel::new(std::time::Duration::from_millis(30)));
    let fixture = fixture_with(10, paced.clone(), Arc::default());
    let response = fixture
        .app
        .clone()
        .oneshot(stream_request(ALICE, &json!({"question": "Descale?"})))
        .await
        .unwrap();
    let mut body = response.into_body();
    let mut seen = String::new();
    while !seen.contains("event: delta") {
        let frame = body.frame().await.unwrap().unwrap();
        seen.push_str(std::str::from_utf8(&frame.into_data().unwrap()).unwrap());
    }
    drop(body);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        paced.produced() <= 3,
        "the model went on: {} words",
        paced.produced()
    );
    assert_eq!(fixture.usage.daily_used(&user(ALICE), &today()), 1);
}

#[tokio::test]
async fn a_streamed_answer_is_never_served_to_another_user() {
    let fixture = fixture(10);
    let question = json!({"question": "How do I descale it?"});
    let (_, _, alice) = ask_streaming(&fixture.app, ALICE, question.clone()).await;
    assert_eq!(alice.last().unwrap().1["context_found"], true);
    let (_, _, bob) = ask_streaming(&fixture.app, BOB, question).await;
    let done = &bob.last().unwrap().1;
    assert_eq!(
        (done["context_found"].clone(), done["cache_status"].clone()),
        (json!(false), json!("miss"))
    );
    assert_eq!(bob[0].1["sources"], json!([]));
    assert!(!streamed_text(&bob).contains("descaler"), "{bob:?}");
}
