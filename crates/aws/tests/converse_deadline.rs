//! How long a Converse call may take and which failures are tried again, against a stand-in
//! Bedrock runtime on loopback that answers after a set delay (the SDK client runs for real,
//! with the timeouts `manuel_aws::config` gives it).
//!
//! What the stand-in forgives: it bills nothing and does not check signatures; its answers are
//! fixed. What it does not forgive: it answers only after its delay, like a non-streaming
//! Converse that sends its first byte once the whole answer exists, and it counts every call
//! that reached it, so a retry or a second bill shows.
// Fixture builders fail loudly: a malformed fixture is a broken test, not a case to handle.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use manuel_aws::bedrock::{BedrockAnswerModel, ConverseSettings};
use manuel_aws::config::Timeouts;
use manuel_core::PortError;
use manuel_core::deadline::{self, Deadline};
use manuel_core::domain::{RetrievedChunk, UserId};
use manuel_core::ports::AnswerModel;
use manuel_core::resilience::guarded::Guarded;
use manuel_core::resilience::{Backoff, BreakerConfig, Dependency, RetryPolicy};
use serde_json::json;

/// One reply of the stand-in: after `delay`, an answer (`None`) or an AWS error.
#[derive(Clone, Debug)]
struct Reply {
    delay: Duration,
    error: Option<(u16, &'static str)>,
}

fn answer_after(delay: Duration) -> Reply {
    Reply { delay, error: None }
}

fn error(status: u16, code: &'static str) -> Reply {
    Reply {
        delay: Duration::from_millis(20),
        error: Some((status, code)),
    }
}

#[derive(Clone, Default)]
struct Stand {
    /// Replies in order; the last one answers every later call.
    replies: Arc<Mutex<VecDeque<Reply>>>,
    calls: Arc<Mutex<u32>>,
}

async fn converse(State(stand): State<Stand>) -> Response {
    *stand.calls.lock().unwrap() += 1;
    let reply = {
        let mut replies = stand.replies.lock().unwrap();
        if replies.len() > 1 {
            replies.pop_front().unwrap()
        } else {
            replies.front().cloned().unwrap()
        }
    };
    tokio::time::sleep(reply.delay).await;
    match reply.error {
        Some((status, code)) => (
            StatusCode::from_u16(status).unwrap(),
            [("x-amzn-ErrorType", code)],
            Json(json!({"message": format!("stand-in {code}")})),
        )
            .into_response(),
        None => Json(json!({
            "output": {"message": {"role": "assistant", "content": [{"text": "Hold reset for ten seconds [1]."}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 300, "outputTokens": 9, "totalTokens": 309},
            "metrics": {"latencyMs": reply.delay.as_millis() as u64}
        }))
        .into_response(),
    }
}

async fn start(replies: Vec<Reply>) -> (Stand, String) {
    let stand = Stand {
        replies: Arc::new(Mutex::new(replies.into())),
        calls: Arc::default(),
    };
    let app = axum::Router::new()
        .route("/model/{model}/converse", post(converse))
        .with_state(stand.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (stand, url)
}

/// The answer model as the query function builds it: the Converse client with the timeouts
/// `Timeouts::BoundByDeadline`, behind the Bedrock retry policy.
async fn model(url: &str, margin: Duration) -> Arc<dyn AnswerModel> {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(url)
        .region(aws_config::Region::new("eu-west-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .timeout_config(Timeouts::BoundByDeadline.config())
        .load()
        .await;
    let inner: Arc<dyn AnswerModel> = Arc::new(BedrockAnswerModel::new(
        aws_sdk_bedrockruntime::Client::new(&sdk),
        ConverseSettings {
            deadline_margin: margin,
            ..ConverseSettings::new("eu.anthropic.claude-sonnet-4-5-20250929-v1:0")
        },
    ));
    let retries = Dependency::new(
        "bedrock-converse",
        RetryPolicy::new(
            Backoff::Fixed,
            3,
            Duration::from_millis(50),
            Duration::from_millis(50),
        ),
        BreakerConfig::default(),
    );
    Guarded::new(inner, Arc::new(retries))
}

fn passages() -> Vec<RetrievedChunk> {
    vec![RetrievedChunk {
        manual_id: "m1".into(),
        page: 4,
        text: "Hold the reset button for ten seconds.".into(),
        score: 0.8,
        similarity: None,
    }]
}

fn within(seconds: f64) -> Option<Deadline> {
    Some(Deadline(
        SystemTime::now() + Duration::from_secs_f64(seconds),
    ))
}

async fn ask(model: &Arc<dyn AnswerModel>, deadline: Option<Deadline>) -> Result<(), PortError> {
    deadline::within(
        deadline,
        model.answer(
            &UserId::parse("alice").unwrap(),
            "How do I reset it?",
            &passages(),
        ),
    )
    .await
    .map(|answer| assert!(answer.found, "{answer:?}"))
}

#[tokio::test]
async fn an_answer_slower_than_any_read_timeout_arrives_when_the_deadline_allows() {
    // 6 s: longer than the 5 s read timeout every client used to get, well inside the deadline.
    let (stand, url) = start(vec![answer_after(Duration::from_secs(6))]).await;
    let model = model(&url, Duration::from_secs(2)).await;
    let started = Instant::now();
    ask(&model, within(20.0)).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(6));
    assert_eq!(*stand.calls.lock().unwrap(), 1);
}

#[tokio::test]
async fn an_answer_past_the_deadline_is_given_up_once_and_never_asked_for_again() {
    let (stand, url) = start(vec![answer_after(Duration::from_secs(8))]).await;
    let model = model(&url, Duration::from_secs(1)).await;
    let started = Instant::now();
    let error = ask(&model, within(3.0)).await.unwrap_err();
    let waited = started.elapsed();
    // Given up at the deadline less the margin (3 s - 1 s), not at the model's pace.
    assert!(
        waited >= Duration::from_millis(1_800) && waited < Duration::from_millis(2_800),
        "{waited:?}"
    );
    assert!(
        matches!(&error, PortError::Unavailable { service: "bedrock-converse", message } if message.contains("deadline")),
        "{error:?}"
    );
    // Not retried: the model may have processed (and billed) the first call.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(*stand.calls.lock().unwrap(), 1);

    // With less than a second left, the model is not called at all.
    let error = ask(&model, within(1.5)).await.unwrap_err();
    assert!(
        matches!(&error, PortError::Unavailable { message, .. } if message.contains("not called")),
        "{error:?}"
    );
    assert_eq!(*stand.calls.lock().unwrap(), 1);
}

#[tokio::test]
async fn refusals_before_processing_are_retried_and_failures_after_it_are_not() {
    // Throttling, a model not ready and a 503 say the request was turned away: retried, and
    // the third attempt answers.
    let (stand, url) = start(vec![
        error(429, "ThrottlingException"),
        error(503, "ServiceUnavailableException"),
        answer_after(Duration::from_millis(50)),
    ])
    .await;
    let throttled = model(&url, Duration::from_secs(1)).await;
    ask(&throttled, within(20.0)).await.unwrap();
    assert_eq!(*stand.calls.lock().unwrap(), 3);

    let (stand, url) = start(vec![
        error(429, "ModelNotReadyException"),
        answer_after(Duration::from_millis(50)),
    ])
    .await;
    let model_not_ready = model(&url, Duration::from_secs(1)).await;
    ask(&model_not_ready, within(20.0)).await.unwrap();
    assert_eq!(*stand.calls.lock().unwrap(), 2);

    // A model that failed while working (500, 424, 408) may have been billed: one call only.
    for (status, code) in [
        (500, "InternalServerException"),
        (424, "ModelErrorException"),
        (408, "ModelTimeoutException"),
    ] {
        let (stand, url) = start(vec![error(status, code)]).await;
        let failing = model(&url, Duration::from_secs(1)).await;
        let failure = ask(&failing, within(20.0)).await.unwrap_err();
        assert!(
            matches!(failure, PortError::Unavailable { .. }),
            "{code}: {failure:?}"
        );
        assert_eq!(*stand.calls.lock().unwrap(), 1, "{code} was retried");
    }
}
