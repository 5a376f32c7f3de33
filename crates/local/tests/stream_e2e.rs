//! `POST /api/query/stream` over real HTTP against manuel-local: Server-Sent Events framing
//! (chunked, one event per block, `event:` and JSON `data:` lines), their order, a spoken
//! question's transcript first, the finished answer equal to what `/api/query` serves, and
//! refusals before the stream as the usual JSON errors.

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{Server, TestResult, assert_error, fixture, spoken};
use serde_json::{Value, json};

/// One event as received: its name, its data, and when its last byte arrived.
struct Received {
    name: String,
    data: Value,
    at: Duration,
}

/// Reads the stream chunk by chunk, splitting events at blank lines as a browser's
/// `EventSource` does; comments (keep-alives) are skipped.
async fn read_events(mut response: reqwest::Response, asked: Instant) -> TestResult<Vec<Received>> {
    let mut pending = String::new();
    let mut events = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        pending.push_str(std::str::from_utf8(&chunk)?);
        while let Some(end) = pending.find("\n\n") {
            let block: String = pending.drain(..end + 2).collect();
            let (mut name, mut data) = (String::from("message"), String::new());
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("event: ") {
                    name = value.to_owned();
                } else if let Some(value) = line.strip_prefix("data: ") {
                    data.push_str(value);
                } else if !line.starts_with(':') && !line.is_empty() {
                    return Err(format!("not an SSE line: {line:?}").into());
                }
            }
            if data.is_empty() {
                continue;
            }
            events.push(Received {
                name,
                data: serde_json::from_str(&data)?,
                at: asked.elapsed(),
            });
        }
    }
    assert!(
        pending.trim().is_empty(),
        "the stream ended mid-event: {pending:?}"
    );
    Ok(events)
}

fn names(events: &[Received]) -> Vec<&str> {
    events.iter().map(|event| event.name.as_str()).collect()
}

async fn stream(server: &Server, token: &str, body: &Value) -> TestResult<reqwest::Response> {
    Ok(reqwest::Client::new()
        .post(server.url("/api/query/stream"))
        .bearer_auth(token)
        // A stream is never buffered for replay: the key must not hold it back.
        .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
        .json(body)
        .send()
        .await?)
}

#[tokio::test]
async fn a_question_streams_sources_words_and_the_answer_query_would_give() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let token = server.token("streamer")?;
    server
        .upload_ready(&token, "printer-manual.pdf", &fixture("printer-manual.pdf"))
        .await?;
    let question = json!({"question": "How do I replace the ink cartridge?"});

    let asked = Instant::now();
    let response = stream(&server, &token, &question).await?;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "text/event-stream");
    // One value per header: API Gateway's streaming prelude takes no repeated header.
    assert_eq!(headers.get_all("cache-control").iter().count(), 1);
    assert_eq!(headers["cache-control"], "no-store");
    for name in headers.keys() {
        assert_eq!(headers.get_all(name).iter().count(), 1, "{name} repeated");
    }
    assert_eq!(headers["transfer-encoding"], "chunked");
    assert!(headers.contains_key("x-request-id"));
    assert!(headers.contains_key("x-content-type-options"));
    let events = read_events(response, asked).await?;

    let order = names(&events);
    assert_eq!(order[0], "sources");
    assert_eq!(order[order.len() - 1], "done");
    assert!(
        order.len() >= 4,
        "the answer was not sent in pieces: {order:?}"
    );
    assert!(
        order[1..order.len() - 1]
            .iter()
            .all(|name| *name == "delta")
    );
    let sources = events[0].data["sources"].as_array().ok_or("no sources")?;
    assert!(!sources.is_empty());
    for (index, source) in sources.iter().enumerate() {
        assert_eq!(source["number"], index + 1);
        assert!(
            source["pdf_url"]
                .as_str()
                .is_some_and(|url| url.contains("#page="))
        );
    }
    let streamed: String = events
        .iter()
        .filter(|event| event.name == "delta")
        .map(|event| event.data["text"].as_str().unwrap_or_default())
        .collect();
    assert!(
        streamed.contains("[1]") || streamed.contains("[2]"),
        "{streamed}"
    );
    let done = &events[events.len() - 1].data;
    assert_eq!(done["cache_status"], "miss");
    assert_eq!(done["context_found"], true);
    assert_eq!(done["usage"]["daily_used"], 1);
    assert!(events[0].at <= events[events.len() - 1].at);

    // /api/query now serves the same answer from the cache, and so does the stream.
    let plain = server
        .ask(&token, "How do I replace the ink cartridge?")
        .await?;
    assert_eq!(plain["cache_status"], "hit", "{plain}");
    assert_eq!(plain["answer"], done["answer"]);
    assert_eq!(
        plain["sources"].as_array().map(Vec::len),
        done["sources"].as_array().map(Vec::len)
    );
    let again = read_events(stream(&server, &token, &question).await?, Instant::now()).await?;
    assert_eq!(names(&again), ["sources", "delta", "done"]);
    assert_eq!(again[1].data["text"], done["answer"]);
    assert_eq!(again[2].data["cache_status"], "hit");

    // Refusals before the first byte are JSON errors with their status.
    let response = stream(&server, &token, &json!({"question": ""})).await?;
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_error(
        response.status().as_u16(),
        &response.json().await?,
        400,
        "validation_failed",
    );
    let response = reqwest::Client::new()
        .post(server.url("/api/query/stream"))
        .json(&question)
        .send()
        .await?;
    assert_eq!(response.status(), 401);
    server.stop()
}

#[tokio::test]
async fn a_spoken_question_streams_its_transcript_before_the_answer() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let token = server.token("speaker")?;
    server
        .upload_ready(&token, "printer-manual.pdf", &fixture("printer-manual.pdf"))
        .await?;
    let clip = spoken(
        dir.path(),
        "How do I replace the ink cartridge?",
        "question.wav",
        &["-r", "16000", "-c", "1", "-b", "16"],
        &[],
    )?;
    // As the predecessor's app sends it: an empty question next to the clip.
    let body =
        json!({"question": "", "file_data": STANDARD.encode(clip), "content_type": "audio/wav"});
    let events = read_events(stream(&server, &token, &body).await?, Instant::now()).await?;
    assert_eq!(names(&events)[..2], ["question", "sources"]);
    let heard = events[0].data["question"].as_str().ok_or("no transcript")?;
    assert!(heard.to_lowercase().contains("cartridge"), "{heard}");
    let done = &events[events.len() - 1];
    assert_eq!(done.name, "done");
    assert_eq!(done.data["question"], heard);
    assert_eq!(done.data["cost_info"]["operation"], "transcribe");
    server.stop()
}
