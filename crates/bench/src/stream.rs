//! `POST /api/query/stream` through the streaming query function, as API Gateway invokes it: the
//! release binary behind a local Runtime API in streaming mode, a moto stack, and the Bedrock
//! fake at Bedrock's pace (Retrieve 0.6 s; ConverseStream's first token after 0.8 s, then 40
//! tokens a second). Measures, from the invoke: the prelude (the first byte API Gateway can
//! pass on) and the first `delta` (the first word), over distinct questions (cache misses);
//! then one 2,000-token answer, which must outlast API Gateway's buffered 29 s and still end
//! with `done`.

use std::path::Path;
use std::time::{Duration, Instant};

use manuel_lambda_harness::fixtures::{function_timeout, ready_manual, sse_events};
use manuel_lambda_harness::stack::{api_event, stack};
use manuel_lambda_harness::{Ending, FakeBedrock, Lambda};
use serde_json::{Value, json};

use crate::stats::Summary;

const USER: &str = "7d8f2a10-1c2b-4e5f-9a8b-0c1d2e3f4a5b";
const LONG_ANSWER_TOKENS: usize = 2000;

pub async fn run(bin_dir: &Path, moto: &str, questions: usize) -> Value {
    let bedrock = FakeBedrock::start().await;
    let stack = stack(moto, &bedrock).await;
    ready_manual(&stack, &bedrock, USER).await;
    let timeout = function_timeout("QueryStreamFunction", "QueryStreamTimeout");
    let mut query = Lambda::start_with_timeout(
        &bin_dir.join("manuel-query"),
        "manuel-query-stream",
        &stack.env_of("QueryStreamFunction"),
        timeout,
    )
    .await;

    let (mut first_byte, mut first_delta, mut done) = (Vec::new(), Vec::new(), Vec::new());
    for n in 0..questions {
        let question = format!("How do I reset the router, variant {n}?");
        let asked = Instant::now();
        let streamed = query
            .invoke(api_event(
                "POST",
                "/api/query/stream",
                USER,
                Some(json!({"question": question})),
            ))
            .await
            .streamed();
        first_byte.push(asked.elapsed());
        let (events, ending) = sse_events(streamed, asked).await;
        assert_eq!(ending, Ending::Finished, "{events:?}");
        let delta = events.iter().find(|(name, _, _)| name == "delta");
        let (_, last, at) = events.last().expect("no event");
        assert_eq!(last["cache_status"], "miss", "{last}");
        first_delta.push(delta.expect("no delta").2);
        done.push(*at);
    }
    let summary = |timings: &mut Vec<Duration>| Summary::of(timings);
    eprintln!(
        "stream: first byte p50 {:.0} ms, first delta p50 {:.0} ms",
        summary(&mut first_byte).p50_us / 1000.0,
        summary(&mut first_delta).p50_us / 1000.0
    );

    bedrock.set_streamed_answer_tokens(LONG_ANSWER_TOKENS);
    let asked = Instant::now();
    let streamed = query
        .invoke(api_event(
            "POST",
            "/api/query/stream",
            USER,
            Some(json!({"question": "Tell me everything about resetting the router."})),
        ))
        .await
        .streamed();
    let (events, ending) = sse_events(streamed, asked).await;
    let last = events
        .last()
        .map(|(name, data, at)| (name.clone(), data.clone(), *at));
    let (last_event, output_tokens, took) = match &last {
        Some((name, data, at)) => (
            name.clone(),
            data["cost_info"]["output_tokens"].clone(),
            at.as_secs_f64(),
        ),
        None => (String::new(), Value::Null, 0.0),
    };
    eprintln!(
        "stream: a {LONG_ANSWER_TOKENS}-token answer ended with `{last_event}` after {took:.1} s ({ending:?})"
    );
    json!({
        "pace": "Retrieve 0.6 s; ConverseStream first token 0.8 s, then 40 tokens/s",
        "function_timeout_s": timeout.as_secs(),
        "questions": questions,
        "first_byte": summary(&mut first_byte),
        "first_delta": summary(&mut first_delta),
        "done": summary(&mut done),
        "long_answer": {
            "tokens": LONG_ANSWER_TOKENS,
            "seconds": took,
            "last_event": last_event,
            "output_tokens": output_tokens,
            "ending": format!("{ending:?}"),
            "deltas": events.iter().filter(|(name, _, _)| name == "delta").count(),
        },
    })
}
