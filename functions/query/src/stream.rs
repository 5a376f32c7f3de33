//! `POST /api/query/stream`: the answer as Server-Sent Events, its words sent as the model
//! produces them: `question` (spoken questions) → `sources` → `delta`… → `done` (the body
//! `/api/query` answers), or `error` and the end of the stream.
//!
//! Whatever can refuse the request — token, body, quota, the manuals, retrieval — runs before
//! the first byte, so those refusals are the usual JSON errors with their status. While the
//! answer streams, a `delta`'s `[n]` cites the n-th source of the `sources` event; `done`
//! carries the finished answer with its citations renumbered as `/api/query` numbers them.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::Extension;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt};
use manuel_core::answer_text::AnswerText;
use manuel_core::auth::AuthenticatedUser;
use manuel_core::cache::{CacheStatus, EntryKind};
use manuel_core::deadline::{self, Deadline};
use manuel_core::domain::{Manual, RetrievedChunk, UserId};
use manuel_core::json::JsonBody;
use manuel_core::request_id::{RequestId, with_request_id};
use manuel_core::telemetry::{self, Metric};
use manuel_core::{ApiError, PortError};
use serde::Serialize;
use serde_json::json;
use tokio::sync::mpsc;

use crate::{
    Asked, CachedAnswer, Paying, QueryDeps, QueryRequest, Served, SignedSource, answer_key,
    bill_cache_hit, page_link, question_of, ready_manuals, retrieve,
};

/// Kept back from the invocation's deadline to end the stream with an `error` event (and settle
/// the charge) instead of being cut off.
const DEADLINE_MARGIN: Duration = Duration::from_millis(1500);

/// Comments sent while nothing else is, so proxies keep an idle stream open.
const KEEP_ALIVE: Duration = Duration::from_secs(10);

pub(crate) async fn query_stream(
    State(deps): State<QueryDeps>,
    AuthenticatedUser(user): AuthenticatedUser,
    Extension(request_id): Extension<RequestId>,
    deadline: Option<Extension<Deadline>>,
    JsonBody(request): JsonBody<QueryRequest>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    request.check_manual_ids()?;
    let deadline = deadline.map(|Extension(deadline)| deadline);
    let (question, heard) = question_of(&deps, &user, &request, deadline).await?;
    let spoken = heard.is_some();
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
    if let Some(bytes) = deps.cache.get(EntryKind::Answer, &key).await {
        telemetry::record(Metric::CacheHits, 1.0);
        let cached: CachedAnswer = serde_json::from_slice(&bytes).map_err(ApiError::internal)?;
        let billed = bill_cache_hit(&asked, heard).await?;
        let served = Served {
            question: question.clone(),
            cache_status: CacheStatus::Hit,
            billed,
            started,
            request_id: request_id.0.clone(),
        };
        let body = served.body(&deps, &user, &ready, cached).await?;
        return Ok(cached_events(spoken.then_some(&question), &body));
    }
    telemetry::record(Metric::CacheMisses, 1.0);
    // The reservation and retrieval run together: retrieval is most of the wait for the first
    // word, and a Retrieve for a question the quota then refuses costs little.
    let (paying, passages) = tokio::join!(Paying::start(&asked, heard), retrieve(&asked));
    let paying = paying?;
    let passages = match passages {
        Ok(passages) => passages,
        Err(error) => return Err(paying.fail(error).await),
    };
    let sources = match passage_sources(&deps, &ready, &passages).await {
        Ok(sources) => event("sources", &json!({ "sources": sources })),
        Err(error) => return Err(paying.fail(error).await),
    };
    let narrowed = asked.narrowed;
    let (events, received) = mpsc::channel(64);
    let answering = Answering {
        deps,
        user,
        request_id: request_id.0,
        question,
        ready,
        narrowed,
        passages,
        key,
        paying,
        started,
    };
    let first = spoken
        .then(|| event("question", &json!({ "question": answering.question })))
        .into_iter()
        .chain([sources]);
    let id = answering.request_id.clone();
    tokio::spawn(with_request_id(
        id,
        deadline::within(deadline, answering.run(events, deadline)),
    ));
    let rest = stream::unfold(received, |mut received| async move {
        received.recv().await.map(|event| (event, received))
    });
    Ok(event_stream(stream::iter(first).chain(rest)))
}

/// A passage the streaming answer may cite as `[number]`.
#[derive(Serialize)]
struct PassageSource<'a> {
    number: usize,
    manual_id: &'a str,
    manual_name: &'a str,
    page_number: u32,
    chunk_text: &'a str,
    score: f64,
    pdf_url: String,
}

/// The `sources` event of an answer being computed: every passage the model is given, in the
/// order its `[n]` count, each with a link to its page.
async fn passage_sources<'a>(
    deps: &QueryDeps,
    ready: &'a HashMap<String, Manual>,
    passages: &'a [RetrievedChunk],
) -> Result<Vec<PassageSource<'a>>, ApiError> {
    let mut sources = Vec::with_capacity(passages.len());
    for (index, passage) in passages.iter().enumerate() {
        let Some(manual) = ready.get(&passage.manual_id) else {
            continue;
        };
        let pdf_url = page_link(deps, manual, passage.page).await?;
        sources.push(PassageSource {
            number: index + 1,
            manual_id: &manual.id,
            manual_name: &manual.name,
            page_number: passage.page,
            chunk_text: &passage.text,
            score: (f64::from(passage.score) * 1000.0).round() / 1000.0,
            pdf_url,
        });
    }
    Ok(sources)
}

/// A cached answer, streamed at once: its sources (numbered as its `[n]`), the whole answer as
/// one `delta`, then `done`.
fn cached_events(question: Option<&String>, body: &crate::QueryAnswer) -> Response {
    let sources: Vec<serde_json::Value> = body
        .sources
        .iter()
        .enumerate()
        .map(|(index, source)| numbered(index + 1, source))
        .collect();
    let events: Vec<Event> = question
        .map(|question| event("question", &json!({ "question": question })))
        .into_iter()
        .chain([
            event("sources", &json!({ "sources": sources })),
            event("delta", &json!({ "text": body.answer })),
            event("done", body),
        ])
        .collect();
    event_stream(stream::iter(events))
}

fn numbered(number: usize, source: &SignedSource) -> serde_json::Value {
    let mut value = serde_json::to_value(source).unwrap_or_default();
    if let Some(fields) = value.as_object_mut() {
        fields.remove("cited");
        fields.insert("number".to_owned(), json!(number));
    }
    value
}

fn event_stream(events: impl Stream<Item = Event> + Send + 'static) -> Response {
    Sse::new(events.map(Ok::<_, Infallible>))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

fn event(name: &'static str, data: &impl Serialize) -> Event {
    let data = serde_json::to_string(data).unwrap_or_else(|error| {
        tracing::error!(%error, event = name, "an event could not be written");
        json!({ "error": "This part of the answer could not be written." }).to_string()
    });
    Event::default().event(name).data(data)
}

/// The answer being computed, after the first byte: owned, as it outlives the handler.
struct Answering {
    deps: QueryDeps,
    user: UserId,
    request_id: String,
    question: String,
    ready: HashMap<String, Manual>,
    narrowed: bool,
    passages: Vec<RetrievedChunk>,
    key: String,
    paying: Paying,
    started: Instant,
}

/// How the model's part ended.
enum Ending {
    Answered(Result<manuel_core::domain::Answer, PortError>),
    OutOfTime,
    ClientLeft,
}

impl Answering {
    async fn run(self, events: mpsc::Sender<Event>, deadline: Option<Deadline>) {
        let (ending, streamed) = self.stream_words(&events, deadline).await;
        let failure = match ending {
            Ending::Answered(Ok(answer)) => {
                self.finish(answer, streamed, &events).await;
                return;
            }
            Ending::Answered(Err(error)) => ApiError::from(error),
            Ending::OutOfTime => ApiError::from(PortError::Unavailable {
                service: "answer-model",
                message: "the answer was not finished before the invocation's deadline".into(),
            }),
            Ending::ClientLeft => {
                tracing::info!(streamed, "the client left while the answer streamed");
                self.paying.unfinished(streamed, None).await;
                return;
            }
        };
        // The status (200) is gone with the first byte: this line and the dependency metrics
        // are where a failed stream shows (MONITORING.md#streamed-answers).
        tracing::error!(code = failure.code(), error = %failure, streamed, "a streamed answer failed after its first byte");
        let body = failure.body();
        self.paying.unfinished(streamed, Some(failure)).await;
        let _ = events.send(event("error", &body)).await;
    }

    /// Runs the model, sending its words as `delta` events, until it ends, the deadline nears
    /// or the client leaves (then the model is dropped, which stops it). Also says whether any
    /// word was sent.
    async fn stream_words(
        &self,
        events: &mpsc::Sender<Event>,
        deadline: Option<Deadline>,
    ) -> (Ending, bool) {
        let (text, mut words): (AnswerText, _) = mpsc::channel(32);
        let model = self.deps.answer_model.answer_streaming(
            &self.user,
            &self.question,
            &self.passages,
            text,
        );
        tokio::pin!(model);
        let time_left = deadline.map_or(Duration::MAX, |deadline| {
            deadline.remaining(DEADLINE_MARGIN)
        });
        let out_of_time = tokio::time::sleep(time_left.min(Duration::from_secs(86_400)));
        tokio::pin!(out_of_time);
        let mut streamed = false;
        let ending = loop {
            tokio::select! {
                biased;
                Some(words) = words.recv() => {
                    if !streamed {
                        telemetry::record(
                            Metric::FirstWordLatency,
                            self.started.elapsed().as_secs_f64() * 1000.0,
                        );
                    }
                    streamed = true;
                    if events.send(event("delta", &json!({ "text": words }))).await.is_err() {
                        break Ending::ClientLeft;
                    }
                }
                answered = &mut model => break Ending::Answered(answered),
                () = &mut out_of_time => break Ending::OutOfTime,
            }
        };
        if matches!(ending, Ending::Answered(_)) {
            while let Ok(words) = words.try_recv() {
                streamed = true;
                if events
                    .send(event("delta", &json!({ "text": words })))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }
        (ending, streamed)
    }

    /// The model finished: the answer is shaped, paid for, cached and sent as `done`.
    async fn finish(
        self,
        answer: manuel_core::domain::Answer,
        streamed: bool,
        events: &mpsc::Sender<Event>,
    ) {
        let Answering {
            deps,
            user,
            request_id,
            question,
            ready,
            narrowed,
            passages,
            key,
            paying,
            started,
        } = self;
        let (input_tokens, output_tokens) = (answer.input_tokens, answer.output_tokens);
        let cached = match crate::shaped(answer, &passages, &ready) {
            Ok(cached) => cached,
            Err(error) => {
                let body = error.body();
                paying.unfinished(streamed, Some(error)).await;
                let _ = events.send(event("error", &body)).await;
                return;
            }
        };
        if !streamed {
            // A refusal (or a model that streams nothing): the client still reads deltas.
            let _ = events
                .send(event("delta", &json!({ "text": cached.answer })))
                .await;
        }
        let asked = Asked {
            deps: &deps,
            user: &user,
            request_id: &request_id,
            question: &question,
            ready: &ready,
            narrowed,
        };
        let billed = paying.commit(&asked, input_tokens, output_tokens).await;
        match serde_json::to_vec(&cached) {
            Ok(bytes) => deps.cache.put(EntryKind::Answer, &key, bytes).await,
            Err(error) => tracing::error!(%error, "a streamed answer could not be cached"),
        }
        let served = Served {
            question: question.clone(),
            cache_status: CacheStatus::Miss,
            billed,
            started,
            request_id: request_id.clone(),
        };
        let done = match served.body(&deps, &user, &ready, cached).await {
            Ok(body) => event("done", &body),
            Err(error) => event("error", &error.body()),
        };
        let _ = events.send(done).await;
    }
}

impl Paying {
    /// The answer was not finished: the place is given back if no word reached the client
    /// (and the failure was ours, or the client left), and kept once words were sent.
    async fn unfinished(self, streamed: bool, failure: Option<ApiError>) {
        if streamed {
            self.charge.keep();
            return;
        }
        match failure {
            Some(error) => {
                self.fail(error).await;
            }
            None => self.charge.refund().await,
        }
    }
}
