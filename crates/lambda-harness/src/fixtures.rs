//! What every Lambda-binary test needs besides the stack: where the IAM-enforcing moto is, and
//! how to read an API Gateway proxy response (status, JSON body, headers).

use std::time::Duration;

use serde_json::Value;

use crate::stack::Stack;

/// API Gateway's integration timeout for a REST API (the default, and the limit without a quota
/// increase): https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html
pub const API_GATEWAY_TIMEOUT: Duration = Duration::from_secs(29);

/// The IAM-enforcing moto these tests run on, or `None` (with a note) outside `make test`.
///
/// Under `make test` (`MANUEL_TEST_MOTO_URL` set) a missing IAM-enforcing moto fails the test:
/// each function binary holds only its role's permissions, so a call its role lacks fails here
/// as it would in AWS, and a test never passes by skipping that check.
pub fn moto() -> Option<String> {
    if std::env::var("MANUEL_TEST_MOTO_URL").map_or(true, |url| url.is_empty()) {
        eprintln!(
            "MANUEL_TEST_MOTO_URL is not set: skipping this Lambda test (run it with `make test`)"
        );
        return None;
    }
    let url = std::env::var("MANUEL_TEST_MOTO_IAM_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .expect("MANUEL_TEST_MOTO_IAM_URL is not set: start it with `scripts/moto.sh start-iam`");
    assert!(
        std::env::var("MANUEL_TEST_MOTO_ADMIN").is_ok(),
        "MANUEL_TEST_MOTO_ADMIN (KEY:SECRET of moto's admin user) is not set"
    );
    Some(url)
}

/// The status and JSON body (`Null` when empty) of an API Gateway proxy response.
pub fn http(response: &Value) -> (u64, Value) {
    let status = response["statusCode"]
        .as_u64()
        .unwrap_or_else(|| panic!("not a proxy response: {response}"));
    let body = response["body"].as_str().map_or(Value::Null, |body| {
        serde_json::from_str(body)
            .unwrap_or_else(|error| panic!("body is not JSON ({error}): {body}"))
    });
    (status, body)
}

/// A response header of an API Gateway proxy response, whichever header map carries it.
pub fn header(response: &Value, name: &str) -> Option<String> {
    let find = |map: &Value| {
        map.as_object().and_then(|headers| {
            headers
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.clone())
        })
    };
    match find(&response["headers"]) {
        Some(Value::String(value)) => Some(value),
        _ => match find(&response["multiValueHeaders"]) {
            Some(Value::Array(values)) => values.first().and_then(Value::as_str).map(str::to_owned),
            _ => None,
        },
    }
}

/// The value the stack gives the functions for the environment variable `name`.
pub fn env_value<'a>(stack: &'a Stack, name: &str) -> &'a str {
    stack
        .env
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
        .unwrap_or_else(|| panic!("the stack sets no {name}"))
}

/// A function's timeout as template.yaml deploys it: the default of the parameter its
/// `Timeout` names (`QueryTimeout` for `QueryFunction`).
pub fn function_timeout(function: &str, parameter: &str) -> Duration {
    let template: serde_yaml::Value =
        serde_yaml::from_str(include_str!("../../../template.yaml")).expect("template.yaml parses");
    let timeout = &template["Resources"][function]["Properties"]["Timeout"];
    assert_eq!(
        serde_yaml::to_string(timeout).expect("YAML").trim(),
        format!("!Ref {parameter}"),
        "{function}'s timeout is the {parameter} parameter"
    );
    let seconds = template["Parameters"][parameter]["Default"]
        .as_u64()
        .unwrap_or_else(|| panic!("{parameter} has a numeric default"));
    Duration::from_secs(seconds)
}

/// Plays Amazon Transcribe's part of a batch job that moto leaves out: for every clip that
/// appears under `audio/` in `bucket`, writes a transcript saying `spoken` where the job was
/// told to put it (`transcripts/<stem>.json`). Abort the handle when the test is done.
pub fn play_transcribe(
    s3: aws_sdk_s3::Client,
    bucket: String,
    spoken: &'static str,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut done = std::collections::HashSet::new();
        loop {
            if let Ok(listing) = s3
                .list_objects_v2()
                .bucket(&bucket)
                .prefix("audio/")
                .send()
                .await
            {
                for key in listing.contents().iter().filter_map(|object| object.key()) {
                    let Some((stem, _)) = key.trim_start_matches("audio/").rsplit_once('.') else {
                        continue;
                    };
                    if done.insert(stem.to_owned()) {
                        let transcript = serde_json::json!({
                            "results": {"transcripts": [{"transcript": spoken}]}
                        });
                        // A failed write leaves the job without a transcript: the test under
                        // way then fails on its answer, which says more than a panic here.
                        let _ = s3
                            .put_object()
                            .bucket(&bucket)
                            .key(format!("transcripts/{stem}.json"))
                            .body(transcript.to_string().into_bytes().into())
                            .send()
                            .await;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
}

/// Where `user`'s manual files are stored: `manuals/<pseudonym>/` (no user id in any key).
pub fn manuals_prefix(user: &str) -> String {
    let user = manuel_core::domain::UserId::parse(user).expect("a valid user id");
    manuel_core::storage_keys::manuals_prefix(&user)
}

/// Where the pages drawn from `user`'s manuals are cached: `pages/<pseudonym>/`.
pub fn pages_prefix(user: &str) -> String {
    let user = manuel_core::domain::UserId::parse(user).expect("a valid user id");
    manuel_core::storage_keys::pages_prefix(&user)
}

/// A ready manual of `user`'s (stored under the earlier key layout, `manuals/<user id>/`, which
/// must keep working): a `router.pdf` record in the manuals table with one passage
/// about resetting the router in the knowledge base; returns its id.
pub async fn ready_manual(stack: &Stack, bedrock: &crate::FakeBedrock, user: &str) -> String {
    use aws_sdk_dynamodb::types::AttributeValue;
    let manual_id = uuid::Uuid::new_v4().to_string();
    let now = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    let text = |value: &str| AttributeValue::S(value.to_owned());
    stack
        .dynamodb
        .put_item()
        .table_name(&stack.manuals_table)
        .item("user_id", text(user))
        .item("manual_id", text(&manual_id))
        .item("name", text("router.pdf"))
        .item(
            "object_key",
            text(&format!("manuals/{user}/{manual_id}.pdf")),
        )
        .item("kind", text("pdf"))
        .item("size_bytes", AttributeValue::N("1000".to_owned()))
        .item("sha256", text(&"b".repeat(64)))
        .item("status", text("ready"))
        .item("pages", AttributeValue::N("4".to_owned()))
        .item("created_at", text(&now))
        .item("updated_at", text(&now))
        .item("created_sk", text(&format!("{now}#{manual_id}")))
        .send()
        .await
        .unwrap();
    bedrock.add_passage(crate::KbPassage {
        user_id: user.into(),
        manual_id: manual_id.clone(),
        page: 4,
        text: "Hold the reset button for ten seconds to restore the factory settings.".into(),
    });
    manual_id
}

/// One Server-Sent Event of a streamed answer as it arrived: name, JSON data, and the time
/// since the question was sent.
pub type Arrived = (String, Value, Duration);

/// Reads a streamed response's body as API Gateway passes it on, splitting it into events as
/// a browser's `EventSource` does; says how the stream ended.
pub async fn sse_events(
    streamed: crate::Streamed,
    asked: std::time::Instant,
) -> (Vec<Arrived>, crate::Ending) {
    let mut pending = String::new();
    let mut events = Vec::new();
    let ending = streamed
        .read(asked, |bytes, at| {
            pending.push_str(&String::from_utf8_lossy(bytes));
            while let Some(end) = pending.find("\n\n") {
                let block: String = pending.drain(..end + 2).collect();
                if let Some((name, data)) = sse_event(&block) {
                    events.push((name, data, at));
                }
            }
        })
        .await;
    (events, ending)
}

fn sse_event(block: &str) -> Option<(String, Value)> {
    let mut name = None;
    let mut data = String::new();
    for line in block.lines() {
        if let Some(value) = line.strip_prefix("event: ") {
            name = Some(value.to_owned());
        } else if let Some(value) = line.strip_prefix("data: ") {
            data.push_str(value);
        }
    }
    Some((name?, serde_json::from_str(&data).ok()?))
}
