//! A recording stand-in for the three Bedrock APIs the functions call (REST-JSON, as the SDK
//! speaks it): knowledge-base retrieval that honours the `user_id` filter it is given,
//! Converse that answers from the first passage with a citation, and per-document ingestion
//! that reports documents indexed. Every request is kept for assertions.
//!
//! Latency as AWS shows it: Retrieve answers after 0.6 s (the p50 of a knowledge-base
//! retrieval) and Converse after 2.5 s (a short non-streaming answer), both settable
//! ([`FakeBedrock::set_converse_latency`], [`FakeBedrock::set_retrieve_latency`]). Like a
//! non-streaming Converse, the fake sends nothing, not even headers, before its delay is over;
//! a caller that gives up earlier gets no answer, and the call still counts (Bedrock would
//! still have run, and billed, the model).
//!
//! ConverseStream streams like Bedrock: the response and `messageStart` at once, the first
//! token after 0.8 s, then 40 tokens a second (a token is a word here), then `messageStop` and
//! the `metadata` with the token counts ([`FakeBedrock::set_stream_pace`]); the answer can be
//! padded to any length ([`FakeBedrock::set_streamed_answer_tokens`]) or broken mid-stream
//! ([`FakeBedrock::break_stream_after`]). A caller that closes the stream stops the generation:
//! [`FakeBedrock::streamed_tokens`] counts what was sent.
//!
//! Retrieval answers as the knowledge base's store does: on S3 Vectors (the default,
//! [`FakeBedrock::set_vector_store`]) a HYBRID search is a `ValidationException`.
//!
//! What it forgives: it checks no signature, and IAM permissions only once told the roles
//! ([`FakeBedrock::authorize_with`]); it bills nothing, answers every model id,
//! ingests instantly (a document is `INDEXED` on its first status read, where Bedrock takes
//! tens of seconds; the status can be set with [`FakeBedrock::set_document_status`]), needs no
//! first sync of the data source, and throttles only when told to ([`FakeBedrock::fail`]:
//! injected errors are answered at once, as a throttled request is).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post, put};
use bytes::Bytes;
use serde_json::{Value, json};

/// A passage the fake knowledge base can return.
#[derive(Clone, Debug)]
pub struct KbPassage {
    pub user_id: String,
    pub manual_id: String,
    pub page: u32,
    pub text: String,
}

/// Access key id → the statements of its function's role.
type Roles = std::collections::HashMap<String, Vec<Value>>;

#[derive(Clone)]
struct Shared {
    passages: Arc<Mutex<Vec<KbPassage>>>,
    requests: Arc<Mutex<Vec<(String, Value)>>>,
    ingested: Arc<Mutex<HashSet<String>>>,
    faults: Arc<Mutex<Vec<Fault>>>,
    latency: Arc<Mutex<Latency>>,
    /// The status every document reports once ingested (`INDEXED` unless set).
    document_status: Arc<Mutex<&'static str>>,
    /// Access key id → the statements of the role its function has; `None`: no IAM checks.
    roles: Arc<Mutex<Option<Roles>>>,
    /// Requests refused for want of a permission: (path, the check that failed).
    denied: Arc<Mutex<Vec<(String, String)>>>,
    stream: Arc<Mutex<StreamPace>>,
    /// The knowledge base's vector store: S3 Vectors refuses a HYBRID search.
    vector_store: Arc<Mutex<String>>,
    /// Tokens ConverseStream sent, over all calls.
    streamed_tokens: Arc<std::sync::atomic::AtomicUsize>,
}

/// How ConverseStream answers.
#[derive(Clone, Copy, Debug)]
struct StreamPace {
    first_token: Duration,
    tokens_per_second: f64,
    /// The answer is padded with words to this many tokens.
    answer_tokens: Option<usize>,
    /// A `modelStreamErrorException` follows this many tokens.
    break_after: Option<usize>,
}

impl Default for StreamPace {
    fn default() -> Self {
        Self {
            first_token: Duration::from_millis(800),
            tokens_per_second: 40.0,
            answer_tokens: None,
            break_after: None,
        }
    }
}

/// How long each API takes to answer.
#[derive(Clone, Copy, Debug)]
struct Latency {
    retrieve: Duration,
    converse: Duration,
}

impl Default for Latency {
    fn default() -> Self {
        Self {
            retrieve: Duration::from_millis(600),
            converse: Duration::from_millis(2500),
        }
    }
}

impl Default for Shared {
    fn default() -> Self {
        Self {
            passages: Arc::default(),
            requests: Arc::default(),
            ingested: Arc::default(),
            faults: Arc::default(),
            latency: Arc::default(),
            document_status: Arc::new(Mutex::new("INDEXED")),
            roles: Arc::default(),
            denied: Arc::default(),
            stream: Arc::default(),
            streamed_tokens: Arc::default(),
            vector_store: Arc::new(Mutex::new("S3Vectors".to_owned())),
        }
    }
}

/// An error the fake answers with instead of serving, for requests whose path contains `path`.
#[derive(Clone, Debug)]
struct Fault {
    path: String,
    status: u16,
    code: String,
    /// How many more requests get it; `None` for all of them.
    remaining: Option<u32>,
}

pub struct FakeBedrock {
    pub url: String,
    shared: Shared,
}

impl FakeBedrock {
    pub async fn start() -> FakeBedrock {
        let shared = Shared::default();
        let app = Router::new()
            .route("/knowledgebases/{kb}/retrieve", post(retrieve))
            .route("/model/{model}/converse", post(converse))
            .route("/model/{model}/converse-stream", post(converse_stream))
            .route(
                "/knowledgebases/{kb}/datasources/{ds}/documents",
                put(ingest),
            )
            .route(
                "/knowledgebases/{kb}/datasources/{ds}/documents/getDocuments",
                post(get_documents),
            )
            .route(
                "/knowledgebases/{kb}/datasources/{ds}/documents/deleteDocuments",
                post(delete_documents),
            )
            .route("/jwks.json", get(|| async { Json(json!({"keys": []})) }))
            .layer(axum::middleware::from_fn_with_state(
                shared.clone(),
                inject_faults,
            ))
            .layer(axum::middleware::from_fn_with_state(
                shared.clone(),
                authorize,
            ))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeBedrock { url, shared }
    }

    pub fn add_passage(&self, passage: KbPassage) {
        self.shared.passages.lock().unwrap().push(passage);
    }

    /// The next `times` requests whose path contains `path` fail with `status` and the AWS
    /// error `code` (e.g. 429 `ThrottlingException`); `None` fails them all until [`Self::heal`].
    pub fn fail(&self, path: &str, status: u16, code: &str, times: Option<u32>) {
        self.shared.faults.lock().unwrap().push(Fault {
            path: path.to_owned(),
            status,
            code: code.to_owned(),
            remaining: times,
        });
    }

    /// Converse answers after `delay` (2.5 s unless set).
    pub fn set_converse_latency(&self, delay: Duration) {
        self.shared.latency.lock().unwrap().converse = delay;
    }

    /// Retrieve answers after `delay` (0.6 s unless set).
    /// The knowledge base's vector store (`S3Vectors`, the default, or `OpenSearchServerless`).
    pub fn set_vector_store(&self, store: &str) {
        *self.shared.vector_store.lock().unwrap() = store.to_owned();
    }

    /// ConverseStream's first token after `first_token`, then `tokens_per_second`.
    pub fn set_stream_pace(&self, first_token: Duration, tokens_per_second: f64) {
        let mut pace = self.shared.stream.lock().unwrap();
        pace.first_token = first_token;
        pace.tokens_per_second = tokens_per_second;
    }

    /// ConverseStream answers with `tokens` tokens (the cited passage, then filler words).
    pub fn set_streamed_answer_tokens(&self, tokens: usize) {
        self.shared.stream.lock().unwrap().answer_tokens = Some(tokens);
    }

    /// ConverseStream fails with a `modelStreamErrorException` after `tokens` tokens.
    pub fn break_stream_after(&self, tokens: usize) {
        self.shared.stream.lock().unwrap().break_after = Some(tokens);
    }

    /// The tokens ConverseStream has sent, over all calls.
    pub fn streamed_tokens(&self) -> usize {
        self.shared
            .streamed_tokens
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn set_retrieve_latency(&self, delay: Duration) {
        self.shared.latency.lock().unwrap().retrieve = delay;
    }

    /// The status ingested documents report from now on (`INDEXED`, `PARTIALLY_INDEXED`, …).
    pub fn set_document_status(&self, status: &'static str) {
        *self.shared.document_status.lock().unwrap() = status;
    }

    /// From now on every Bedrock request must be signed with one of these access keys and be
    /// allowed by the statements of that key's role, as Bedrock's IAM check would; otherwise it
    /// is refused with 403 `AccessDeniedException` (see [`crate::iam`]).
    pub fn authorize_with(&self, roles: Roles) {
        *self.shared.roles.lock().unwrap() = Some(roles);
    }

    /// Requests refused for want of a permission so far: (path, what was missing).
    pub fn denied(&self) -> Vec<(String, String)> {
        self.shared.denied.lock().unwrap().clone()
    }

    /// Removes every fault.
    pub fn heal(&self) {
        self.shared.faults.lock().unwrap().clear();
    }

    /// Every request so far whose path contains `fragment`: (path, JSON body).
    pub fn requests(&self, fragment: &str) -> Vec<(String, Value)> {
        self.shared
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|(path, _)| path.contains(fragment))
            .cloned()
            .collect()
    }

    /// The endpoint variables that send the SDK's Bedrock calls here.
    pub fn env(&self) -> Vec<(String, String)> {
        ["BEDROCK_AGENT", "BEDROCK_AGENT_RUNTIME", "BEDROCK_RUNTIME"]
            .iter()
            .map(|service| (format!("AWS_ENDPOINT_URL_{service}"), self.url.clone()))
            .collect()
    }
}

/// Refuses a Bedrock request its signer's role does not allow (when roles are set).
async fn authorize(
    State(shared): State<Shared>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let path = request.uri().path().to_owned();
    let refusal = {
        let roles = shared.roles.lock().unwrap();
        match (
            roles.as_ref(),
            crate::iam::bedrock_checks(request.method().as_str(), &path),
        ) {
            (Some(roles), Some(checks)) => {
                let key = request
                    .headers()
                    .get("authorization")
                    .and_then(|value| value.to_str().ok())
                    .and_then(crate::iam::access_key)
                    .unwrap_or_default();
                match roles.get(key) {
                    None => Some(format!("unknown access key {key:?}")),
                    Some(statements) => checks
                        .iter()
                        .find(|check| !crate::iam::allows(statements, check))
                        .map(|check| format!("{} on {}", check.action, check.resource)),
                }
            }
            _ => None,
        }
    };
    let Some(missing) = refusal else {
        return next.run(request).await;
    };
    shared.denied.lock().unwrap().push((path, missing.clone()));
    (
        axum::http::StatusCode::FORBIDDEN,
        [("x-amzn-ErrorType", "AccessDeniedException")],
        Json(json!({"message": format!("not authorized to perform {missing}")})),
    )
        .into_response()
}

/// Answers with the first matching fault, as a Bedrock service error the SDK can classify;
/// the request is recorded either way.
async fn inject_faults(
    State(shared): State<Shared>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let path = request.uri().path().to_owned();
    let fault = {
        let mut faults = shared.faults.lock().unwrap();
        let found = faults.iter_mut().find(|fault| {
            path.contains(&fault.path) && fault.remaining.is_none_or(|left| left > 0)
        });
        found.map(|fault| {
            if let Some(left) = fault.remaining.as_mut() {
                *left -= 1;
            }
            fault.clone()
        })
    };
    let Some(fault) = fault else {
        return next.run(request).await;
    };
    record(&shared, path, &json!({"fault": fault.code}));
    let status = axum::http::StatusCode::from_u16(fault.status).unwrap();
    (
        status,
        [("x-amzn-ErrorType", fault.code.clone())],
        Json(json!({"message": format!("injected {}", fault.code)})),
    )
        .into_response()
}

fn record(shared: &Shared, path: String, body: &Value) {
    shared.requests.lock().unwrap().push((path, body.clone()));
}

/// The user the request's filter names, if the filter is an `equals user_id` alone or inside
/// `andAll`. Without one the fake returns nothing, like an index with nothing to match.
fn filtered_user(filter: Option<&Value>) -> Option<(String, Option<Vec<String>>)> {
    let filter = filter?;
    let equals_user = |f: &Value| {
        let equals = f.get("equals")?;
        (equals.get("key")? == "user_id")
            .then(|| equals.get("value")?.as_str().map(str::to_owned))?
    };
    if let Some(user) = equals_user(filter) {
        return Some((user, None));
    }
    let parts = filter.get("andAll")?.as_array()?;
    let user = parts.iter().find_map(equals_user)?;
    let manuals = parts.iter().find_map(|f| {
        let listed = f.get("in")?;
        (listed.get("key")? == "manual_id").then(|| {
            listed.get("value")?.as_array().map(|ids| {
                ids.iter()
                    .filter_map(|id| id.as_str().map(str::to_owned))
                    .collect::<Vec<_>>()
            })
        })?
    });
    Some((user, manuals))
}

async fn retrieve(
    State(shared): State<Shared>,
    Path(kb): Path<String>,
    Json(body): Json<Value>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    record(&shared, format!("/knowledgebases/{kb}/retrieve"), &body);
    let search = body
        .pointer("/retrievalConfiguration/vectorSearchConfiguration/overrideSearchType")
        .and_then(Value::as_str);
    if *shared.vector_store.lock().unwrap() == "S3Vectors" && search == Some("HYBRID") {
        // Bedrock's answer: S3 Vectors has no keyword index.
        return (
            axum::http::StatusCode::BAD_REQUEST,
            [("x-amzn-ErrorType", "ValidationException")],
            Json(json!({"message": "HYBRID search type is not supported for knowledge bases with S3 vectors"})),
        )
            .into_response();
    }
    let delay = shared.latency.lock().unwrap().retrieve;
    tokio::time::sleep(delay).await;
    let filter = body.pointer("/retrievalConfiguration/vectorSearchConfiguration/filter");
    let results: Vec<Value> = match filtered_user(filter) {
        None => Vec::new(),
        Some((user, manuals)) => shared
            .passages
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.user_id == user)
            .filter(|p| manuals.as_ref().is_none_or(|ids| ids.contains(&p.manual_id)))
            .map(|p| {
                json!({
                    "content": {"text": p.text, "type": "TEXT"},
                    "location": {"type": "S3", "s3Location": {"uri": format!("s3://manuals/manuals/{}/{}.pdf", p.user_id, p.manual_id)}},
                    "score": 0.75,
                    "metadata": {
                        "user_id": p.user_id,
                        "manual_id": p.manual_id,
                        "x-amz-bedrock-kb-document-page-number": p.page,
                    }
                })
            })
            .collect(),
    };
    Json(json!({"retrievalResults": results})).into_response()
}

/// The answer to a Converse request: the first passage's text, cited (enough to show the
/// answer is built from the context), or the not-found marker.
fn answer_to(body: &Value) -> String {
    let context = body
        .pointer("/messages/0/content/0/text")
        .and_then(Value::as_str)
        .unwrap_or("");
    let first = context
        .split("\n\n")
        .next()
        .and_then(|block| block.lines().nth(2))
        .unwrap_or("");
    if first.is_empty() {
        "NOT_FOUND".to_owned()
    } else {
        format!("{first} [1]")
    }
}

async fn converse(
    State(shared): State<Shared>,
    Path(model): Path<String>,
    Json(body): Json<Value>,
) -> Json<Value> {
    record(&shared, format!("/model/{model}/converse"), &body);
    let delay = shared.latency.lock().unwrap().converse;
    tokio::time::sleep(delay).await;
    let text = answer_to(&body);
    Json(json!({
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 321, "outputTokens": 12, "totalTokens": 333},
        "metrics": {"latencyMs": delay.as_millis() as u64}
    }))
}

fn event_message(kind: &'static str, message_type: &'static str, payload: &Value) -> Bytes {
    use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
    let string = |value: &str| HeaderValue::String(value.to_owned().into());
    let type_header = if message_type == "event" {
        ":event-type"
    } else {
        ":exception-type"
    };
    let message = Message::new(payload.to_string().into_bytes())
        .add_header(Header::new(":message-type", string(message_type)))
        .add_header(Header::new(type_header, string(kind)))
        .add_header(Header::new(":content-type", string("application/json")));
    let mut bytes = Vec::new();
    aws_smithy_eventstream::frame::write_message_to(&message, &mut bytes).unwrap();
    Bytes::from(bytes)
}

async fn converse_stream(
    State(shared): State<Shared>,
    Path(model): Path<String>,
    Json(body): Json<Value>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    record(&shared, format!("/model/{model}/converse-stream"), &body);
    let pace = *shared.stream.lock().unwrap();
    let answer = answer_to(&body);
    let mut tokens: Vec<String> = answer.split_inclusive(' ').map(str::to_owned).collect();
    if answer != "NOT_FOUND"
        && let Some(wanted) = pace.answer_tokens
    {
        while tokens.len() < wanted {
            tokens.push(format!(" filler{}", tokens.len()));
        }
    }
    let (frames, received) = tokio::sync::mpsc::channel::<Bytes>(4);
    let counter = shared.streamed_tokens.clone();
    tokio::spawn(async move {
        let started = std::time::Instant::now();
        let _ = frames
            .send(event_message(
                "messageStart",
                "event",
                &json!({"role": "assistant"}),
            ))
            .await;
        tokio::time::sleep(pace.first_token).await;
        let gap = Duration::from_secs_f64(1.0 / pace.tokens_per_second.max(0.001));
        for (sent, token) in tokens.iter().enumerate() {
            if sent > 0 {
                tokio::time::sleep(gap).await;
            }
            let delta = json!({"contentBlockIndex": 0, "delta": {"text": token}});
            if frames
                .send(event_message("contentBlockDelta", "event", &delta))
                .await
                .is_err()
            {
                // The caller closed the stream: Bedrock stops generating.
                return;
            }
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if pace.break_after == Some(sent + 1) {
                let error = json!({"message": "injected: the model's stream failed"});
                let _ = frames
                    .send(event_message(
                        "modelStreamErrorException",
                        "exception",
                        &error,
                    ))
                    .await;
                return;
            }
        }
        let output_tokens = tokens.len();
        for (kind, payload) in [
            ("contentBlockStop", json!({"contentBlockIndex": 0})),
            ("messageStop", json!({"stopReason": "end_turn"})),
            (
                "metadata",
                json!({
                    "usage": {"inputTokens": 321, "outputTokens": output_tokens, "totalTokens": 321 + output_tokens},
                    "metrics": {"latencyMs": started.elapsed().as_millis() as u64}
                }),
            ),
        ] {
            let _ = frames.send(event_message(kind, "event", &payload)).await;
        }
    });
    let body = futures_util::stream::unfold(received, |mut received| async move {
        received
            .recv()
            .await
            .map(|frame| (Ok::<_, std::convert::Infallible>(frame), received))
    });
    (
        axum::http::StatusCode::OK,
        [("content-type", "application/vnd.amazon.eventstream")],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}

fn document_uris(body: &Value, field: &str) -> Vec<String> {
    body.get(field)
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|item| {
                    item.pointer("/content/s3/s3Location/uri")
                        .or_else(|| item.pointer("/s3/uri"))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn details(uris: &[String], status: impl Fn(&str) -> &'static str) -> Value {
    json!({"documentDetails": uris.iter().map(|uri| json!({
        "knowledgeBaseId": "KB", "dataSourceId": "DS", "status": status(uri),
        "identifier": {"dataSourceType": "S3", "s3": {"uri": uri}}
    })).collect::<Vec<_>>()})
}

async fn ingest(
    State(shared): State<Shared>,
    Path((kb, ds)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Json<Value> {
    record(
        &shared,
        format!("/knowledgebases/{kb}/datasources/{ds}/documents"),
        &body,
    );
    let uris = document_uris(&body, "documents");
    shared.ingested.lock().unwrap().extend(uris.iter().cloned());
    Json(details(&uris, |_| "STARTING"))
}

async fn get_documents(
    State(shared): State<Shared>,
    Path((kb, ds)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Json<Value> {
    record(
        &shared,
        format!("/knowledgebases/{kb}/datasources/{ds}/documents/getDocuments"),
        &body,
    );
    let uris = document_uris(&body, "documentIdentifiers");
    let ingested = shared.ingested.lock().unwrap().clone();
    let known: Vec<String> = uris
        .into_iter()
        .filter(|uri| ingested.contains(uri))
        .collect();
    let status = *shared.document_status.lock().unwrap();
    Json(details(&known, |_| status))
}

async fn delete_documents(
    State(shared): State<Shared>,
    Path((kb, ds)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Json<Value> {
    record(
        &shared,
        format!("/knowledgebases/{kb}/datasources/{ds}/documents/deleteDocuments"),
        &body,
    );
    let uris = document_uris(&body, "documentIdentifiers");
    for uri in &uris {
        shared.ingested.lock().unwrap().remove(uri);
    }
    Json(details(&uris, |_| "DELETING"))
}
