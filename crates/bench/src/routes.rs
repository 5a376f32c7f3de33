//! Warm in-process cost per HTTP route: each function's router, wrapped as it is served (the
//! JSON fallbacks, security layers, request ids, telemetry), with the fakes of [`crate::fakes`]
//! behind it and a real RS256 bearer token verified on every `/api/*` request.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http_body_util::BodyExt;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use manuel_core::auth::JwtVerifier;
use manuel_core::cache::{Cache, CacheConfig};
use manuel_core::domain::{RetrievedChunk, UserId};
use manuel_core::http::serve_app;
use manuel_core::resilience::Resilience;
use manuel_core::security::{Security, SecurityConfig, SourceIp, Stage};
use manuel_core::usage::{Pricing, QuotaLimits, SystemClock};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde::Serialize;
use serde_json::json;
use tower::ServiceExt;

use crate::fakes;
use crate::stats::Summary;

const ISSUER: &str = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_BENCH";
const AUDIENCE: &str = "bench-app-client";
const USER: &str = "7d8f2a10-1c2b-4e5f-9a8b-0c1d2e3f4a5b";

#[derive(Serialize)]
pub struct RouteResult {
    pub function: &'static str,
    pub route: String,
    pub note: &'static str,
    pub status: u16,
    pub iterations: usize,
    #[serde(flatten)]
    pub summary: Summary,
}

/// A signing key, its JWKS and a token for [`USER`].
struct Identity {
    jwks: JwkSet,
    token: String,
}

fn identity() -> Result<Identity, Box<dyn std::error::Error>> {
    let private = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048)?;
    let der = private.to_pkcs1_der()?;
    let n = URL_SAFE_NO_PAD.encode(private.n().to_bytes_be());
    let e = URL_SAFE_NO_PAD.encode(private.e().to_bytes_be());
    let jwks: JwkSet = serde_json::from_value(json!({"keys": [
        {"kty": "RSA", "alg": "RS256", "use": "sig", "kid": "bench", "n": n, "e": e}
    ]}))?;
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("bench".into());
    let now = chrono::Utc::now().timestamp();
    let claims = json!({"sub": USER, "iss": ISSUER, "aud": AUDIENCE, "token_use": "id",
        "iat": now, "exp": now + 3600});
    let token = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_rsa_der(der.as_bytes()))?;
    Ok(Identity { jwks, token })
}

/// What the speech fake hears in every clip.
const SPOKEN_QUESTION: &str = "How do I replace the ink cartridge?";

struct Apps {
    records: Arc<fakes::Manuals>,
    manuals: Router,
    query: Router,
    usage: Router,
    transcribe: Router,
}

fn apps(identity: &Identity) -> Result<Apps, Box<dyn std::error::Error>> {
    let user = UserId::parse(USER).ok_or("user id")?;
    let tables = Arc::new(fakes::Tables);
    let unlimited = Arc::new(manuel_core::testing::Unlimited);
    let security = Security {
        config: Arc::new(SecurityConfig::defaults(Stage::Production)),
        verifier: Arc::new(JwtVerifier::new(&identity.jwks, ISSUER, AUDIENCE)),
        rate_limits: unlimited.clone(),
        replay_guard: unlimited.clone(),
        idempotency: unlimited,
        idempotency_config: Default::default(),
    };
    let manual_list = fakes::manuals(&user, 20);
    let passages: Vec<RetrievedChunk> = (0..8)
        .map(|n| RetrievedChunk {
            manual_id: manual_list[n % manual_list.len()].id.clone(),
            page: u32::try_from(n).unwrap_or(0) + 1,
            text: "To replace the ink cartridge, open the front cover, wait until the carriage \
                   stops, press the cartridge down and pull it out. Insert the new cartridge \
                   until it clicks."
                .into(),
            score: 0.9 - 0.05 * n as f32,
            similarity: None,
        })
        .collect();
    let manuals = Arc::new(fakes::Manuals::new(HashMap::from([(
        user.clone(),
        manual_list,
    )])));
    let objects = Arc::new(fakes::Objects);
    let knowledge = Arc::new(manuel_core::testing::Passages::new(passages));
    let cache = Arc::new(Cache::new(CacheConfig::default(), None));
    let quota = QuotaLimits {
        daily: 1_000_000,
        monthly: 1_000_000,
    };
    let resilience = Arc::new(Resilience::from_vars(&HashMap::new())?);

    let manuals_router = manuel_manuals::router(manuel_manuals::ManualsDeps {
        objects: objects.clone(),
        manuals: manuals.clone(),
        knowledge_base: knowledge.clone(),
        ingestion: Arc::new(fakes::Ingestion),
        fetcher: manuel_manuals::fetcher_from_vars(&HashMap::new())?,
        renderer: None,
        security: security.clone(),
        config: manuel_manuals::ManualsConfig::default(),
    });
    let query_router = manuel_query::router(manuel_query::QueryDeps {
        cache: cache.clone(),
        usage: tables.clone(),
        quota,
        pricing: Pricing::free(),
        model_id: "bench-model".into(),
        clock: Arc::new(SystemClock),
        manuals: manuals.clone(),
        knowledge_base: knowledge.clone(),
        answer_model: Arc::new(manuel_core::testing::FirstPassageModel::default()),
        objects: objects.clone(),
        transcriber: Some(Arc::new(manuel_core::testing::FixedSpeech(
            SPOKEN_QUESTION.into(),
        ))),
        audio_limits: Default::default(),
        security: security.clone(),
        config: manuel_query::QueryConfig::default(),
    });
    let usage_router = manuel_usage::router(manuel_usage::UsageDeps {
        version: env!("CARGO_PKG_VERSION"),
        cache,
        usage: tables.clone(),
        quota,
        currency: "EUR".into(),
        clock: Arc::new(SystemClock),
        manuals: manuals.clone(),
        objects,
        knowledge_base: knowledge,
        resilience,
        security: security.clone(),
    });
    let transcribe_router = manuel_transcribe::router(manuel_transcribe::TranscribeDeps {
        usage: tables,
        quota,
        pricing: Pricing::free(),
        clock: Arc::new(SystemClock),
        transcriber: Some(Arc::new(manuel_core::testing::FixedSpeech(
            SPOKEN_QUESTION.into(),
        ))),
        limits: Default::default(),
        security: security.clone(),
    });
    Ok(Apps {
        records: manuals,
        manuals: serve_app(manuals_router, &security),
        query: serve_app(query_router, &security),
        usage: serve_app(usage_router, &security),
        transcribe: serve_app(transcribe_router, &security),
    })
}

/// A 16 kHz mono 16-bit WAV of `seconds` of a quiet 440 Hz tone.
fn wav(seconds: f32) -> Vec<u8> {
    let rate = 16_000u32;
    let samples = (rate as f32 * seconds) as u32;
    let data_len = samples * 2;
    let mut out = Vec::with_capacity(44 + data_len as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for n in 0..samples {
        let t = n as f32 / rate as f32;
        let sample = (f32::sin(t * 440.0 * std::f32::consts::TAU) * 3000.0) as i16;
        out.extend_from_slice(&sample.to_le_bytes());
    }
    out
}

/// One benchmarked route: which app, what request (built per iteration from its number).
struct Case {
    function: &'static str,
    route: &'static str,
    note: &'static str,
    app: Router,
    method: Method,
    path: String,
    body: Box<dyn Fn(usize) -> Option<String>>,
    authenticated: bool,
}

fn cases(apps: &Apps) -> Vec<Case> {
    let manual_id = "00000000-0000-4000-8000-000000000003".to_owned();
    let json = |value: serde_json::Value| -> Box<dyn Fn(usize) -> Option<String>> {
        let text = value.to_string();
        Box::new(move |_| Some(text.clone()))
    };
    let none = || -> Box<dyn Fn(usize) -> Option<String>> { Box::new(|_| None) };
    let markdown = STANDARD.encode(
        "# Kettle\n\nFill the kettle to the MAX mark and press the switch.\n\n## Descaling\n\n\
         Boil a mix of water and vinegar, leave it for an hour, rinse twice.\n"
            .repeat(20),
    );
    let audio = STANDARD.encode(wav(2.0));
    vec![
        Case {
            function: "usage",
            route: "GET /health",
            note: "no authentication",
            app: apps.usage.clone(),
            method: Method::GET,
            path: "/health".into(),
            body: none(),
            authenticated: false,
        },
        Case {
            function: "usage",
            route: "GET /api/user/quota",
            note: "",
            app: apps.usage.clone(),
            method: Method::GET,
            path: "/api/user/quota".into(),
            body: none(),
            authenticated: true,
        },
        Case {
            function: "usage",
            route: "GET /api/user/usage",
            note: "20 cost records",
            app: apps.usage.clone(),
            method: Method::GET,
            path: "/api/user/usage".into(),
            body: none(),
            authenticated: true,
        },
        Case {
            function: "usage",
            route: "DELETE /api/user/data",
            note: "20 manuals erased",
            app: apps.usage.clone(),
            method: Method::DELETE,
            path: "/api/user/data".into(),
            body: none(),
            authenticated: true,
        },
        Case {
            function: "manuals",
            route: "GET /api/manuals",
            note: "20 manuals",
            app: apps.manuals.clone(),
            method: Method::GET,
            path: "/api/manuals".into(),
            body: none(),
            authenticated: true,
        },
        Case {
            function: "manuals",
            route: "GET /api/manuals/{id}",
            note: "with a download link",
            app: apps.manuals.clone(),
            method: Method::GET,
            path: format!("/api/manuals/{manual_id}"),
            body: none(),
            authenticated: true,
        },
        Case {
            function: "manuals",
            route: "POST /api/manuals/upload",
            note: "6 KB Markdown, base64",
            app: apps.manuals.clone(),
            method: Method::POST,
            path: "/api/manuals/upload".into(),
            body: json(json!({"file_name": "kettle.md", "file_data": markdown})),
            authenticated: true,
        },
        Case {
            function: "manuals",
            route: "POST /api/manuals/upload-url",
            note: "",
            app: apps.manuals.clone(),
            method: Method::POST,
            path: "/api/manuals/upload-url".into(),
            body: json(
                json!({"file_name": "big.pdf", "content_type": "application/pdf",
                "size_bytes": 30_000_000}),
            ),
            authenticated: true,
        },
        Case {
            function: "manuals",
            route: "DELETE /api/manuals/{id}",
            note: "",
            app: apps.manuals.clone(),
            method: Method::DELETE,
            path: format!("/api/manuals/{manual_id}"),
            body: none(),
            authenticated: true,
        },
        Case {
            function: "query",
            route: "POST /api/query (cache miss)",
            note: "a new question each time; 8 passages",
            app: apps.query.clone(),
            method: Method::POST,
            path: "/api/query".into(),
            body: Box::new(|n| {
                Some(
                    json!({"question": format!("How do I replace the ink cartridge? (#{n})")})
                        .to_string(),
                )
            }),
            authenticated: true,
        },
        Case {
            function: "query",
            route: "POST /api/query (cache hit)",
            note: "the same question each time",
            app: apps.query.clone(),
            method: Method::POST,
            path: "/api/query".into(),
            body: json(json!({"question": "How do I replace the ink cartridge?"})),
            authenticated: true,
        },
        Case {
            function: "transcribe",
            route: "POST /api/transcribe",
            note: "2 s WAV, base64; checked, then a fake recogniser",
            app: apps.transcribe.clone(),
            method: Method::POST,
            path: "/api/transcribe".into(),
            body: json(json!({"audio_data": audio, "content_type": "audio/wav"})),
            authenticated: true,
        },
    ]
}

fn request(case: &Case, n: usize, token: &str) -> Result<Request<Body>, axum::http::Error> {
    let mut builder = Request::builder()
        .method(case.method.clone())
        .uri(&case.path);
    if case.authenticated {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    let body = match (case.body)(n) {
        Some(text) => {
            builder = builder.header("content-type", "application/json");
            Body::from(text)
        }
        None => Body::empty(),
    };
    let mut request = builder.body(body)?;
    request.extensions_mut().insert(SourceIp(
        "203.0.113.7".parse().unwrap_or([127, 0, 0, 1].into()),
    ));
    Ok(request)
}

/// Runs every case `warmup` times untimed, then `iterations` times timed (request built
/// beforehand; timed: the router's answer and reading its whole body).
pub async fn run(
    iterations: usize,
    warmup: usize,
) -> Result<Vec<RouteResult>, Box<dyn std::error::Error>> {
    let identity = identity()?;
    let apps = apps(&identity)?;
    let mut results = Vec::new();
    for case in cases(&apps) {
        let mut status = 0;
        let mut timings = Vec::with_capacity(iterations);
        for n in 0..warmup + iterations {
            apps.records.refill();
            let request = request(&case, n, &identity.token)?;
            let started = Instant::now();
            let response = case.app.clone().oneshot(request).await?;
            let code = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            let elapsed = started.elapsed();
            if n == 0 {
                status = code.as_u16();
                if !code.is_success() {
                    return Err(format!(
                        "{} answered {code}: {}",
                        case.route,
                        String::from_utf8_lossy(&body)
                    )
                    .into());
                }
            }
            if n >= warmup {
                timings.push(elapsed);
            }
        }
        let summary = Summary::of(&mut timings);
        eprintln!(
            "routes: {:<34} p50 {:>8.1} µs  p99 {:>8.1} µs",
            case.route, summary.p50_us, summary.p99_us
        );
        results.push(RouteResult {
            function: case.function,
            route: case.route.to_owned(),
            note: case.note,
            status,
            iterations,
            summary,
        });
    }
    Ok(results)
}

/// How long one RS256 verification of the bench token takes (part of every `/api/*` route).
pub fn token_verification(iterations: usize) -> Result<Summary, Box<dyn std::error::Error>> {
    let identity = identity()?;
    let verifier = JwtVerifier::new(&identity.jwks, ISSUER, AUDIENCE);
    let mut timings: Vec<Duration> = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let started = Instant::now();
        verifier
            .verify_cached(&identity.token)
            .map_err(|error| format!("{error:?}"))?;
        timings.push(started.elapsed());
    }
    Ok(Summary::of(&mut timings))
}
