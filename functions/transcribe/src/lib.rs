//! The transcribe function: `POST /api/transcribe` turns a spoken clip into text. The clip is
//! checked by its bytes and the quota reserved before any paid work; a failure on our side
//! gives the reservation back.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use axum::{Extension, Json, Router};
use manuel_core::ApiError;
use manuel_core::audio::AudioLimits;
use manuel_core::auth::AuthenticatedUser;
use manuel_core::deadline::Deadline;
use manuel_core::json::JsonBody;
use manuel_core::ports::{Transcriber, UsageStore};
use manuel_core::request_id::RequestId;
use manuel_core::security::Security;
use manuel_core::spoken;
use manuel_core::usage::{Clock, Metered, Operation, Pricing, QuotaLimits, UsageNumbers};
use serde::{Deserialize, Serialize};

#[derive(Clone)]
pub struct TranscribeDeps {
    pub usage: Arc<dyn UsageStore>,
    pub quota: QuotaLimits,
    pub pricing: Pricing,
    pub clock: Arc<dyn Clock>,
    /// `None` where this server has no speech recognition: requests get a 503 that says so.
    pub transcriber: Option<Arc<dyn Transcriber>>,
    pub limits: AudioLimits,
    pub security: Security,
}

/// The longest spoken question the query function accepts. Streaming transcription runs at
/// real time, so a question takes its own length to hear plus about a second for the final
/// transcript; retrieval (0.6 s) and a long answer (12 s) must still fit before API Gateway's
/// 29 s, less the 2 s kept for answering. 12 s of speech is about 30 words, longer than a
/// question about a manual needs. Measured, not assumed: crates/lambda-harness/tests/latency.rs
/// asks a question of this length through the query binary, with every dependency at its
/// realistic latency, and checks it is answered inside the 29 s.
pub const MAX_SPOKEN_QUESTION: Duration = Duration::from_secs(12);

/// The longest clip `POST /api/transcribe` accepts: transcription at real time, its final
/// result and the response inside API Gateway's 29 s.
pub const MAX_TRANSCRIBED_CLIP: Duration = Duration::from_secs(25);

/// `limits` with the longest accepted clip held to `ceiling` (a configured
/// `MAX_AUDIO_DURATION_SECONDS` above it would accept clips whose answer cannot arrive).
pub fn capped(limits: AudioLimits, ceiling: Duration) -> AudioLimits {
    if limits.max_duration > ceiling {
        tracing::warn!(
            configured_seconds = limits.max_duration.as_secs(),
            ceiling_seconds = ceiling.as_secs(),
            "MAX_AUDIO_DURATION_SECONDS is above what fits the request deadline; the ceiling applies"
        );
    }
    AudioLimits {
        max_duration: limits.max_duration.min(ceiling),
        ..limits
    }
}

/// The largest request body: the audio limit in base64 plus room for the JSON around it.
pub fn request_body_limit(limits: &AudioLimits) -> usize {
    limits.max_bytes.div_ceil(3) * 4 + 16 * 1024
}

pub fn router(deps: TranscribeDeps) -> Router {
    let routes = Router::new().route("/api/transcribe", post(transcribe));
    let body_limit = request_body_limit(&deps.limits);
    deps.security
        .protect_with_body_limit(routes, body_limit)
        .with_state(deps)
}

#[derive(Deserialize)]
struct TranscribeRequest {
    #[serde(default)]
    audio_data: Option<String>,
    #[serde(default)]
    content_type: Option<String>,
    /// Sent by older clients; the format comes from the bytes.
    #[serde(default)]
    #[allow(dead_code)]
    filename: Option<String>,
}

async fn transcribe(
    State(deps): State<TranscribeDeps>,
    AuthenticatedUser(user): AuthenticatedUser,
    Extension(request_id): Extension<RequestId>,
    deadline: Option<Extension<Deadline>>,
    JsonBody(request): JsonBody<TranscribeRequest>,
) -> Result<Json<TranscribeResponse>, ApiError> {
    let clip = spoken::decode(
        "audio_data",
        request.audio_data.as_deref(),
        request.content_type.as_deref(),
        &deps.limits,
    )?;
    let listener = spoken::Listener {
        transcriber: deps.transcriber.as_ref(),
        usage: &deps.usage,
        quota: deps.quota,
        clock: deps.clock.as_ref(),
    };
    let heard = spoken::transcribe(listener, &user, clip, deadline.map(|Extension(d)| d)).await?;
    let used = Metered {
        audio_seconds: heard.audio_seconds,
        ..Metered::default()
    };
    let cost = deps.pricing.cost(
        &request_id.0,
        heard.charge.at(),
        Operation::Transcribe,
        "transcribe",
        used,
    );
    let usage = heard.charge.commit(&cost).await;
    Ok(Json(TranscribeResponse {
        transcription: heard.text,
        usage,
        cost: TranscriptionCost {
            total_cost_eur: cost.total_cost,
            currency: deps.pricing.currency.clone(),
            audio_seconds: hundredths(cost.audio_seconds),
            operation: cost.operation.as_str(),
        },
        duration_seconds: heard
            .clip
            .duration
            .map(|duration| hundredths(duration.as_secs_f64())),
        format: heard.clip.format.as_str(),
        request_id: request_id.0,
    }))
}

#[derive(Serialize)]
struct TranscribeResponse {
    transcription: String,
    usage: UsageNumbers,
    cost: TranscriptionCost,
    duration_seconds: Option<f64>,
    format: &'static str,
    request_id: String,
}

#[derive(Serialize)]
struct TranscriptionCost {
    total_cost_eur: f64,
    currency: String,
    audio_seconds: f64,
    operation: &'static str,
}

fn hundredths(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}
