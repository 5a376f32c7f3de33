//! The query router in-process, with an injected clock and an answer model that fails: quota
//! windows follow the clock, and a failure on our side gives the reservation back.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{DateTime, Utc};
use manuel_core::PortError;
use manuel_core::domain::{Answer, RetrievedChunk, UserId};
use manuel_core::ports::{AnswerModel, UsageStore};
use manuel_core::security::{Security, SecurityConfig, Stage};
use manuel_core::usage::{Clock, Pricing, QuotaLimits, QuotaWindows};
use manuel_local::identity::{AUDIENCE, ISSUER, LocalIdentity};
use manuel_local::index::LocalIndex;
use manuel_local::objects::{FileObjectStore, LinkSigner};
use manuel_local::store::SqliteStore;
use tower::ServiceExt;

type TestResult = Result<(), Box<dyn std::error::Error>>;

struct FixedClock(std::sync::Mutex<DateTime<Utc>>);

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0.lock().map(|now| *now).unwrap_or_default()
    }
}

/// Answers until told to fail, as a model outage would.
struct FlakyModel(AtomicBool);

#[async_trait]
impl AnswerModel for FlakyModel {
    async fn answer(&self, _: &UserId, _: &str, _: &[RetrievedChunk]) -> Result<Answer, PortError> {
        if self.0.load(Ordering::SeqCst) {
            return Err(PortError::Unavailable {
                service: "model",
                message: "injected outage".into(),
            });
        }
        Ok(Answer {
            text: "Nothing relevant.".into(),
            cited: vec![],
            found: false,
            ranking: Vec::new(),
            input_tokens: 10,
            output_tokens: 3,
        })
    }
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

#[tokio::test]
async fn windows_follow_the_clock_and_failures_are_refunded() -> TestResult {
    let dir = tempfile::tempdir()?;
    let identity = LocalIdentity::load_or_create(dir.path())?;
    let verifier = Arc::new(manuel_core::auth::JwtVerifier::new(
        &identity.jwk_set()?,
        ISSUER,
        AUDIENCE,
    ));
    let store = Arc::new(SqliteStore::open(&dir.path().join("db.sqlite3"))?);
    let security = Security {
        config: Arc::new(SecurityConfig::defaults(Stage::Dev)),
        verifier,
        rate_limits: store.clone(),
        replay_guard: store.clone(),
        idempotency: store.clone(),
        idempotency_config: Default::default(),
    };
    let clock = Arc::new(FixedClock(std::sync::Mutex::new(at(
        "2026-01-31T23:59:00Z",
    ))));
    let model = Arc::new(FlakyModel(AtomicBool::new(false)));
    let embedder = Arc::new(manuel_local::embedding::Embedder::load(
        &common::embedding_model(),
        &common::onnxruntime(),
    )?);
    let (index, _) = LocalIndex::open(&dir.path().join("index"), embedder)?;
    let index = Arc::new(index);
    let limits = QuotaLimits {
        daily: 1,
        monthly: 2,
    };
    let app = manuel_query::router(manuel_query::QueryDeps {
        cache: Arc::new(manuel_core::cache::Cache::new(Default::default(), None)),
        usage: store.clone(),
        quota: limits,
        pricing: Pricing::free(),
        model_id: "test".into(),
        clock: clock.clone(),
        manuals: store.clone(),
        knowledge_base: index,
        answer_model: model.clone(),
        objects: Arc::new(FileObjectStore::new(
            dir.path().join("objects"),
            LinkSigner::new(vec![1], "http://x"),
        )),
        transcriber: None,
        audio_limits: Default::default(),
        security,
        config: manuel_query::QueryConfig::default(),
    });
    let app = manuel_core::http::serve_app(
        app,
        &Security {
            config: Arc::new(SecurityConfig::defaults(Stage::Dev)),
            verifier: Arc::new(manuel_core::auth::JwtVerifier::new(
                &identity.jwk_set()?,
                ISSUER,
                AUDIENCE,
            )),
            rate_limits: store.clone(),
            replay_guard: store.clone(),
            idempotency: store.clone(),
            idempotency_config: Default::default(),
        },
    );
    let token = identity.issue_token("zoe", 3600)?;
    let ask = |app: axum::Router| {
        let token = token.clone();
        async move {
            // A new question each time: a cached answer would cost nothing and prove nothing here.
            let question = format!(
                r#"{{"question": "How do I descale it? ({})"}}"#,
                uuid::Uuid::new_v4()
            );
            let request = Request::post("/api/query")
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .body(Body::from(question))?;
            Ok::<_, Box<dyn std::error::Error>>(app.oneshot(request).await?.status())
        }
    };
    let set_time = |text: &str| {
        if let Ok(mut now) = clock.0.lock() {
            *now = at(text);
        }
    };
    let zoe = UserId::parse("zoe").ok_or("user")?;

    assert_eq!(ask(app.clone()).await?, StatusCode::OK);
    assert_eq!(
        ask(app.clone()).await?,
        StatusCode::TOO_MANY_REQUESTS,
        "daily limit of 1"
    );
    set_time("2026-02-01T00:00:30Z");
    assert_eq!(
        ask(app.clone()).await?,
        StatusCode::OK,
        "a new UTC day and month"
    );

    // An outage on our side: 503, and the reservation is given back.
    set_time("2026-02-02T09:00:00Z");
    model.0.store(true, Ordering::SeqCst);
    assert_eq!(ask(app.clone()).await?, StatusCode::SERVICE_UNAVAILABLE);
    let windows = QuotaWindows::at(at("2026-02-02T09:00:00Z"));
    let state = store.usage(&zoe, &windows, limits).await?;
    assert_eq!(
        (state.numbers.daily_used, state.numbers.monthly_used),
        (0, 1)
    );
    model.0.store(false, Ordering::SeqCst);
    assert_eq!(ask(app.clone()).await?, StatusCode::OK);
    // February's second query fills the month: the next day still refuses.
    set_time("2026-02-03T09:00:00Z");
    assert_eq!(
        ask(app).await?,
        StatusCode::TOO_MANY_REQUESTS,
        "monthly limit of 2"
    );
    Ok(())
}
