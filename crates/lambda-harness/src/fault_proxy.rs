//! A proxy in front of moto that fails chosen AWS calls: DynamoDB operations by their
//! `X-Amz-Target`, S3 requests by method and path. Everything else is forwarded untouched, so
//! a function binary pointed at it (`AWS_ENDPOINT_URL_<SERVICE>`) meets a real outage.
//!
//! It also gives Amazon Transcribe's batch jobs the time a real one takes
//! ([`FaultProxy::set_transcription_job_latency`]): moto completes a job on its second or third
//! `GetTranscriptionJob`, however soon; through the proxy a job reads `IN_PROGRESS` until its
//! latency has passed since `StartTranscriptionJob` (a short clip takes 10–30 s in AWS).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(Clone, Debug)]
enum Matcher {
    /// A JSON-protocol operation, e.g. `DynamoDB_20120810.TransactWriteItems`.
    Target(String),
    /// A REST request: method and how the path ends.
    Path { method: String, suffix: String },
}

#[derive(Clone, Debug)]
struct Rule {
    matcher: Matcher,
    status: u16,
    code: String,
    remaining: Option<u32>,
}

#[derive(Clone)]
struct Shared {
    upstream: String,
    client: reqwest::Client,
    rules: Arc<Mutex<Vec<Rule>>>,
    injected: Arc<Mutex<Vec<String>>>,
    /// How long a transcription job runs, and when each job the proxy saw started.
    job_latency: Arc<Mutex<Option<Duration>>>,
    jobs_started: Arc<Mutex<HashMap<String, Instant>>>,
}

pub struct FaultProxy {
    pub url: String,
    shared: Shared,
}

impl FaultProxy {
    pub async fn start(upstream: &str) -> FaultProxy {
        let shared = Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client: reqwest::Client::builder().no_proxy().build().unwrap(),
            rules: Arc::default(),
            injected: Arc::default(),
            job_latency: Arc::default(),
            jobs_started: Arc::default(),
        };
        let app = Router::new().fallback(forward).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        FaultProxy { url, shared }
    }

    /// Fails the JSON-protocol operation `target` with `status` and the error `code`, `times`
    /// times (`None`: until [`Self::heal`]).
    pub fn fail_target(&self, target: &str, status: u16, code: &str, times: Option<u32>) {
        self.add(Matcher::Target(target.to_owned()), status, code, times);
    }

    /// Fails `method` requests whose path ends with `suffix` (S3's REST protocol).
    pub fn fail_path_ending(
        &self,
        method: &str,
        suffix: &str,
        status: u16,
        code: &str,
        times: Option<u32>,
    ) {
        let matcher = Matcher::Path {
            method: method.to_owned(),
            suffix: suffix.to_owned(),
        };
        self.add(matcher, status, code, times);
    }

    fn add(&self, matcher: Matcher, status: u16, code: &str, remaining: Option<u32>) {
        self.shared.rules.lock().unwrap().push(Rule {
            matcher,
            status,
            code: code.to_owned(),
            remaining,
        });
    }

    /// Transcription jobs complete `latency` after they were started, not before.
    pub fn set_transcription_job_latency(&self, latency: Duration) {
        *self.shared.job_latency.lock().unwrap() = Some(latency);
    }

    pub fn heal(&self) {
        self.shared.rules.lock().unwrap().clear();
    }

    /// The requests failed so far (target or `METHOD path`).
    pub fn injected(&self) -> Vec<String> {
        self.shared.injected.lock().unwrap().clone()
    }
}

async fn forward(State(shared): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let path = parts.uri.path().to_owned();
    let method = parts.method.as_str().to_owned();
    let fault = {
        let mut rules = shared.rules.lock().unwrap();
        rules
            .iter_mut()
            .find(|rule| {
                let matches = match &rule.matcher {
                    Matcher::Target(wanted) => *wanted == target,
                    Matcher::Path {
                        method: wanted,
                        suffix,
                    } => *wanted == method && path.ends_with(suffix.as_str()),
                };
                matches && rule.remaining.is_none_or(|left| left > 0)
            })
            .map(|rule| {
                if let Some(left) = rule.remaining.as_mut() {
                    *left -= 1;
                }
                rule.clone()
            })
    };
    if let Some(rule) = fault {
        let what = match &rule.matcher {
            Matcher::Target(target) => target.clone(),
            Matcher::Path { .. } => format!("{method} {path}"),
        };
        shared.injected.lock().unwrap().push(what);
        let status = StatusCode::from_u16(rule.status).unwrap();
        return match rule.matcher {
            Matcher::Target(_) => (
                status,
                [("content-type", "application/x-amz-json-1.0")],
                format!(
                    r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{}","message":"injected"}}"#,
                    rule.code
                ),
            )
                .into_response(),
            Matcher::Path { .. } => (
                status,
                [("content-type", "application/xml")],
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{}</Code><Message>injected</Message></Error>",
                    rule.code
                ),
            )
                .into_response(),
        };
    }
    let body: Bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let job_name = (target.starts_with("Transcribe."))
        .then(|| serde_json::from_slice::<serde_json::Value>(&body).ok())
        .flatten()
        .and_then(|request| request["TranscriptionJobName"].as_str().map(str::to_owned));
    if let (Some(job), "Transcribe.StartTranscriptionJob") = (&job_name, target.as_str()) {
        shared
            .jobs_started
            .lock()
            .unwrap()
            .insert(job.clone(), Instant::now());
    }
    let still_running = match (&job_name, target.as_str()) {
        (Some(job), "Transcribe.GetTranscriptionJob") => {
            let latency = *shared.job_latency.lock().unwrap();
            let started = shared.jobs_started.lock().unwrap().get(job).copied();
            matches!((latency, started), (Some(latency), Some(started)) if started.elapsed() < latency)
        }
        _ => false,
    };
    let url = format!(
        "{}{}",
        shared.upstream,
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    );
    // The Host header stays as the client signed it: an IAM-enforcing moto checks signatures.
    let headers = parts.headers.clone();
    let upstream = shared
        .client
        .request(parts.method.clone(), url)
        .headers(headers)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = upstream.status();
    let mut response_headers = HeaderMap::new();
    for (name, value) in upstream.headers() {
        if name != "transfer-encoding" && name != "content-length" {
            response_headers.insert(
                HeaderName::from_bytes(name.as_str().as_bytes()).unwrap(),
                HeaderValue::from_bytes(value.as_bytes()).unwrap(),
            );
        }
    }
    let mut bytes = upstream.bytes().await.unwrap();
    if still_running
        && let Ok(mut job) = serde_json::from_slice::<serde_json::Value>(&bytes)
        && job["TranscriptionJob"].is_object()
    {
        job["TranscriptionJob"]["TranscriptionJobStatus"] = serde_json::json!("IN_PROGRESS");
        if let Some(fields) = job["TranscriptionJob"].as_object_mut() {
            fields.remove("Transcript");
            fields.remove("CompletionTime");
        }
        bytes = Bytes::from(job.to_string());
    }
    (status, response_headers, bytes).into_response()
}
