//! Cold starts and memory of the six Lambda binaries, run as Lambda runs them: a local Runtime
//! API on loopback ([`manuel_lambda_harness::Lambda`]), the environment of a moto test stack,
//! and a recording Bedrock fake.
//!
//! Cold start proxy: spawn → the function's first response to one event, a new process each
//! time; init: spawn → its first request for an event (what Lambda reports as `Init Duration`). Memory: one process answers the same event `warm` times; its peak resident set
//! (`VmHWM` in `/proc/<pid>/status`) is read after the first answer and after the loop.

use std::path::Path;
use std::time::{Duration, Instant};

use manuel_lambda_harness::stack::{Stack, api_event, stack};
use manuel_lambda_harness::{FakeBedrock, Invocation, Lambda};
use serde::Serialize;
use serde_json::{Value, json};

use crate::stats::Summary;

const USER: &str = "7d8f2a10-1c2b-4e5f-9a8b-0c1d2e3f4a5b";

#[derive(Serialize)]
pub struct FunctionResult {
    pub function: &'static str,
    pub binary: String,
    pub binary_bytes: u64,
    pub event: &'static str,
    pub answer: String,
    /// Spawn → the first request for an event (Lambda's `Init Duration`), a new process each time.
    pub init: Summary,
    /// Spawn → first response, a new process each time.
    pub cold: Summary,
    /// The same event answered by a warm process (the loop below), through the same Runtime API.
    pub warm: Summary,
    /// Peak RSS after the first response and after the warm loop, in KiB.
    pub peak_rss_after_first_kib: u64,
    pub peak_rss_after_warm_kib: u64,
    pub rss_after_warm_kib: u64,
    pub warm_invocations: usize,
}

struct Function {
    name: &'static str,
    event_text: &'static str,
    event: fn(&Stack) -> Value,
}

fn functions() -> Vec<Function> {
    vec![
        Function {
            name: "manuel-manuals",
            event_text: "API Gateway GET /api/manuals (per-IP and per-user rate-limit counters and the list on moto)",
            event: |_| api_event("GET", "/api/manuals", USER, None),
        },
        Function {
            name: "manuel-query",
            event_text: "API Gateway GET /health (per-IP rate-limit counter on moto)",
            event: |_| api_event("GET", "/health", USER, None),
        },
        Function {
            name: "manuel-usage",
            event_text: "API Gateway GET /api/user/quota (per-IP and per-user rate-limit counters and the quota read on moto)",
            event: |_| api_event("GET", "/api/user/quota", USER, None),
        },
        Function {
            name: "manuel-transcribe",
            event_text: "API Gateway POST /api/transcribe without audio (per-IP and per-user rate-limit counters on moto, then 400)",
            event: |_| api_event("POST", "/api/transcribe", USER, Some(json!({}))),
        },
        Function {
            name: "manuel-process-manual",
            event_text: "S3 ObjectCreated for a metadata sidecar (parsed and skipped; no remote call)",
            event: |stack| {
                let mut event: Value = serde_json::from_str(include_str!(
                    "../../lambda-harness/tests/fixtures/s3-object-created.json"
                ))
                .unwrap_or(Value::Null);
                event["Records"][0]["s3"]["bucket"]["name"] = json!(stack.bucket);
                event["Records"][0]["s3"]["object"]["key"] =
                    json!(format!("manuals/{USER}/bench.pdf.metadata.json"));
                event
            },
        },
        Function {
            name: "manuel-error-processor",
            event_text: "SQS batch with no records (no remote call)",
            event: |_| json!({"Records": []}),
        },
    ]
}

/// A short description of an answer: the HTTP status of a proxy response, or the JSON itself.
fn describe(invocation: Invocation) -> Result<String, String> {
    match invocation {
        Invocation::Response(value) => Ok(match value.get("statusCode") {
            Some(status) => format!("HTTP {status}"),
            None => value.to_string(),
        }),
        Invocation::Error(error) => Err(format!("the function reported an error: {error}")),
        Invocation::Streamed(streamed) => Ok(format!(
            "HTTP {} (streamed)",
            streamed.prelude["statusCode"]
        )),
    }
}

pub(crate) fn vm_hwm_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with(field))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

pub async fn run(
    bin_dir: &Path,
    moto: &str,
    starts: usize,
    warm: usize,
    only: &[String],
) -> Result<Vec<FunctionResult>, Box<dyn std::error::Error>> {
    let bedrock = FakeBedrock::start().await;
    let stack = stack(moto, &bedrock).await;
    let mut results = Vec::new();
    for function in functions() {
        if !only.is_empty() && !only.iter().any(|name| name == function.name) {
            continue;
        }
        let binary = bin_dir.join(function.name);
        if !binary.is_file() {
            return Err(format!("{} does not exist", binary.display()).into());
        }
        let binary_bytes = std::fs::metadata(&binary)?.len();
        // One untimed start first, so that the binary is in the page cache for every timed one.
        let mut first = Lambda::start(&binary, function.name, &stack.env).await;
        let answer = describe(first.invoke((function.event)(&stack)).await)?;
        drop(first);

        let mut cold: Vec<Duration> = Vec::with_capacity(starts);
        let mut init: Vec<Duration> = Vec::with_capacity(starts);
        for _ in 0..starts {
            let event = (function.event)(&stack);
            let started = Instant::now();
            let mut lambda = Lambda::start(&binary, function.name, &stack.env).await;
            describe(lambda.invoke(event).await)?;
            cold.push(started.elapsed());
            init.push(
                lambda
                    .init_duration()
                    .ok_or("the function never asked for an event")?,
            );
            drop(lambda);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let mut lambda = Lambda::start(&binary, function.name, &stack.env).await;
        describe(lambda.invoke((function.event)(&stack)).await)?;
        let pid = lambda.pid().ok_or("the function exited")?;
        let peak_first = vm_hwm_kib(pid, "VmHWM:");
        let mut timings: Vec<Duration> = Vec::with_capacity(warm);
        for _ in 0..warm {
            let event = (function.event)(&stack);
            let started = Instant::now();
            describe(lambda.invoke(event).await)?;
            timings.push(started.elapsed());
        }
        let peak_warm = vm_hwm_kib(pid, "VmHWM:");
        let rss_warm = vm_hwm_kib(pid, "VmRSS:");
        drop(lambda);

        let cold = Summary::of(&mut cold);
        let init = Summary::of(&mut init);
        let warm_summary = Summary::of(&mut timings);
        eprintln!(
            "lambda: {:<24} init p50 {:>5.1} ms | cold p50 {:>6.1} ms p90 {:>6.1} ms | warm p50 {:>6.2} ms | peak RSS {:>6.1} MiB",
            function.name,
            init.p50_us / 1000.0,
            cold.p50_us / 1000.0,
            cold.p90_us / 1000.0,
            warm_summary.p50_us / 1000.0,
            peak_warm as f64 / 1024.0
        );
        results.push(FunctionResult {
            function: function.name,
            binary: binary.display().to_string(),
            binary_bytes,
            event: function.event_text,
            answer,
            init,
            cold,
            warm: warm_summary,
            peak_rss_after_first_kib: peak_first,
            peak_rss_after_warm_kib: peak_warm,
            rss_after_warm_kib: rss_warm,
            warm_invocations: warm,
        });
    }
    Ok(results)
}
