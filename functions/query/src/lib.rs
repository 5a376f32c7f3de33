//! The query function: a question about the caller's manuals → a grounded, cited answer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, State};
use axum::routing::post;
use axum::{Json, Router};
use manuel_core::ApiError;
use manuel_core::audio::AudioLimits;
use manuel_core::auth::AuthenticatedUser;
use manuel_core::cache::{Cache, EntryKind};
use manuel_core::deadline::Deadline;
use manuel_core::domain::{Manual, RetrievedChunk};
use manuel_core::json::JsonBody;
use manuel_core::ports::{
    AnswerModel, KnowledgeBase, ManualRepository, ObjectStore, Transcriber, UsageStore,
};
use manuel_core::request_id::RequestId;
use manuel_core::security::Security;
use manuel_core::usage::{
    Clock, CostRecord, Operation, Pricing, QuotaLimits, QuotaWindows, Reservation, UsageNumbers,
};
use manuel_core::validation::{FieldKind, check_text, is_blank_question};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Mutex;

#[derive(Clone, Debug)]
pub struct QueryConfig {
    pub max_question_chars: usize,
    /// How many passages retrieval hands to the answer model.
    pub retrieval_limit: usize,
    /// How long the links to cited pages stay valid.
    pub source_link_ttl: Duration,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            max_question_chars: 1000,
            retrieval_limit: 8,
            source_link_ttl: Duration::from_secs(900),
        }
    }
}

#[derive(Clone)]
pub struct QueryDeps {
    pub cache: Arc<Cache>,
    pub usage: Arc<dyn UsageStore>,
    pub quota: QuotaLimits,
    pub pricing: Pricing,
    /// The answer model's id, recorded with each cost.
    pub model_id: String,
    pub clock: Arc<dyn Clock>,
    pub manuals: Arc<dyn ManualRepository>,
    pub knowledge_base: Arc<dyn KnowledgeBase>,
    pub answer_model: Arc<dyn AnswerModel>,
    pub objects: Arc<dyn ObjectStore>,
    /// Speech recognition for spoken questions; `None` answers them 503.
    pub transcriber: Option<Arc<dyn Transcriber>>,
    pub audio_limits: AudioLimits,
    pub security: Security,
    pub config: QueryConfig,
}

pub fn router(deps: QueryDeps) -> Router {
    let routes = Router::new().route("/api/query", post(query));
    let body_limit = manuel_transcribe::request_body_limit(&deps.audio_limits);
    deps.security
        .protect(routes)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(deps)
}

#[derive(Deserialize)]
struct QueryRequest {
    #[serde(default)]
    question: Option<String>,
    #[serde(default)]
    manual_ids: Option<Vec<String>>,
    #[serde(default)]
    file_data: Option<String>,
    #[serde(default)]
    content_type: Option<String>,
    /// Sent by older clients; sources are always included.
    #[serde(default)]
    #[allow(dead_code)]
    include_sources: Option<bool>,
}

const MAX_MANUAL_IDS: usize = 50;

async fn query(
    State(deps): State<QueryDeps>,
    AuthenticatedUser(user): AuthenticatedUser,
    axum::Extension(request_id): axum::Extension<RequestId>,
    deadline: Option<axum::Extension<Deadline>>,
    JsonBody(request): JsonBody<QueryRequest>,
) -> Result<Json<Value>, ApiError> {
    let started = Instant::now();
    if let Some(ids) = &request.manual_ids {
        for id in ids {
            check_text("manual_ids", FieldKind::Identifier, id)?;
        }
    }
    if let Some(ids) = &request.manual_ids
        && ids.len() > MAX_MANUAL_IDS
    {
        return Err(ApiError::validation(
            "manual_ids",
            format!("At most {MAX_MANUAL_IDS} manual ids."),
        ));
    }
    // A typed question wins when both are sent; a spoken one is paid for (one `transcribe`
    // operation) before it is transcribed, and that charge covers the answer too. Next to a
    // clip, a blank question is absent: the predecessor's app and CLI send `"question": ""`.
    let typed = request
        .question
        .as_deref()
        .filter(|question| request.file_data.is_none() || !is_blank_question(question));
    let (question, spoken) = match (typed, &request.file_data) {
        (None, Some(_)) => {
            let (audio, clip) = manuel_transcribe::spoken_audio(
                "file_data",
                request.file_data.as_deref(),
                request.content_type.as_deref(),
                &deps.audio_limits,
            )?;
            let transcriber = deps
                .transcriber
                .as_ref()
                .ok_or_else(manuel_transcribe::no_speech_recognition)?;
            let size = audio.len();
            let charged = manuel_transcribe::charged_transcription(
                transcriber.as_ref(),
                deps.usage.as_ref(),
                deps.quota,
                deps.clock.as_ref(),
                &user,
                audio,
                &clip,
                deadline.map(|axum::Extension(deadline)| deadline),
            )
            .await?;
            let question = match clean_question(&charged.transcript, deps.config.max_question_chars)
            {
                Ok(question) => question,
                Err(error) => {
                    refund(&deps, &user, &QuotaWindows::at(charged.at)).await;
                    return Err(error);
                }
            };
            (
                question,
                Some(Spoken {
                    audio_seconds: clip.billable_seconds(size),
                    charged,
                }),
            )
        }
        _ => (
            clean_question(typed.unwrap_or(""), deps.config.max_question_chars)?,
            None,
        ),
    };

    let ready: HashMap<String, Manual> = deps
        .manuals
        .list_ready(&user)
        .await?
        .into_iter()
        .filter(|manual| {
            request
                .manual_ids
                .as_deref()
                .is_none_or(|ids| ids.contains(&manual.id))
        })
        .map(|manual| (manual.id.clone(), manual))
        .collect();
    let key = Cache::key(
        EntryKind::Answer,
        user.as_str(),
        &corpus_version(&ready),
        &question_digest(&question, request.manual_ids.as_deref()),
    );

    let (operation, audio_seconds) = spoken.as_ref().map_or((Operation::Query, 0.0), |spoken| {
        (Operation::Transcribe, spoken.audio_seconds)
    });
    // Filled in only when this request computes the answer; a typed question answered from
    // the cache reserves and costs nothing.
    let charged: Mutex<Option<(UsageNumbers, CostRecord)>> = Mutex::new(None);
    let (cached, cache_status) = deps
        .cache
        .get_or_compute(EntryKind::Answer, &key, || async {
            let (now, usage) = match &spoken {
                Some(spoken) => (spoken.charged.at, spoken.charged.usage),
                None => {
                    let now = deps.clock.now();
                    let windows = QuotaWindows::at(now);
                    match deps
                        .usage
                        .reserve(&user, &windows, deps.quota, Operation::Query)
                        .await?
                    {
                        Reservation::Granted(numbers) => (now, numbers),
                        Reservation::Refused(numbers) => return Err(numbers.refusal(&windows)),
                    }
                }
            };
            let windows = QuotaWindows::at(now);
            let answered = match answer(
                &deps,
                &user,
                &question,
                &ready,
                request.manual_ids.is_some(),
            )
            .await
            {
                Ok(answered) => answered,
                Err(error) => {
                    if error.status().is_server_error() {
                        refund(&deps, &user, &windows).await;
                    }
                    return Err(error);
                }
            };
            let cost = deps.pricing.cost(
                &request_id.0,
                now,
                operation,
                &deps.model_id,
                answered.input_tokens,
                answered.output_tokens,
                0,
                audio_seconds,
            );
            if let Err(error) = deps.usage.record_cost(&user, &cost).await {
                tracing::error!(%error, "could not record the cost of a query");
            }
            if let Ok(mut charged) = charged.lock() {
                *charged = Some((usage, cost));
            }
            serde_json::to_vec(&answered.cached).map_err(ApiError::internal)
        })
        .await?;
    manuel_core::telemetry::record(
        match cache_status {
            manuel_core::cache::CacheStatus::Hit => manuel_core::telemetry::Metric::CacheHits,
            manuel_core::cache::CacheStatus::Miss => manuel_core::telemetry::Metric::CacheMisses,
        },
        1.0,
    );
    let cached: CachedAnswer = serde_json::from_slice(&cached).map_err(ApiError::internal)?;
    let charged = charged.lock().ok().and_then(|mut charged| charged.take());
    let (usage, cost) = match charged {
        Some((usage, cost)) => (usage, cost),
        None => match &spoken {
            // The transcription was paid for even though the answer came from the cache.
            Some(spoken) => {
                let cost = deps.pricing.cost(
                    &request_id.0,
                    spoken.charged.at,
                    Operation::Transcribe,
                    "cache",
                    0,
                    0,
                    0,
                    spoken.audio_seconds,
                );
                if let Err(error) = deps.usage.record_cost(&user, &cost).await {
                    tracing::error!(%error, "could not record the cost of a transcription");
                }
                (spoken.charged.usage, cost)
            }
            None => {
                let now = deps.clock.now();
                let state = deps
                    .usage
                    .usage(&user, &QuotaWindows::at(now), deps.quota)
                    .await?;
                let free =
                    deps.pricing
                        .cost(&request_id.0, now, Operation::Query, "cache", 0, 0, 0, 0.0);
                (state.numbers, free)
            }
        },
    };

    record_citations(&deps, &user, &cached.sources).await;
    let mut sources = Vec::with_capacity(cached.sources.len());
    for source in cached.sources {
        // Links expire sooner than cached answers, so they are signed per response.
        let Some(manual) = ready.get(&source.manual_id) else {
            continue;
        };
        let link = deps
            .objects
            .download_link(
                &manual.key,
                &manual.name,
                manual.kind.mime_type(),
                deps.config.source_link_ttl,
            )
            .await?;
        let mut value = serde_json::to_value(&source).map_err(ApiError::internal)?;
        if let Some(map) = value.as_object_mut() {
            map.insert(
                "pdf_url".to_owned(),
                json!(format!("{link}#page={}", source.page_number)),
            );
        }
        sources.push(value);
    }
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    Ok(Json(json!({
        "answer": cached.answer,
        "question": question,
        "sources": sources,
        "context_found": cached.context_found,
        "cache_status": cache_status.as_str(),
        "response_time_ms": (elapsed_ms * 100.0).round() / 100.0,
        "cost_info": {
            "total_cost_eur": cost.total_cost,
            "currency": deps.pricing.currency,
            "input_tokens": cost.input_tokens,
            "output_tokens": cost.output_tokens,
            "operation": cost.operation.as_str(),
        },
        "usage": usage_fields(usage),
        "request_id": request_id.0,
        "timestamp": deps.clock.now().timestamp(),
    })))
}

/// The counters, also under the names `/api/user/usage` uses (`daily_queries`,
/// `monthly_queries`), which the predecessor's CLI reads from answers.
fn usage_fields(usage: UsageNumbers) -> Value {
    json!({
        "daily_used": usage.daily_used,
        "daily_limit": usage.daily_limit,
        "monthly_used": usage.monthly_used,
        "monthly_limit": usage.monthly_limit,
        "daily_queries": usage.daily_used,
        "monthly_queries": usage.monthly_used,
    })
}

/// Counts this answer on each manual it cites (the detail's `queryCount`, `lastQueried`).
/// The answer is already paid for and computed: a failure here is logged, not returned.
async fn record_citations(
    deps: &QueryDeps,
    user: &manuel_core::domain::UserId,
    sources: &[CachedSource],
) {
    let mut cited: Vec<String> = Vec::new();
    for source in sources.iter().filter(|source| source.cited) {
        if !cited.contains(&source.manual_id) {
            cited.push(source.manual_id.clone());
        }
    }
    if cited.is_empty() {
        return;
    }
    if let Err(error) = deps
        .manuals
        .record_citations(user, &cited, deps.clock.now())
        .await
    {
        tracing::error!(%error, "could not count the manuals an answer cited");
    }
}

/// What the cache keeps of an answer: everything but per-request fields and signed links.
#[derive(Serialize, Deserialize)]
struct CachedAnswer {
    answer: String,
    sources: Vec<CachedSource>,
    context_found: bool,
}

#[derive(Serialize, Deserialize)]
struct CachedSource {
    manual_id: String,
    manual_name: String,
    page_number: u32,
    chunk_text: String,
    score: f64,
    /// Whether the answer cites it (`[n]` is the n-th source); the others are the next-best
    /// passages retrieval found, listed after the cited ones.
    #[serde(default = "cited_by_default")]
    cited: bool,
}

impl CachedSource {
    fn new(manual: &Manual, chunk: &RetrievedChunk, cited: bool) -> Self {
        Self {
            manual_id: manual.id.clone(),
            manual_name: manual.name.clone(),
            page_number: chunk.page,
            chunk_text: chunk.text.clone(),
            score: (f64::from(chunk.score) * 1000.0).round() / 1000.0,
            cited,
        }
    }
}

impl CachedSource {
    /// Another cited passage of the same page: its text joins this source's, its score counts
    /// if higher.
    fn add_passage(&mut self, chunk: &RetrievedChunk) {
        if !self.chunk_text.contains(chunk.text.as_str()) {
            self.chunk_text.push('\n');
            self.chunk_text.push_str(&chunk.text);
        }
        self.score = self
            .score
            .max((f64::from(chunk.score) * 1000.0).round() / 1000.0);
    }
}

/// Rewrites the answer's `[n]` (n = position in the model's citations) to the number of the
/// source it now belongs to; a citation without a source is dropped. Brackets that are not a
/// citation number in range are left as they are.
fn renumber_citations(text: &str, source_of_citation: &[Option<usize>]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let citation = after.find(']').and_then(|close| {
            let number: usize = after[..close].parse().ok()?;
            let source = *source_of_citation.get(number.checked_sub(1)?)?;
            Some((close, source))
        });
        match citation {
            Some((close, source)) => {
                if let Some(source) = source {
                    out.push_str(&format!("[{}]", source + 1));
                } else {
                    // Drop the citation and the space before it.
                    let kept = out.trim_end().len();
                    out.truncate(kept);
                }
                rest = &after[close + 1..];
            }
            None => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Answers cached before `cited` existed listed only cited sources.
fn cited_by_default() -> bool {
    true
}

/// An answer lists at least this many sources when retrieval found that many distinct pages:
/// the cited ones, then the next-best, so a reader can check where else the manuals speak of
/// it (the predecessor listed every retrieval result).
const SOURCES_LISTED: usize = 3;

/// Changes whenever a manual becomes ready, is deleted or changes: cached answers made from
/// another set of manuals are never served.
fn corpus_version(ready: &HashMap<String, Manual>) -> String {
    let mut manuals: Vec<(&String, i64)> = ready
        .iter()
        .map(|(id, manual)| (id, manual.updated_at.timestamp_micros()))
        .collect();
    manuals.sort();
    let mut hasher = Sha256::new();
    for (id, updated) in manuals {
        hasher.update(id.as_bytes());
        hasher.update(updated.to_le_bytes());
    }
    hex::encode(&hasher.finalize()[..8])
}

fn question_digest(question: &str, manual_ids: Option<&[String]>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(question.to_lowercase().as_bytes());
    if let Some(ids) = manual_ids {
        let mut ids = ids.to_vec();
        ids.sort();
        for id in ids {
            hasher.update(b"\0");
            hasher.update(id.as_bytes());
        }
    }
    hex::encode(&hasher.finalize()[..16])
}

/// A spoken question: its transcription, already charged, and its billable length.
struct Spoken {
    charged: manuel_transcribe::ChargedTranscript,
    audio_seconds: f64,
}

async fn refund(deps: &QueryDeps, user: &manuel_core::domain::UserId, windows: &QuotaWindows) {
    if let Err(error) = deps.usage.refund(user, windows).await {
        tracing::error!(%error, "could not refund a quota reservation");
    }
}

struct Answered {
    cached: CachedAnswer,
    input_tokens: u64,
    output_tokens: u64,
}

/// Retrieval and generation: the expensive part, run only after the quota was reserved.
async fn answer(
    deps: &QueryDeps,
    user: &manuel_core::domain::UserId,
    question: &str,
    ready: &HashMap<String, Manual>,
    narrowed: bool,
) -> Result<Answered, ApiError> {
    let passages: Vec<RetrievedChunk> = if ready.is_empty() {
        Vec::new()
    } else {
        let scope: Option<Vec<String>> = narrowed.then(|| ready.keys().cloned().collect());
        deps.knowledge_base
            .retrieve(
                user,
                question,
                scope.as_deref(),
                deps.config.retrieval_limit,
            )
            .await?
            .into_iter()
            // The index can briefly hold a manual that is being deleted or still processing.
            .filter(|chunk| ready.contains_key(&chunk.manual_id))
            .collect()
    };
    let answer = deps.answer_model.answer(user, question, &passages).await?;
    // One source per cited page: two cited passages of the same page are one source, and the
    // answer's `[n]` are renumbered to match.
    let mut sources: Vec<CachedSource> = Vec::with_capacity(answer.cited.len());
    let mut source_of_citation: Vec<Option<usize>> = Vec::with_capacity(answer.cited.len());
    for &index in &answer.cited {
        let Some(chunk) = passages.get(index) else {
            return Err(ApiError::internal(
                "the answer model cited a passage it was not given",
            ));
        };
        let Some(manual) = ready.get(&chunk.manual_id) else {
            source_of_citation.push(None);
            continue;
        };
        let same_page = sources.iter().position(|source| {
            source.manual_id == chunk.manual_id && source.page_number == chunk.page
        });
        match same_page {
            Some(at) => {
                sources[at].add_passage(chunk);
                source_of_citation.push(Some(at));
            }
            None => {
                sources.push(CachedSource::new(manual, chunk, true));
                source_of_citation.push(Some(sources.len() - 1));
            }
        }
    }
    let renumbered = source_of_citation
        .iter()
        .enumerate()
        .any(|(position, source)| *source != Some(position));
    let answer_text = if renumbered {
        renumber_citations(&answer.text, &source_of_citation)
    } else {
        answer.text
    };
    let context_found = answer.found && !sources.is_empty();
    if context_found {
        for chunk in further_sources(&passages, &answer.ranking) {
            if sources.len() >= SOURCES_LISTED {
                break;
            }
            let listed = sources.iter().any(|source| {
                source.manual_id == chunk.manual_id && source.page_number == chunk.page
            });
            let Some(manual) = ready.get(&chunk.manual_id).filter(|_| !listed) else {
                continue;
            };
            sources.push(CachedSource::new(manual, chunk, false));
        }
    }
    let text = if context_found || !answer.found {
        answer_text
    } else {
        not_covered().to_owned()
    };
    Ok(Answered {
        cached: CachedAnswer {
            answer: text,
            sources,
            context_found,
        },
        input_tokens: answer.input_tokens,
        output_tokens: answer.output_tokens,
    })
}

/// The passages in the order further sources are listed: as the answer model ranked them, then
/// any it did not rank in retrieval order.
fn further_sources<'a>(
    passages: &'a [RetrievedChunk],
    ranking: &[usize],
) -> impl Iterator<Item = &'a RetrievedChunk> {
    let mut order: Vec<usize> = Vec::with_capacity(passages.len());
    for index in ranking.iter().copied().chain(0..passages.len()) {
        if index < passages.len() && !order.contains(&index) {
            order.push(index);
        }
    }
    order.into_iter().map(|index| &passages[index])
}

fn not_covered() -> &'static str {
    "I couldn't find this in your manuals."
}

/// Removes control characters, collapses whitespace, refuses injection payloads and applies the
/// length limit.
fn clean_question(raw: &str, max_chars: usize) -> Result<String, ApiError> {
    let cleaned = check_text("question", FieldKind::Question, raw)?;
    if cleaned.chars().count() > max_chars {
        return Err(ApiError::validation(
            "question",
            format!("`question` must be at most {max_chars} characters."),
        ));
    }
    Ok(cleaned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn questions_are_cleaned_and_bounded() {
        assert_eq!(
            clean_question("  How do I\u{0} reset\n the router? ", 100)
                .ok()
                .as_deref(),
            Some("How do I reset the router?")
        );
        assert!(clean_question(" \n\t", 100).is_err());
        assert!(clean_question(&"a".repeat(101), 100).is_err());
        assert!(clean_question(&"ü".repeat(100), 100).is_ok());
    }

    #[test]
    fn citations_are_renumbered_when_two_passages_share_a_source() {
        // Passages 1 and 3 are on the same page: one source, cited as [1] twice.
        let map = [Some(0), Some(1), Some(0)];
        assert_eq!(
            renumber_citations("A [1] B [2] C [3] D [options] [9] E[3]", &map),
            "A [1] B [2] C [1] D [options] [9] E[1]"
        );
        // A citation whose manual is gone is dropped with the space before it.
        assert_eq!(
            renumber_citations("A [1] B [2].", &[Some(0), None]),
            "A [1] B."
        );
        assert_eq!(renumber_citations("[", &map), "[");
        assert_eq!(renumber_citations("x [0] [1", &map), "x [0] [1");
    }

    #[test]
    fn further_sources_follow_the_models_ranking_then_retrieval_order() {
        let passages: Vec<RetrievedChunk> = (1..=4)
            .map(|page| RetrievedChunk {
                manual_id: "m".into(),
                page,
                text: format!("page {page}"),
                score: 0.5,
            })
            .collect();
        let pages = |ranking: &[usize]| -> Vec<u32> {
            further_sources(&passages, ranking)
                .map(|c| c.page)
                .collect()
        };
        assert_eq!(pages(&[]), [1, 2, 3, 4]);
        assert_eq!(pages(&[2, 0]), [3, 1, 2, 4]);
        // Out-of-range and repeated indexes from a model are ignored.
        assert_eq!(pages(&[9, 3, 3, 1]), [4, 2, 1, 3]);
    }
}
