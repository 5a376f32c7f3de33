//! The fakes hold the code to what AWS does where it matters, and these tests hold the fakes to
//! it: a fake that quietly stopped enforcing a latency, a permission or a pace would let every
//! Lambda test pass against behaviour AWS does not have. No moto needed: each fake is called
//! over loopback HTTP as the SDK would call it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use manuel_lambda_harness::stack::{ACCOUNT, REGION};
use manuel_lambda_harness::{FakeBedrock, FakeTranscribeStreaming, KbPassage};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PROFILE: &str = "eu.anthropic.claude-sonnet-4-5-20250929-v1:0";

fn converse_url(bedrock: &FakeBedrock) -> String {
    format!("{}/model/{PROFILE}/converse", bedrock.url)
}

fn question() -> Value {
    json!({"messages": [{"role": "user", "content": [{"text": "How do I reset it?"}]}]})
}

/// A SigV4 `Authorization` header as the SDK sends it, for the access key `key`.
fn signed_by(key: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential={key}/20261206/{REGION}/bedrock/aws4_request, \
         SignedHeaders=host;x-amz-date, Signature=00"
    )
}

#[tokio::test]
async fn converse_sends_not_even_headers_before_its_latency_and_a_call_given_up_on_still_counts() {
    let bedrock = FakeBedrock::start().await;
    bedrock.set_converse_latency(Duration::from_millis(800));
    let client = reqwest::Client::new();

    // A caller that stops waiting first gets nothing at all, as from a non-streaming Converse
    // that is still generating; the model ran (and would be billed) all the same.
    let early = client
        .post(converse_url(&bedrock))
        .json(&question())
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(
        early.as_ref().is_err_and(reqwest::Error::is_timeout),
        "{early:?}"
    );

    let started = Instant::now();
    let response = client
        .post(converse_url(&bedrock))
        .json(&question())
        .send()
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["usage"]["outputTokens"], 12, "{body}");
    assert_eq!(bedrock.requests("/converse").len(), 2);
}

#[tokio::test]
async fn retrieval_takes_what_a_knowledge_base_takes_and_returns_only_the_filtered_users_passages()
{
    let bedrock = FakeBedrock::start().await;
    for (user, text) in [
        ("alice", "Alice's reset steps."),
        ("bob", "Bob's reset steps."),
    ] {
        bedrock.add_passage(KbPassage {
            user_id: user.into(),
            manual_id: format!("{user}-manual"),
            page: 3,
            text: text.into(),
        });
    }
    let client = reqwest::Client::new();
    let retrieve = |filter: Option<Value>| {
        let mut body = json!({"retrievalQuery": {"text": "reset"}});
        if let Some(filter) = filter {
            body["retrievalConfiguration"] =
                json!({"vectorSearchConfiguration": {"filter": filter}});
        }
        client
            .post(format!("{}/knowledgebases/KB/retrieve", bedrock.url))
            .json(&body)
            .send()
    };

    let started = Instant::now();
    let alice: Value = retrieve(Some(
        json!({"equals": {"key": "user_id", "value": "alice"}}),
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "{:?}",
        started.elapsed()
    );
    let texts: Vec<&str> = alice["retrievalResults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|result| result["content"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["Alice's reset steps."]);

    // Without a user filter nothing matches: a query that forgot its filter fails its test.
    let unfiltered: Value = retrieve(None).await.unwrap().json().await.unwrap();
    assert_eq!(unfiltered["retrievalResults"], json!([]));
}

#[tokio::test]
async fn a_model_call_needs_the_profile_and_the_routed_model_as_aws_authorises_an_inference_profile()
 {
    let profile = format!("arn:aws:bedrock:{REGION}:{ACCOUNT}:inference-profile/{PROFILE}");
    let profile_only =
        json!({"Effect": "Allow", "Action": "bedrock:InvokeModel", "Resource": profile});
    let routed_model = json!({
        "Effect": "Allow",
        "Action": "bedrock:InvokeModel",
        "Resource": "arn:aws:bedrock:*::foundation-model/anthropic.claude-sonnet-4-5-20250929-v1:0",
        "Condition": {"StringEquals": {"bedrock:InferenceProfileArn": profile}}
    });
    let bedrock = FakeBedrock::start().await;
    bedrock.set_converse_latency(Duration::ZERO);
    bedrock.authorize_with(HashMap::from([
        ("AKIAPROFILEONLY".to_owned(), vec![profile_only.clone()]),
        ("AKIAQUERY".to_owned(), vec![profile_only, routed_model]),
    ]));
    let client = reqwest::Client::new();
    let converse = |authorization: Option<String>| {
        let mut request = client.post(converse_url(&bedrock)).json(&question());
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        request.send()
    };

    for refused in [
        None,
        Some(signed_by("AKIAUNKNOWN")),
        Some(signed_by("AKIAPROFILEONLY")),
    ] {
        let response = converse(refused.clone()).await.unwrap();
        assert_eq!(response.status(), 403, "{refused:?}");
        assert_eq!(
            response.headers()["x-amzn-errortype"],
            "AccessDeniedException",
            "{refused:?}"
        );
    }
    let denied = bedrock.denied();
    assert!(
        denied[2]
            .1
            .contains("foundation-model/anthropic.claude-sonnet-4-5"),
        "the profile alone does not reach the model: {denied:?}"
    );
    assert_eq!(
        converse(Some(signed_by("AKIAQUERY")))
            .await
            .unwrap()
            .status(),
        200
    );
    // Refused calls never reached the model.
    assert_eq!(bedrock.requests("/converse").len(), 1);
}

fn header(name: &str, value: &str) -> Header {
    Header::new(
        name.to_owned(),
        HeaderValue::String(value.to_owned().into()),
    )
}

/// One outer (signed) event-stream message wrapping an `AudioEvent` of `audio`, or the empty
/// message that ends the stream.
fn frame(audio: Option<&[u8]>) -> Vec<u8> {
    let payload = audio.map_or_else(Vec::new, |audio| {
        let inner = Message::new(audio.to_vec())
            .add_header(header(":message-type", "event"))
            .add_header(header(":event-type", "AudioEvent"))
            .add_header(header(":content-type", "application/octet-stream"));
        let mut bytes = Vec::new();
        write_message_to(&inner, &mut bytes).unwrap();
        bytes
    });
    let outer = Message::new(payload)
        .add_header(header(":chunk-signature", "00"))
        .add_header(header(":date", "20261206T000000Z"));
    let mut bytes = Vec::new();
    write_message_to(&outer, &mut bytes).unwrap();
    bytes
}

/// Streams `seconds` of 16 kHz PCM in `chunks` pieces, `gap` apart, and returns what the fake
/// answered (the raw event-stream response).
async fn stream_pcm(url: &str, seconds: f64, chunks: usize, gap: Duration) -> String {
    let address = url.trim_start_matches("http://");
    let mut connection = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST /stream-transcription HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\
         Transfer-Encoding: chunked\r\nx-amzn-transcribe-media-encoding: pcm\r\n\
         x-amzn-transcribe-sample-rate: 16000\r\n\r\n"
    );
    connection.write_all(head.as_bytes()).await.unwrap();
    let audio = vec![0_u8; (seconds * 16_000.0) as usize * 2];
    let piece = audio.len().div_ceil(chunks);
    let mut frames: Vec<Vec<u8>> = audio
        .chunks(piece)
        .map(|audio| frame(Some(audio)))
        .collect();
    frames.push(frame(None));
    for (index, bytes) in frames.iter().enumerate() {
        if index > 0 {
            tokio::time::sleep(gap).await;
        }
        connection
            .write_all(format!("{:x}\r\n", bytes.len()).as_bytes())
            .await
            .unwrap();
        connection.write_all(bytes).await.unwrap();
        connection.write_all(b"\r\n").await.unwrap();
    }
    connection.write_all(b"0\r\n\r\n").await.unwrap();
    let mut response = Vec::new();
    connection.read_to_end(&mut response).await.unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test]
async fn streaming_transcription_refuses_audio_sent_faster_than_it_plays_and_answers_paced_audio() {
    let transcribe = FakeTranscribeStreaming::start("How do I reset the router?").await;
    transcribe.set_finalisation(Duration::from_millis(100));

    // 3 s of audio in one burst: refused, as AWS asks for streams close to real time.
    let burst = stream_pcm(&transcribe.url, 3.0, 1, Duration::ZERO).await;
    assert!(burst.contains("BadRequestException"), "{burst}");
    assert!(!burst.contains("How do I reset the router?"), "{burst}");

    // The same audio at real time (six half-second events): transcribed.
    let paced = stream_pcm(&transcribe.url, 3.0, 6, Duration::from_millis(500)).await;
    assert!(paced.contains("TranscriptEvent"), "{paced}");
    assert!(paced.contains("How do I reset the router?"), "{paced}");

    let streams = transcribe.streams();
    assert_eq!(streams.len(), 2);
    assert_eq!(streams[1].plays_for, Some(Duration::from_secs(3)));
    assert_eq!(streams[1].events, 6);
}

/// The context of a Converse request whose first passage is `text`.
fn question_about(text: &str) -> Value {
    let context = format!("Context:\n[1] (page 1)\n{text}\n\nQuestion: How?");
    json!({"messages": [{"role": "user", "content": [{"text": context}]}]})
}

/// The event-stream messages in `bytes`: (event type, JSON payload).
fn stream_events(mut bytes: &[u8]) -> Vec<(String, Value)> {
    let mut events = Vec::new();
    while !bytes.is_empty() {
        let message = aws_smithy_eventstream::frame::read_message_from(&mut bytes).unwrap();
        let kind = message
            .headers()
            .iter()
            .find(|header| {
                header.name().as_str() == ":event-type"
                    || header.name().as_str() == ":exception-type"
            })
            .and_then(|header| header.value().as_string().ok())
            .map(|kind| kind.as_str().to_owned())
            .unwrap();
        events.push((kind, serde_json::from_slice(message.payload()).unwrap()));
    }
    events
}

#[tokio::test]
async fn converse_stream_writes_its_first_word_after_a_pause_then_at_a_models_pace() {
    let bedrock = FakeBedrock::start().await;
    let response = reqwest::Client::new()
        .post(format!("{}/model/{PROFILE}/converse-stream", bedrock.url))
        .json(&question_about("Hold the reset button for ten seconds."))
        .send()
        .await
        .unwrap();
    let started = Instant::now();
    assert_eq!(
        response.headers()["content-type"],
        "application/vnd.amazon.eventstream"
    );
    let mut response = response;
    let mut arrivals = Vec::new();
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        arrivals.push(started.elapsed());
        bytes.extend_from_slice(&chunk);
    }
    let events = stream_events(&bytes);
    let kinds: Vec<&str> = events.iter().map(|(kind, _)| kind.as_str()).collect();
    assert_eq!(kinds[0], "messageStart");
    assert_eq!(
        kinds[kinds.len() - 3..],
        ["contentBlockStop", "messageStop", "metadata"]
    );
    let words: String = events
        .iter()
        .filter(|(kind, _)| kind == "contentBlockDelta")
        .map(|(_, payload)| payload["delta"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(words, "Hold the reset button for ten seconds. [1]");
    assert_eq!(events[events.len() - 1].1["usage"]["outputTokens"], 8);
    // Not all at once: the first word after ~0.8 s, eight words at 40 a second after it.
    assert!(arrivals.len() >= 8, "{arrivals:?}");
    let last = arrivals[arrivals.len() - 1];
    assert!(
        last >= Duration::from_millis(800 + 7 * 25 - 50),
        "{arrivals:?}"
    );
    assert_eq!(bedrock.streamed_tokens(), 8);
}

#[tokio::test]
async fn converse_stream_stops_generating_when_its_caller_closes_the_stream() {
    let bedrock = FakeBedrock::start().await;
    bedrock.set_stream_pace(Duration::from_millis(50), 20.0);
    bedrock.set_streamed_answer_tokens(200);
    let mut response = reqwest::Client::new()
        .post(format!("{}/model/{PROFILE}/converse-stream", bedrock.url))
        .json(&question_about("Hold the reset button."))
        .send()
        .await
        .unwrap();
    while bedrock.streamed_tokens() < 3 {
        response.chunk().await.unwrap();
    }
    drop(response);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = bedrock.streamed_tokens();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(bedrock.streamed_tokens(), after, "it kept generating");
    assert!(after < 20, "{after}");
}
