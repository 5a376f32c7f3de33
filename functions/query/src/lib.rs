//! The query function: a question about the caller's manuals → a grounded, cited answer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use manuel_core::ApiError;
use manuel_core::answer_text::rewrite_citations;
use manuel_core::audio::AudioLimits;
use manuel_core::auth::AuthenticatedUser;
use manuel_core::cache::{Cache, CacheStatus, EntryKind};
use manuel_core::charge::Charge;
use manuel_core::deadline::Deadline;
use manuel_core::domain::{Answer, Manual, NOT_FOUND_ANSWER, RetrievedChunk, UserId};
use manuel_core::json::JsonBody;
use manuel_core::ports::{
    AnswerModel, KnowledgeBase, ManualRepository, ObjectStore, Transcriber, UsageStore,
};
use manuel_core::request_id::RequestId;
use manuel_core::security::Security;
use manuel_core::spoken::{self, Transcript};
use manuel_core::telemetry::Metric;
use manuel_core::usage::{
    Clock, CostRecord, Metered, Operation, Pricing, QuotaLimits, QuotaWindows, UsageNumbers,
};
use manuel_core::validation::{FieldKind, check_text, is_blank_question};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

mod stream;

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
    let routes = Router::new()
        .route("/api/query", post(query))
        .route("/api/query/stream", post(stream::query_stream));
    let body_limit = manuel_transcribe::request_body_limit(&deps.audio_limits);
    deps.security
        .protect_with_body_limit(routes, body_limit)
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

impl QueryRequest {
    fn check_manual_ids(&self) -> Result<(), ApiError> {
        let Some(ids) = &self.manual_ids else {
            return Ok(());
        };
        for id in ids {
            check_text("manual_ids", FieldKind::Identifier, id)?;
        }
        if ids.len() > MAX_MANUAL_IDS {
            return Err(ApiError::validation(
                "manual_ids",
                format!("At most {MAX_MANUAL_IDS} manual ids."),
            ));
        }
        Ok(())
    }
}

async fn query(
    State(deps): State<QueryDeps>,
    AuthenticatedUser(user): AuthenticatedUser,
    axum::Extension(request_id): axum::Extension<RequestId>,
    deadline: Option<axum::Extension<Deadline>>,
    JsonBody(request): JsonBody<QueryRequest>,
) -> Result<Json<QueryAnswer>, ApiError> {
    let started = Instant::now();
    request.check_manual_ids()?;
    let deadline = deadline.map(|axum::Extension(deadline)| deadline);
    let (question, mut heard) = question_of(&deps, &user, &request, deadline).await?;
    let ready = ready_manuals(&deps, &user, request.manual_ids.as_deref()).await?;
    let key = answer_key(&user, &ready, &question, request.manual_ids.as_deref());
    let asked = Asked {
        deps: &deps,
        user: &user,
        request_id: &request_id.0,
        question: &question,
        ready: &ready,
        narrowed: request.manual_ids.is_some(),
    };
    // Set only when this request computes the answer; on a cache hit another request did.
    let mut billed: Option<Billed> = None;
    let (billed_here, heard_here, asked_here) = (&mut billed, &mut heard, &asked);
    let (bytes, cache_status) = deps
        .cache
        .get_or_compute(EntryKind::Answer, &key, move || {
            compute(asked_here, heard_here.take(), billed_here)
        })
        .await?;
    manuel_core::telemetry::record(cache_metric(cache_status), 1.0);
    let cached: CachedAnswer = serde_json::from_slice(&bytes).map_err(ApiError::internal)?;
    let billed = match billed {
        Some(billed) => billed,
        None => bill_cache_hit(&asked, heard).await?,
    };
    let served = Served {
        question,
        cache_status,
        billed,
        started,
        request_id: request_id.0,
    };
    Ok(Json(served.body(&deps, &user, &ready, cached).await?))
}

/// The cache key of the answer to `question` from `ready`, for `user` only.
fn answer_key(
    user: &UserId,
    ready: &HashMap<String, Manual>,
    question: &str,
    manual_ids: Option<&[String]>,
) -> String {
    Cache::key(
        EntryKind::Answer,
        user.as_str(),
        &corpus_version(ready),
        &question_digest(question, manual_ids),
    )
}

/// What is known of a served answer besides the answer itself.
struct Served {
    question: String,
    cache_status: CacheStatus,
    billed: Billed,
    started: Instant,
    request_id: String,
}

impl Served {
    /// The body of `/api/query` (and of the stream's `done` event): the answer with its sources
    /// signed for this response, after counting the citations on the manuals.
    async fn body(
        self,
        deps: &QueryDeps,
        user: &UserId,
        ready: &HashMap<String, Manual>,
        cached: CachedAnswer,
    ) -> Result<QueryAnswer, ApiError> {
        record_citations(deps, user, &cached.sources).await;
        let sources = signed_sources(deps, ready, cached.sources).await?;
        Ok(QueryAnswer {
            answer: cached.answer,
            question: self.question,
            sources,
            context_found: cached.context_found,
            cache_status: self.cache_status.as_str(),
            response_time_ms: hundredths(self.started.elapsed().as_secs_f64() * 1000.0),
            cost_info: CostInfo::of(&self.billed.cost, &deps.pricing.currency),
            usage: UsageFields::from(self.billed.usage),
            request_id: self.request_id,
            timestamp: deps.clock.now().timestamp(),
        })
    }
}

/// What one question is asked with, for the computation of its answer.
struct Asked<'a> {
    deps: &'a QueryDeps,
    user: &'a UserId,
    request_id: &'a str,
    question: &'a str,
    ready: &'a HashMap<String, Manual>,
    narrowed: bool,
}

/// What the asker was charged: the counters with this question counted, and its cost.
struct Billed {
    usage: UsageNumbers,
    cost: CostRecord,
}

/// The question to answer: the typed one, or the words of the spoken one (already charged as
/// one `transcribe` operation, which covers the answer too). Next to a clip, a blank question
/// is absent: the predecessor's app and CLI send `"question": ""`.
async fn question_of(
    deps: &QueryDeps,
    user: &UserId,
    request: &QueryRequest,
    deadline: Option<Deadline>,
) -> Result<(String, Option<Transcript>), ApiError> {
    let typed = request
        .question
        .as_deref()
        .filter(|question| request.file_data.is_none() || !is_blank_question(question));
    if typed.is_some() || request.file_data.is_none() {
        let question = clean_question(typed.unwrap_or(""), deps.config.max_question_chars)?;
        return Ok((question, None));
    }
    let clip = spoken::decode(
        "file_data",
        request.file_data.as_deref(),
        request.content_type.as_deref(),
        &deps.audio_limits,
    )?;
    let listener = spoken::Listener {
        transcriber: deps.transcriber.as_ref(),
        usage: &deps.usage,
        quota: deps.quota,
        clock: deps.clock.as_ref(),
    };
    let heard = spoken::transcribe(listener, user, clip, deadline).await?;
    match clean_question(&heard.text, deps.config.max_question_chars) {
        Ok(question) => Ok((question, Some(heard))),
        Err(error) => {
            heard.charge.refund().await;
            Err(error)
        }
    }
}

/// The caller's ready manuals, narrowed to `manual_ids` when given.
async fn ready_manuals(
    deps: &QueryDeps,
    user: &UserId,
    manual_ids: Option<&[String]>,
) -> Result<HashMap<String, Manual>, ApiError> {
    Ok(deps
        .manuals
        .list_ready(user)
        .await?
        .into_iter()
        .filter(|manual| manual_ids.is_none_or(|ids| ids.contains(&manual.id)))
        .map(|manual| (manual.id.clone(), manual))
        .collect())
}

/// Computes the answer (cache miss): charged first (the spoken question's charge, or one
/// `query` reserved now), then retrieval and the model; the charge is committed with the
/// model's tokens, or refunded if we failed.
async fn compute(
    asked: &Asked<'_>,
    heard: Option<Transcript>,
    billed: &mut Option<Billed>,
) -> Result<Vec<u8>, ApiError> {
    let paying = Paying::start(asked, heard).await?;
    let answered = match answer(asked).await {
        Ok(answered) => answered,
        Err(error) => return Err(paying.fail(error).await),
    };
    *billed = Some(
        paying
            .commit(asked, answered.input_tokens, answered.output_tokens)
            .await,
    );
    serde_json::to_vec(&answered.cached).map_err(ApiError::internal)
}

/// A question being paid for: the spoken question's charge, or one `query` reserved now.
struct Paying {
    charge: Charge,
    audio_seconds: f64,
}

impl Paying {
    async fn start(asked: &Asked<'_>, heard: Option<Transcript>) -> Result<Self, ApiError> {
        let deps = asked.deps;
        Ok(match heard {
            Some(heard) => Self {
                charge: heard.charge,
                audio_seconds: heard.audio_seconds,
            },
            None => Self {
                charge: Charge::reserve(
                    &deps.usage,
                    asked.user,
                    deps.quota,
                    deps.clock.now(),
                    Operation::Query,
                )
                .await?,
                audio_seconds: 0.0,
            },
        })
    }

    /// The question failed with `error`: refunded when we failed, kept when the client did.
    async fn fail(self, error: ApiError) -> ApiError {
        if error.status().is_server_error() {
            self.charge.refund().await;
        } else {
            self.charge.keep();
        }
        error
    }

    /// Answered: the place is kept and the model's tokens recorded.
    async fn commit(self, asked: &Asked<'_>, input_tokens: u64, output_tokens: u64) -> Billed {
        let deps = asked.deps;
        let used = Metered {
            input_tokens,
            output_tokens,
            audio_seconds: self.audio_seconds,
        };
        let cost = deps.pricing.cost(
            asked.request_id,
            self.charge.at(),
            self.charge.operation(),
            &deps.model_id,
            used,
        );
        let usage = self.charge.commit(&cost).await;
        Billed { usage, cost }
    }
}

/// The bill of an answer served from the cache: a spoken question still pays for being heard
/// (committed now, at no model cost); a typed one costs nothing and reserves nothing.
async fn bill_cache_hit(asked: &Asked<'_>, heard: Option<Transcript>) -> Result<Billed, ApiError> {
    let deps = asked.deps;
    let (at, operation, audio_seconds) = match &heard {
        Some(heard) => (
            heard.charge.at(),
            Operation::Transcribe,
            heard.audio_seconds,
        ),
        None => (deps.clock.now(), Operation::Query, 0.0),
    };
    let used = Metered {
        audio_seconds,
        ..Metered::default()
    };
    let cost = deps
        .pricing
        .cost(asked.request_id, at, operation, "cache", used);
    let usage = match heard {
        Some(heard) => heard.charge.commit(&cost).await,
        None => {
            let windows = QuotaWindows::at(at);
            deps.usage
                .usage(asked.user, &windows, deps.quota)
                .await?
                .numbers
        }
    };
    Ok(Billed { usage, cost })
}

fn cache_metric(status: CacheStatus) -> Metric {
    match status {
        CacheStatus::Hit => Metric::CacheHits,
        CacheStatus::Miss => Metric::CacheMisses,
    }
}

/// The cached sources with links signed for this response (links expire sooner than cached
/// answers); a source whose manual is no longer ready is left out.
async fn signed_sources(
    deps: &QueryDeps,
    ready: &HashMap<String, Manual>,
    sources: Vec<CachedSource>,
) -> Result<Vec<SignedSource>, ApiError> {
    let mut signed = Vec::with_capacity(sources.len());
    for source in sources {
        let Some(manual) = ready.get(&source.manual_id) else {
            continue;
        };
        let pdf_url = page_link(deps, manual, source.page_number).await?;
        signed.push(SignedSource { source, pdf_url });
    }
    Ok(signed)
}

/// A link to `page` of `manual`, signed for this response.
async fn page_link(deps: &QueryDeps, manual: &Manual, page: u32) -> Result<String, ApiError> {
    let link = deps
        .objects
        .download_link(
            &manual.key,
            &manual.name,
            manual.kind.mime_type(),
            deps.config.source_link_ttl,
        )
        .await?;
    Ok(format!("{link}#page={page}"))
}

fn hundredths(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// The body of an answer.
#[derive(Serialize)]
struct QueryAnswer {
    answer: String,
    question: String,
    sources: Vec<SignedSource>,
    context_found: bool,
    cache_status: &'static str,
    response_time_ms: f64,
    cost_info: CostInfo,
    usage: UsageFields,
    request_id: String,
    timestamp: i64,
}

#[derive(Serialize)]
struct SignedSource {
    #[serde(flatten)]
    source: CachedSource,
    pdf_url: String,
}

#[derive(Serialize)]
struct CostInfo {
    /// In `currency`; the name is kept from the previous API.
    total_cost_eur: f64,
    currency: String,
    input_tokens: u64,
    output_tokens: u64,
    operation: &'static str,
}

impl CostInfo {
    fn of(cost: &CostRecord, currency: &str) -> Self {
        Self {
            total_cost_eur: cost.total_cost,
            currency: currency.to_owned(),
            input_tokens: cost.input_tokens,
            output_tokens: cost.output_tokens,
            operation: cost.operation.as_str(),
        }
    }
}

/// The counters, also under the names `/api/user/usage` uses (`daily_queries`,
/// `monthly_queries`), which the predecessor's CLI reads from answers.
#[derive(Serialize)]
struct UsageFields {
    daily_used: u64,
    daily_limit: u64,
    monthly_used: u64,
    monthly_limit: u64,
    daily_queries: u64,
    monthly_queries: u64,
}

impl From<UsageNumbers> for UsageFields {
    fn from(usage: UsageNumbers) -> Self {
        Self {
            daily_used: usage.daily_used,
            daily_limit: usage.daily_limit,
            monthly_used: usage.monthly_used,
            monthly_limit: usage.monthly_limit,
            daily_queries: usage.daily_used,
            monthly_queries: usage.monthly_used,
        }
    }
}

/// Counts this answer on each manual it cites (the detail's `queryCount`, `lastQueried`).
/// The answer is already paid for and computed: a failure here is logged, not returned.
async fn record_citations(deps: &QueryDeps, user: &UserId, sources: &[CachedSource]) {
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
    rewrite_citations(text, |number| {
        let source = *source_of_citation.get(number.checked_sub(1)?)?;
        Some(source.map(|source| source + 1))
    })
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

struct Answered {
    cached: CachedAnswer,
    input_tokens: u64,
    output_tokens: u64,
}

/// Retrieval and generation: the expensive part, run only after the quota was reserved.
async fn answer(asked: &Asked<'_>) -> Result<Answered, ApiError> {
    let passages = retrieve(asked).await?;
    let answer = asked
        .deps
        .answer_model
        .answer(asked.user, asked.question, &passages)
        .await?;
    let (input_tokens, output_tokens) = (answer.input_tokens, answer.output_tokens);
    Ok(Answered {
        cached: shaped(answer, &passages, asked.ready)?,
        input_tokens,
        output_tokens,
    })
}

/// The passages of the asker's ready manuals that best match the question.
async fn retrieve(asked: &Asked<'_>) -> Result<Vec<RetrievedChunk>, ApiError> {
    let ready = asked.ready;
    if ready.is_empty() {
        return Ok(Vec::new());
    }
    let scope: Option<Vec<String>> = asked.narrowed.then(|| ready.keys().cloned().collect());
    Ok(asked
        .deps
        .knowledge_base
        .retrieve(
            asked.user,
            asked.question,
            scope.as_deref(),
            asked.deps.config.retrieval_limit,
        )
        .await?
        .into_iter()
        // The index can briefly hold a manual that is being deleted or still processing.
        .filter(|chunk| ready.contains_key(&chunk.manual_id))
        .collect())
}

/// The model's answer as it is cached and served: one source per cited page, citations
/// renumbered to match, further sources listed, and the refusal when nothing is left to cite.
fn shaped(
    answer: Answer,
    passages: &[RetrievedChunk],
    ready: &HashMap<String, Manual>,
) -> Result<CachedAnswer, ApiError> {
    let (mut sources, source_of_citation) = cited_sources(&answer.cited, passages, ready)?;
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
        for chunk in further_sources(passages, &answer.ranking) {
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
        // The model answered, but from no manual the caller still has: the usual refusal.
        NOT_FOUND_ANSWER.to_owned()
    };
    Ok(CachedAnswer {
        answer: text,
        sources,
        context_found,
    })
}

/// One source per cited page (two cited passages of the same page are one source), and for
/// each of the model's citations the source it now belongs to (`None`: its manual is gone), so
/// the answer's `[n]` can be renumbered to match.
fn cited_sources(
    cited: &[usize],
    passages: &[RetrievedChunk],
    ready: &HashMap<String, Manual>,
) -> Result<(Vec<CachedSource>, Vec<Option<usize>>), ApiError> {
    let mut sources: Vec<CachedSource> = Vec::with_capacity(cited.len());
    let mut source_of_citation: Vec<Option<usize>> = Vec::with_capacity(cited.len());
    for &index in cited {
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
    Ok((sources, source_of_citation))
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
                similarity: None,
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
