//! Latency as AWS shows it, through the query function's Lambda binary: with the function's
//! timeout from template.yaml, Retrieve taking 0.6 s and Converse taking as long as a long
//! answer does, a question is answered once and charged once inside the deadline (and inside
//! API Gateway's 29 s integration timeout); a model slower than the deadline gives a 503 with
//! `Retry-After`, the quota reservation back, and exactly one model call. Spoken questions:
//! the longest accepted one, streamed at real time, still leaves time for a 12 s answer; a
//! batch job takes its 15 s.
// Fixture setup fails loudly: a test that cannot create its tables has nothing to say.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use manuel_lambda_harness::fixtures::{
    self, API_GATEWAY_TIMEOUT, Arrived, env_value, function_timeout, header, http, moto,
    play_transcribe, sse_events,
};
use manuel_lambda_harness::stack::{Stack, api_event, stack};
use manuel_lambda_harness::{
    Ending, FakeBedrock, FakeTranscribeStreaming, FaultProxy, Lambda, Part, binary,
};
use serde_json::{Value, json};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const ALICE: &str = "5a1ce000-1c2b-4e5f-9a8b-0c1d2e3f4a5b";

/// The query function's timeout as template.yaml deploys it.
fn query_timeout() -> Duration {
    function_timeout("QueryFunction", "QueryTimeout")
}

/// A ready manual of Alice's with one passage in the knowledge base.
async fn ready_manual(stack: &Stack, bedrock: &FakeBedrock) {
    fixtures::ready_manual(stack, bedrock, ALICE).await;
}

/// Alice's usage items: (today's question count, cost records). The quota counters live under
/// the hash of her id (so erasing her data keeps them), the cost records under her id.
async fn usage_items(
    stack: &Stack,
) -> (u64, Vec<std::collections::HashMap<String, AttributeValue>>) {
    let partition = |owner: String| async move {
        stack
            .dynamodb
            .query()
            .table_name(env_value(stack, "USAGE_TABLE"))
            .key_condition_expression("user_id = :user")
            .expression_attribute_values(":user", AttributeValue::S(owner))
            .send()
            .await
            .unwrap()
            .items
            .unwrap_or_default()
    };
    let alice = manuel_core::domain::UserId::parse(ALICE).unwrap();
    let sort_key = |item: &std::collections::HashMap<String, AttributeValue>| {
        item["sk"].as_s().unwrap().clone()
    };
    let today = partition(manuel_core::usage::quota_owner(&alice))
        .await
        .iter()
        .find(|item| sort_key(item).starts_with("D#"))
        .map_or(0, |item| item["count"].as_n().unwrap().parse().unwrap());
    let costs = partition(ALICE.to_owned())
        .await
        .into_iter()
        .filter(|item| sort_key(item).starts_with("C#"))
        .collect();
    (today, costs)
}

async fn ask(query: &mut Lambda) -> (Value, Duration) {
    let started = Instant::now();
    let response = query
        .invoke(api_event(
            "POST",
            "/api/query",
            ALICE,
            Some(json!({"question": "How do I reset the router?"})),
        ))
        .await
        .response();
    (response, started.elapsed())
}

#[tokio::test]
async fn a_twelve_second_answer_is_answered_once_inside_the_deadline_and_charged_once() -> TestResult
{
    let (Some(moto), Some(query_bin)) = (moto(), binary("manuel-query")) else {
        return Ok(());
    };
    let bedrock = FakeBedrock::start().await;
    bedrock.set_converse_latency(Duration::from_secs(12));
    let stack = stack(&moto, &bedrock).await;
    ready_manual(&stack, &bedrock).await;
    let timeout = query_timeout();
    let mut query = Lambda::start_with_timeout(
        &query_bin,
        "manuel-query",
        &stack.env_of("manuel-query"),
        timeout,
    )
    .await;

    let (response, took) = ask(&mut query).await;
    let (status, body) = http(&response);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["context_found"], true, "{body}");
    assert!(took >= Duration::from_secs(12), "{took:?}");
    assert!(
        took < timeout.min(API_GATEWAY_TIMEOUT),
        "answered in {took:?}: past the function's {timeout:?} or API Gateway's 29 s"
    );
    assert_eq!(bedrock.requests("/converse").len(), 1, "one model call");
    assert_eq!(bedrock.requests("/retrieve").len(), 1, "one retrieval");

    // Charged once: one question counted, one cost record with the model's tokens.
    let (today, costs) = usage_items(&stack).await;
    assert_eq!(today, 1);
    assert_eq!(costs.len(), 1, "{costs:?}");
    assert_eq!(costs[0]["input_tokens"].as_n().unwrap(), "321");
    assert_eq!(costs[0]["output_tokens"].as_n().unwrap(), "12");
    assert_eq!(body["usage"]["daily_used"], 1, "{body}");
    Ok(())
}

#[tokio::test]
async fn a_model_slower_than_the_deadline_is_a_503_refunded_and_called_once() -> TestResult {
    let (Some(moto), Some(query_bin)) = (moto(), binary("manuel-query")) else {
        return Ok(());
    };
    let bedrock = FakeBedrock::start().await;
    let timeout = query_timeout();
    // Slower than the whole invocation: no answer can arrive in time.
    bedrock.set_converse_latency(timeout + Duration::from_secs(10));
    let stack = stack(&moto, &bedrock).await;
    ready_manual(&stack, &bedrock).await;
    let mut query = Lambda::start_with_timeout(
        &query_bin,
        "manuel-query",
        &stack.env_of("manuel-query"),
        timeout,
    )
    .await;

    let (response, took) = ask(&mut query).await;
    let (status, body) = http(&response);
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("service_unavailable")),
        "{body}"
    );
    assert!(
        took < timeout.min(API_GATEWAY_TIMEOUT),
        "the 503 came after {took:?}: the gateway would have answered first"
    );
    let retry_after: u64 = header(&response, "retry-after").unwrap().parse()?;
    assert!(retry_after >= 1, "{retry_after}");

    // The reservation was given back and nothing was charged.
    let (today, costs) = usage_items(&stack).await;
    assert_eq!(today, 0, "the question was refunded");
    assert!(costs.is_empty(), "{costs:?}");
    // The model was called once and not again, even after the function answered.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(bedrock.requests("/converse").len(), 1);
    Ok(())
}

const SPOKEN: &str = "How do I reset the router?";

fn encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

async fn ask_aloud(query: &mut Lambda, clip: &[u8], content_type: &str) -> (Value, Duration) {
    let started = Instant::now();
    let response = query
        .invoke(api_event(
            "POST",
            "/api/query",
            ALICE,
            Some(json!({"file_data": encode(clip), "content_type": content_type})),
        ))
        .await
        .response();
    (response, started.elapsed())
}

#[tokio::test]
async fn the_longest_spoken_question_streamed_at_real_time_still_gets_a_long_answer_in_time()
-> TestResult {
    let (Some(moto), Some(query_bin)) = (moto(), binary("manuel-query")) else {
        return Ok(());
    };
    let bedrock = FakeBedrock::start().await;
    bedrock.set_converse_latency(Duration::from_secs(12));
    let transcribe = FakeTranscribeStreaming::start(SPOKEN).await;
    let mut stack = stack(&moto, &bedrock).await;
    stack.env.extend(transcribe.env());
    ready_manual(&stack, &bedrock).await;
    let timeout = query_timeout();
    let mut query = Lambda::start_with_timeout(
        &query_bin,
        "manuel-query",
        &stack.env_of("manuel-query"),
        timeout,
    )
    .await;

    // A browser's recording (WebM/Opus, no duration recorded) exactly as long as the cap.
    let cap = manuel_transcribe::MAX_SPOKEN_QUESTION.as_secs_f64();
    let clip = manuel_core::ogg_opus::browser_webm(cap, 1);
    let (response, took) = ask_aloud(&mut query, &clip, "audio/webm;codecs=opus").await;
    let (status, body) = http(&response);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["question"], SPOKEN);
    assert_eq!(body["context_found"], true, "{body}");
    assert!(
        took < timeout.min(API_GATEWAY_TIMEOUT),
        "a {cap} s question with a 12 s answer took {took:?}"
    );
    eprintln!("a {cap} s spoken question with a 12 s answer was answered in {took:?}");

    // It reached streaming transcription as Ogg/Opus, paced at real time.
    let streams = transcribe.streams();
    assert_eq!(streams.len(), 1);
    let stream = &streams[0];
    assert_eq!(
        (stream.encoding.as_str(), stream.sample_rate),
        ("ogg-opus", 48_000)
    );
    assert!(stream.audio.starts_with(b"OggS"));
    let plays = stream.plays_for.unwrap();
    assert!(
        stream.took + Duration::from_secs(1) >= plays,
        "{plays:?} of audio sent in {:?}",
        stream.took
    );
    assert_eq!(bedrock.requests("/converse").len(), 1);
    let (today, costs) = usage_items(&stack).await;
    assert_eq!((today, costs.len()), (1, 1), "charged once");
    assert_eq!(costs[0]["operation"].as_s().unwrap(), "transcribe");

    // A question longer than the cap is refused before anything is paid for.
    let longer = manuel_core::ogg_opus::browser_webm(cap + 1.0, 1);
    let (response, _) = ask_aloud(&mut query, &longer, "audio/webm").await;
    let (status, body) = http(&response);
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["details"]["field"], "file_data", "{body}");
    assert_eq!(transcribe.streams().len(), 1, "not transcribed");
    assert_eq!(usage_items(&stack).await.0, 1, "not charged");
    Ok(())
}

#[tokio::test]
async fn a_batch_job_takes_its_fifteen_seconds_and_the_answer_still_arrives_in_time() -> TestResult
{
    let (Some(moto), Some(query_bin)) = (moto(), binary("manuel-query")) else {
        return Ok(());
    };
    let bedrock = FakeBedrock::start().await;
    let mut stack = stack(&moto, &bedrock).await;
    let proxy = FaultProxy::start(&moto).await;
    proxy.set_transcription_job_latency(Duration::from_secs(15));
    stack.env.extend([
        ("AWS_ENDPOINT_URL_TRANSCRIBE".to_owned(), proxy.url.clone()),
        ("TRANSCRIBE_STREAMING".to_owned(), "false".to_owned()),
    ]);
    ready_manual(&stack, &bedrock).await;
    let writer = play_transcribe(stack.s3.clone(), stack.audio_bucket.clone(), SPOKEN);
    let timeout = query_timeout();
    let mut query = Lambda::start_with_timeout(
        &query_bin,
        "manuel-query",
        &stack.env_of("manuel-query"),
        timeout,
    )
    .await;

    let clip = manuel_core::audio::silent_wav(16_000, 2.0);
    let (response, took) = ask_aloud(&mut query, &clip, "audio/wav").await;
    writer.abort();
    let (status, body) = http(&response);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["question"], SPOKEN);
    // The job's 15 s, then retrieval and a 2.5 s answer.
    assert!(took >= Duration::from_secs(15), "{took:?}");
    assert!(took < timeout.min(API_GATEWAY_TIMEOUT), "{took:?}");
    Ok(())
}

// --- POST /api/query/stream through the streaming runtime ---

/// Alice's ready manual on a moto stack (plus `extra_env`) and the streaming query function as
/// template.yaml deploys it: its role, STREAM mode, its timeout unless `timeout` is given.
/// `None` outside `make test`.
async fn streaming(
    extra_env: Vec<(String, String)>,
    timeout: Option<Duration>,
) -> Option<(FakeBedrock, Stack, Lambda)> {
    let (Some(moto), Some(query_bin)) = (moto(), binary("manuel-query")) else {
        return None;
    };
    let bedrock = FakeBedrock::start().await;
    let mut stack = stack(&moto, &bedrock).await;
    stack.env.extend(extra_env);
    ready_manual(&stack, &bedrock).await;
    let timeout =
        timeout.unwrap_or_else(|| function_timeout("QueryStreamFunction", "QueryStreamTimeout"));
    let env = stack.env_of("QueryStreamFunction");
    assert!(
        env.contains(&("RESPONSE_TRANSFER_MODE".to_owned(), "STREAM".to_owned())),
        "template.yaml runs QueryStreamFunction in STREAM mode"
    );
    let query = Lambda::start_with_timeout(&query_bin, "manuel-query-stream", &env, timeout).await;
    Some((bedrock, stack, query))
}

/// Asks `body` on the stream route; the prelude API Gateway reads, then the events as the
/// function writes them.
async fn ask_streaming(query: &mut Lambda, body: Value) -> (Value, Vec<Arrived>, Ending) {
    let asked = Instant::now();
    let streamed = query
        .invoke(api_event("POST", "/api/query/stream", ALICE, Some(body)))
        .await
        .streamed();
    let prelude = streamed.prelude.clone();
    let (events, ending) = sse_events(streamed, asked).await;
    (prelude, events, ending)
}

fn names(events: &[Arrived]) -> Vec<&str> {
    events.iter().map(|(name, _, _)| name.as_str()).collect()
}

#[tokio::test]
async fn an_answer_streams_through_the_streaming_runtime_as_bedrock_writes_it_and_is_charged_once()
-> TestResult {
    let Some((bedrock, stack, mut query)) = streaming(Vec::new(), None).await else {
        return Ok(());
    };

    let question = json!({"question": "How do I reset the router?"});
    let (prelude, events, ending) = ask_streaming(&mut query, question.clone()).await;
    assert_eq!(ending, Ending::Finished);
    assert_eq!(prelude["statusCode"], 200, "{prelude}");
    // API Gateway's prelude takes one string per header: a repeated one breaks the response.
    for (name, value) in prelude["headers"].as_object().unwrap() {
        assert!(value.is_string(), "header {name} is {value}");
    }
    assert_eq!(prelude["headers"]["content-type"], "text/event-stream");
    let order = names(&events);
    assert_eq!(order[0], "sources", "{order:?}");
    assert_eq!(order[order.len() - 1], "done", "{order:?}");
    let deltas = order.iter().filter(|name| **name == "delta").count();
    assert_eq!(deltas, order.len() - 2, "{order:?}");
    assert!(deltas > 5, "the words came in {deltas} pieces");
    // The words arrived as Bedrock wrote them (40 a second), not all at the end.
    let first_delta = events[1].2;
    let done = &events[events.len() - 1];
    assert!(
        done.2 >= first_delta + Duration::from_millis(200),
        "first word at {first_delta:?}, done at {:?}",
        done.2
    );
    let body = &done.1;
    assert_eq!(body["context_found"], true, "{body}");
    assert_eq!(body["cache_status"], "miss");
    assert!(body["answer"].as_str().unwrap().ends_with("[1]"), "{body}");
    assert_eq!(bedrock.requests("/converse-stream").len(), 1);
    assert_eq!(
        bedrock.requests("/converse").len(),
        1,
        "no non-streaming call"
    );
    assert!(bedrock.denied().is_empty(), "{:?}", bedrock.denied());

    // Charged once, with the token count from the stream's metadata.
    let (today, costs) = usage_items(&stack).await;
    assert_eq!((today, costs.len()), (1, 1), "{costs:?}");
    let words = body["answer"]
        .as_str()
        .unwrap()
        .split_inclusive(' ')
        .count();
    assert_eq!(
        costs[0]["output_tokens"].as_n().unwrap(),
        &words.to_string()
    );
    assert_eq!(body["usage"]["daily_used"], 1);

    // The same question again is served from the cache at once, and costs nothing.
    let (_, again, _) = ask_streaming(&mut query, question).await;
    assert_eq!(names(&again), ["sources", "delta", "done"]);
    assert_eq!(again[2].1["cache_status"], "hit");
    assert_eq!(bedrock.requests("/converse-stream").len(), 1);
    assert_eq!(usage_items(&stack).await.0, 1);
    Ok(())
}

#[tokio::test]
async fn a_spoken_question_streams_its_transcript_first() -> TestResult {
    let transcribe = FakeTranscribeStreaming::start(SPOKEN).await;
    let Some((_bedrock, stack, mut query)) = streaming(transcribe.env(), None).await else {
        return Ok(());
    };

    let clip = manuel_core::ogg_opus::browser_webm(3.0, 1);
    let body = json!({"question": "", "file_data": encode(&clip), "content_type": "audio/webm"});
    let (_, events, ending) = ask_streaming(&mut query, body).await;
    assert_eq!(ending, Ending::Finished);
    assert_eq!(names(&events)[..2], ["question", "sources"]);
    assert_eq!(events[0].1["question"], SPOKEN);
    let done = &events[events.len() - 1].1;
    assert_eq!(done["question"], SPOKEN);
    assert_eq!(done["cost_info"]["operation"], "transcribe");
    let (today, costs) = usage_items(&stack).await;
    assert_eq!(
        (today, costs.len()),
        (1, 1),
        "charged once, as one transcription"
    );
    Ok(())
}

#[tokio::test]
async fn a_failure_before_any_word_is_refunded_and_one_mid_answer_ends_the_stream_with_an_error()
-> TestResult {
    let Some((bedrock, stack, mut query)) = streaming(Vec::new(), None).await else {
        return Ok(());
    };

    // The model fails before writing anything: an error event, the question given back.
    bedrock.fail("/converse-stream", 500, "InternalServerException", Some(1));
    let (prelude, events, _) =
        ask_streaming(&mut query, json!({"question": "How do I reset it?"})).await;
    assert_eq!(prelude["statusCode"], 200);
    assert_eq!(names(&events), ["sources", "error"]);
    assert_eq!(events[1].1["code"], "service_unavailable");
    assert_eq!(usage_items(&stack).await, (0, Vec::new()));

    // The model's stream breaks after three words: they were sent, then an error event; the
    // question counts (the model ran), no cost is recorded (no token count came), nothing is
    // cached.
    bedrock.break_stream_after(3);
    let question = json!({"question": "How do I reset the router?"});
    let (_, events, ending) = ask_streaming(&mut query, question.clone()).await;
    assert_eq!(ending, Ending::Finished);
    assert_eq!(
        names(&events),
        ["sources", "delta", "delta", "delta", "error"],
        "{events:?}"
    );
    assert_eq!(events[4].1["code"], "service_unavailable");
    let (today, costs) = usage_items(&stack).await;
    assert_eq!((today, costs.len()), (1, 0));
    let (_, again, _) = ask_streaming(&mut query, question).await;
    assert_ne!(
        again[2].1["cache_status"], "hit",
        "a broken answer was cached"
    );
    Ok(())
}

#[tokio::test]
async fn a_stream_ends_with_an_error_event_before_the_function_times_out() -> TestResult {
    let timeout = Duration::from_secs(8);
    let Some((bedrock, _stack, mut query)) = streaming(Vec::new(), Some(timeout)).await else {
        return Ok(());
    };
    // 200 words at 5 a second: 40 s, far past this function's 8 s.
    bedrock.set_stream_pace(Duration::from_millis(300), 5.0);
    bedrock.set_streamed_answer_tokens(200);

    let (_, events, ending) = ask_streaming(
        &mut query,
        json!({"question": "How do I reset the router?"}),
    )
    .await;
    assert_eq!(ending, Ending::Finished, "Lambda cut the stream off");
    let last = &events[events.len() - 1];
    assert_eq!(last.0, "error", "{:?}", names(&events));
    assert_eq!(last.1["code"], "service_unavailable");
    assert!(last.2 < timeout, "the error came at {:?}", last.2);
    assert!(names(&events).contains(&"delta"));
    Ok(())
}

#[tokio::test]
async fn a_client_that_leaves_stops_the_model() -> TestResult {
    let Some((bedrock, stack, mut query)) = streaming(Vec::new(), None).await else {
        return Ok(());
    };
    bedrock.set_stream_pace(Duration::from_millis(300), 10.0);
    bedrock.set_streamed_answer_tokens(300);

    let mut streamed = query
        .invoke(api_event(
            "POST",
            "/api/query/stream",
            ALICE,
            Some(json!({"question": "How do I reset the router?"})),
        ))
        .await
        .streamed();
    let mut seen = String::new();
    while !seen.contains("event: delta") {
        match streamed.next().await {
            Part::Data(bytes) => seen.push_str(&String::from_utf8_lossy(&bytes)),
            other => panic!("the stream ended before a word: {other:?}"),
        }
    }
    drop(streamed);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_leaving = bedrock.streamed_tokens();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        bedrock.streamed_tokens(),
        after_leaving,
        "the model kept writing"
    );
    assert!(
        after_leaving < 60,
        "{after_leaving} of 300 words were generated"
    );
    let (today, costs) = usage_items(&stack).await;
    assert_eq!(
        (today, costs.len()),
        (1, 0),
        "words were sent: the question counts"
    );
    Ok(())
}
