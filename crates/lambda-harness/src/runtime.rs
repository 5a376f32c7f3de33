//! A local Lambda Runtime API (2018-06-01) serving one function process.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};

/// What an invocation ended with.
#[derive(Debug)]
pub enum Invocation {
    Response(Value),
    Error(Value),
    /// A response in streaming mode (`Lambda-Runtime-Function-Response-Mode: streaming`), as
    /// soon as its prelude arrived; the body follows in [`Streamed::parts`].
    Streamed(Streamed),
}

impl Invocation {
    pub fn response(self) -> Value {
        match self {
            Self::Response(value) => value,
            Self::Error(error) => panic!("the function reported an error: {error}"),
            Self::Streamed(streamed) => {
                panic!("the function streamed its response: {}", streamed.prelude)
            }
        }
    }

    pub fn streamed(self) -> Streamed {
        match self {
            Self::Streamed(streamed) => streamed,
            other => panic!("the function did not stream its response: {other:?}"),
        }
    }
}

/// A streamed response: the prelude API Gateway reads (`statusCode`, `headers`, `cookies`),
/// then the body as the function writes it.
#[derive(Debug)]
pub struct Streamed {
    pub prelude: Value,
    parts: mpsc::UnboundedReceiver<Part>,
    /// When Lambda stops the function, whatever it is still writing.
    deadline: tokio::time::Instant,
}

/// A piece of a streamed body, or how it ended.
#[derive(Debug)]
pub enum Part {
    Data(bytes::Bytes),
    /// The function reported an error in the stream's trailers (`Lambda-Runtime-Function-Error-Type`).
    Failed(String),
    /// The function finished its response.
    End,
}

/// How a streamed body ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    Finished,
    Failed(String),
    /// The function's timeout passed first: Lambda stopped it mid-stream.
    CutOff,
}

impl Streamed {
    /// The next piece of the body, `None` once it ended or Lambda's deadline passed.
    pub async fn next(&mut self) -> Part {
        match tokio::time::timeout_at(self.deadline, self.parts.recv()).await {
            Ok(Some(part)) => part,
            Ok(None) => Part::End,
            Err(_) => Part::Failed("cut off at the function's timeout".to_owned()),
        }
    }

    /// Reads the whole body, calling `arrived` with each piece (and the time since `since`)
    /// as it comes; says how it ended.
    pub async fn read(
        mut self,
        since: Instant,
        mut arrived: impl FnMut(&[u8], Duration),
    ) -> Ending {
        loop {
            match tokio::time::timeout_at(self.deadline, self.parts.recv()).await {
                Ok(Some(Part::Data(bytes))) => arrived(&bytes, since.elapsed()),
                Ok(Some(Part::Failed(error))) => return Ending::Failed(error),
                Ok(Some(Part::End) | None) => return Ending::Finished,
                Err(_) => return Ending::CutOff,
            }
        }
    }
}

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Invocation>>>>;

/// One invocation waiting for the function: its id, its event, and its deadline (ms since the
/// epoch), fixed when it was invoked, as Lambda fixes it.
type Queued = (String, Value, u128);

#[derive(Clone)]
struct RuntimeState {
    events: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Queued>>>,
    pending: Pending,
    init_error: Arc<Mutex<Option<Value>>>,
    /// When the function first asked for an event: the end of its init.
    first_poll: Arc<Mutex<Option<Instant>>>,
    /// Invocation id → when Lambda stops it (for streamed responses, which outlive `invoke`).
    deadlines: Arc<Mutex<HashMap<String, tokio::time::Instant>>>,
}

/// A function process behind a local Runtime API.
pub struct Lambda {
    child: Child,
    events: mpsc::UnboundedSender<Queued>,
    /// The function's configured timeout: each invocation's deadline is this far after it
    /// starts, and an answer after it counts as none (Lambda would have stopped the function).
    timeout: Duration,
    pending: Pending,
    init_error: Arc<Mutex<Option<Value>>>,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
    spawned: Instant,
    first_poll: Arc<Mutex<Option<Instant>>>,
    deadlines: Arc<Mutex<HashMap<String, tokio::time::Instant>>>,
}

impl Lambda {
    /// Starts the Runtime API and `binary` with `env` (plus the variables Lambda always sets),
    /// with a 30 s timeout.
    pub async fn start(binary: &Path, function_name: &str, env: &[(String, String)]) -> Lambda {
        Self::start_with_timeout(binary, function_name, env, Duration::from_secs(30)).await
    }

    /// [`Self::start`] for a function whose configured timeout is `timeout`.
    pub async fn start_with_timeout(
        binary: &Path,
        function_name: &str,
        env: &[(String, String)],
        timeout: Duration,
    ) -> Lambda {
        let (events, receiver) = mpsc::unbounded_channel();
        let state = RuntimeState {
            events: Arc::new(tokio::sync::Mutex::new(receiver)),
            pending: Arc::default(),
            init_error: Arc::default(),
            first_poll: Arc::default(),
            deadlines: Arc::default(),
        };
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(respond),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(fail))
            .route("/2018-06-01/runtime/init/error", post(init_failed))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });

        let mut command = Command::new(binary);
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", address.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", function_name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
            .env(
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{function_name}"),
            )
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (name, value) in env {
            command.env(name, value);
        }
        let spawned = Instant::now();
        let mut child = command.spawn().unwrap();
        let (stdout, stdout_reader) = collect_lines(child.stdout.take().unwrap());
        let (stderr, stderr_reader) = collect_lines(child.stderr.take().unwrap());
        Lambda {
            child,
            events,
            timeout,
            pending: state.pending,
            init_error: state.init_error,
            stdout,
            stderr,
            readers: vec![stdout_reader, stderr_reader],
            spawned,
            first_poll: state.first_poll,
            deadlines: state.deadlines,
        }
    }

    /// Spawn → the function's first request for an event: its init, as Lambda's `Init
    /// Duration` counts it (`None` until it asked).
    pub fn init_duration(&self) -> Option<Duration> {
        self.first_poll
            .lock()
            .unwrap()
            .map(|polled| polled.duration_since(self.spawned))
    }

    /// Sends one event and waits for the function's answer, at most until the invocation's
    /// deadline (its timeout after now); no answer by then fails the test, as Lambda would
    /// have stopped the function and API Gateway answered 502/504 instead.
    pub async fn invoke(&mut self, event: Value) -> Invocation {
        let id = uuid::Uuid::new_v4().to_string();
        let (sender, receiver) = oneshot::channel();
        self.pending.lock().unwrap().insert(id.clone(), sender);
        let deadline = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|now| (now + self.timeout).as_millis())
            .unwrap_or_default();
        self.deadlines
            .lock()
            .unwrap()
            .insert(id.clone(), tokio::time::Instant::now() + self.timeout);
        self.events.send((id, event, deadline)).unwrap();
        let timeout = self.timeout;
        tokio::select! {
            answer = tokio::time::timeout(timeout, receiver) => match answer {
                Ok(Ok(invocation)) => invocation,
                _ => panic!(
                    "no answer within the function's {timeout:?} timeout; stderr:\n{}",
                    self.stderr().join("\n")
                ),
            },
            status = self.child.wait() => panic!(
                "the function exited ({status:?}) before answering; init error: {:?}; stderr:\n{}",
                self.init_error.lock().unwrap().clone(),
                self.stderr().join("\n")
            ),
        }
    }

    /// Waits for the process to exit (for init failures) and for everything it printed to be
    /// read; returns its exit code.
    pub async fn exit_code(&mut self) -> Option<i32> {
        let code = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .ok()
            .and_then(Result::ok)
            .and_then(|status| status.code());
        for reader in self.readers.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
        }
        code
    }

    /// The function process's id (while it runs), e.g. to read its memory use from `/proc`.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub fn init_error(&self) -> Option<Value> {
        self.init_error.lock().unwrap().clone()
    }

    /// Lines the function printed on stdout so far (EMF metrics go there).
    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// Lines the function printed on stderr so far (JSON logs).
    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }
}

fn collect_lines<R: tokio::io::AsyncRead + Unpin + Send + 'static>(
    reader: R,
) -> (Arc<Mutex<Vec<String>>>, tokio::task::JoinHandle<()>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    let reading = tokio::spawn(async move {
        let mut reader = BufReader::new(reader).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            sink.lock().unwrap().push(line);
        }
    });
    (lines, reading)
}

async fn next(State(state): State<RuntimeState>) -> Response {
    state
        .first_poll
        .lock()
        .unwrap()
        .get_or_insert_with(Instant::now);
    let Some((id, event, deadline)) = state.events.lock().await.recv().await else {
        return StatusCode::GONE.into_response();
    };
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: String| {
        headers.insert(name, HeaderValue::from_str(&value).unwrap());
    };
    set("lambda-runtime-aws-request-id", id);
    set("lambda-runtime-deadline-ms", deadline.to_string());
    set(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:123456789012:function:manuel-test".to_owned(),
    );
    set(
        "lambda-runtime-trace-id",
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1".to_owned(),
    );
    (headers, axum::Json(event)).into_response()
}

async fn respond(
    State(state): State<RuntimeState>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> StatusCode {
    let streaming = headers
        .get("lambda-runtime-function-response-mode")
        .is_some_and(|mode| mode == "streaming");
    if streaming {
        return stream(&state, &id, body).await;
    }
    // A buffered response is at most 6 MB.
    match axum::body::to_bytes(body, 6 * 1024 * 1024).await {
        Ok(body) => finish(&state, &id, Invocation::Response(parse(&body))),
        Err(error) => finish(
            &state,
            &id,
            Invocation::Error(Value::String(format!(
                "the response could not be read: {error}"
            ))),
        ),
    }
}

/// The streaming response protocol: a JSON prelude, eight NUL bytes, the body; an error is
/// reported in the trailers. The invocation is answered once the prelude arrived, and the body
/// handed on piece by piece as it comes.
async fn stream(state: &RuntimeState, id: &str, body: axum::body::Body) -> StatusCode {
    use http_body_util::BodyExt;
    const DELIMITER: [u8; 8] = [0; 8];
    let (parts, received) = mpsc::unbounded_channel();
    let mut received = Some(received);
    let mut head: Vec<u8> = Vec::new();
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(error) => {
                let _ = parts.send(Part::Failed(format!("the stream broke: {error}")));
                break;
            }
        };
        let frame = match frame.into_data() {
            Ok(data) => {
                if received.is_none() {
                    if parts.send(Part::Data(data)).is_err() {
                        // The client left: the connection to the function is closed, as
                        // API Gateway closes it, and the function's writes fail.
                        return StatusCode::ACCEPTED;
                    }
                    continue;
                }
                head.extend_from_slice(&data);
                let Some(at) = head.windows(8).position(|window| window == DELIMITER) else {
                    continue;
                };
                let prelude = parse(&head[..at]);
                let rest = bytes::Bytes::copy_from_slice(&head[at + 8..]);
                if !rest.is_empty() {
                    let _ = parts.send(Part::Data(rest));
                }
                let deadline = state.deadlines.lock().unwrap().remove(id);
                let streamed = Streamed {
                    prelude,
                    parts: received.take().unwrap(),
                    deadline: deadline
                        .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(900)),
                };
                finish(state, id, Invocation::Streamed(streamed));
                continue;
            }
            Err(frame) => frame,
        };
        if let Ok(trailers) = frame.into_trailers()
            && let Some(kind) = trailers.get("lambda-runtime-function-error-type")
        {
            let _ = parts.send(Part::Failed(kind.to_str().unwrap_or("?").to_owned()));
        }
    }
    if received.is_some() {
        finish(
            state,
            id,
            Invocation::Error(Value::String(format!(
                "a streamed response without a prelude: {}",
                String::from_utf8_lossy(&head)
            ))),
        );
    }
    let _ = parts.send(Part::End);
    StatusCode::ACCEPTED
}

async fn fail(
    State(state): State<RuntimeState>,
    UrlPath(id): UrlPath<String>,
    body: axum::body::Bytes,
) -> StatusCode {
    finish(&state, &id, Invocation::Error(parse(&body)))
}

async fn init_failed(State(state): State<RuntimeState>, body: axum::body::Bytes) -> StatusCode {
    *state.init_error.lock().unwrap() = Some(parse(&body));
    StatusCode::ACCEPTED
}

fn parse(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

fn finish(state: &RuntimeState, id: &str, invocation: Invocation) -> StatusCode {
    if let Some(sender) = state.pending.lock().unwrap().remove(id) {
        let _ = sender.send(invocation);
    }
    StatusCode::ACCEPTED
}
