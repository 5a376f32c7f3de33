//! The query function: a question about the caller's manuals → a grounded, cited answer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, State};
use axum::routing::post;
use axum::{Json, Router};
use manuel_core::ApiError;
use manuel_core::auth::AuthenticatedUser;
use manuel_core::domain::{Manual, RetrievedChunk};
use manuel_core::json::JsonBody;
use manuel_core::ports::{AnswerModel, KnowledgeBase, ManualRepository, ObjectStore, UsageStore};
use manuel_core::request_id::RequestId;
use manuel_core::security::Security;
use manuel_core::usage::{Clock, Operation, Pricing, QuotaLimits, QuotaWindows, Reservation};
use manuel_core::validation::{FieldKind, check_text};
use serde::Deserialize;
use serde_json::{Value, json};

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
    pub security: Security,
    pub config: QueryConfig,
}

pub fn router(deps: QueryDeps) -> Router {
    let routes = Router::new().route("/api/query", post(query));
    deps.security
        .protect(routes)
        .layer(DefaultBodyLimit::max(64 * 1024))
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
    JsonBody(request): JsonBody<QueryRequest>,
) -> Result<Json<Value>, ApiError> {
    let started = Instant::now();
    if request.file_data.is_some() && request.question.is_none() {
        return Err(ApiError::validation(
            "file_data",
            "Spoken questions are not supported by this server yet; send the question as text in `question`.",
        ));
    }
    let question = clean_question(
        request.question.as_deref().unwrap_or(""),
        deps.config.max_question_chars,
    )?;
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

    let now = deps.clock.now();
    let windows = QuotaWindows::at(now);
    let usage = match deps
        .usage
        .reserve(&user, &windows, deps.quota, Operation::Query)
        .await?
    {
        Reservation::Granted(numbers) => numbers,
        Reservation::Refused(numbers) => return Err(numbers.refusal(&windows)),
    };
    let answered = answer(&deps, &user, &question, request.manual_ids.as_deref()).await;
    let answered = match answered {
        Ok(answered) => answered,
        Err(error) => {
            if error.status().is_server_error()
                && let Err(refund) = deps.usage.refund(&user, &windows).await
            {
                tracing::error!(error = %refund, "could not refund a quota reservation");
            }
            return Err(error);
        }
    };
    let cost = deps.pricing.cost(
        &request_id.0,
        now,
        Operation::Query,
        &deps.model_id,
        answered.input_tokens,
        answered.output_tokens,
        0,
        0.0,
    );
    if let Err(error) = deps.usage.record_cost(&user, &cost).await {
        tracing::error!(%error, "could not record the cost of a query");
    }
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    Ok(Json(json!({
        "answer": answered.text,
        "question": question,
        "sources": answered.sources,
        "context_found": answered.context_found,
        "cache_status": "miss",
        "response_time_ms": (elapsed_ms * 100.0).round() / 100.0,
        "cost_info": {
            "total_cost_eur": cost.total_cost,
            "currency": deps.pricing.currency,
            "input_tokens": cost.input_tokens,
            "output_tokens": cost.output_tokens,
            "operation": cost.operation.as_str(),
        },
        "usage": usage,
        "request_id": request_id.0,
    })))
}

struct Answered {
    text: String,
    sources: Vec<Value>,
    context_found: bool,
    input_tokens: u64,
    output_tokens: u64,
}

/// Retrieval and generation: the expensive part, run only after the quota was reserved.
async fn answer(
    deps: &QueryDeps,
    user: &manuel_core::domain::UserId,
    question: &str,
    manual_ids: Option<&[String]>,
) -> Result<Answered, ApiError> {
    let ready: HashMap<String, Manual> = deps
        .manuals
        .list_ready(user)
        .await?
        .into_iter()
        .filter(|manual| manual_ids.is_none_or(|ids| ids.contains(&manual.id)))
        .map(|manual| (manual.id.clone(), manual))
        .collect();

    let passages: Vec<RetrievedChunk> = if ready.is_empty() {
        Vec::new()
    } else {
        let scope: Option<Vec<String>> = manual_ids.map(|_| ready.keys().cloned().collect());
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

    let mut sources = Vec::with_capacity(answer.cited.len());
    for &index in &answer.cited {
        let Some(chunk) = passages.get(index) else {
            return Err(ApiError::internal(
                "the answer model cited a passage it was not given",
            ));
        };
        let Some(manual) = ready.get(&chunk.manual_id) else {
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
        sources.push(json!({
            "manual_id": manual.id,
            "manual_name": manual.name,
            "page_number": chunk.page,
            "chunk_text": chunk.text,
            "score": (f64::from(chunk.score) * 1000.0).round() / 1000.0,
            "pdf_url": format!("{link}#page={}", chunk.page),
        }));
    }
    let context_found = answer.found && !sources.is_empty();
    let text = if context_found || !answer.found {
        answer.text
    } else {
        not_covered().to_owned()
    };
    Ok(Answered {
        text,
        sources,
        context_found,
        input_tokens: answer.input_tokens,
        output_tokens: answer.output_tokens,
    })
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
}
