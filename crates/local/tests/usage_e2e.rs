//! Quotas, usage, costs and erasure as a new user meets them over HTTP.

mod common;

use common::{Server, TestResult, assert_error};
use serde_json::json;

#[tokio::test]
async fn concurrent_queries_never_exceed_the_daily_quota() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = Server::start_with_env(
        dir.path(),
        &[],
        &[("DAILY_QUOTA_LIMIT", "50"), ("MONTHLY_QUOTA_LIMIT", "1000")],
    )?;
    let token = server.token("quinn")?;
    let (status, _) = server
        .upload(
            &token,
            "n.txt",
            b"Press the red button to start the machine.",
        )
        .await?;
    assert_eq!(status, 201);

    let mut tasks = Vec::new();
    for n in 0..200 {
        let client = server.client.clone();
        let url = server.url("/api/query");
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            let response = client
                .post(url)
                .bearer_auth(token)
                .json(&json!({ "question": format!("How do I start the machine? ({n})") }))
                .send()
                .await?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            let body: serde_json::Value = response.json().await?;
            Ok::<_, reqwest::Error>((status, retry_after, body))
        }));
    }
    let (mut answered, mut refused) = (0, 0);
    for task in tasks {
        let (status, retry_after, body) = task.await??;
        match status {
            200 => {
                answered += 1;
                assert!(
                    body["usage"]["daily_used"]
                        .as_u64()
                        .is_some_and(|used| (1..=50).contains(&used)),
                    "{body}"
                );
                assert_eq!(body["usage"]["daily_limit"], 50);
                assert!(body["cost_info"]["total_cost_eur"].is_number(), "{body}");
            }
            429 => {
                refused += 1;
                assert_error(status, &body, 429, "quota_exceeded");
                assert_eq!(body["details"]["usage"]["daily_used"], 50, "{body}");
                assert!(retry_after.is_some_and(|seconds| (1..=86_400).contains(&seconds)));
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((answered, refused), (50, 150));

    let (status, quota) = server.get(&token, "/api/user/quota").await?;
    assert_eq!(status, 200, "{quota}");
    assert_eq!(quota["quotas"]["daily"]["used"], 50);
    assert_eq!(quota["quotas"]["daily"]["remaining"], 0);
    assert_eq!(quota["quotas"]["daily"]["percent_used"], 100.0);
    assert_eq!(quota["quotas"]["monthly"]["used"], 50);
    assert_eq!(quota["quotas"]["monthly"]["remaining"], 950);
    assert_eq!(quota["status"], "EXCEEDED");
    assert_eq!(quota["last_operation"], "query");

    let (status, usage) = server.get(&token, "/api/user/usage").await?;
    assert_eq!(status, 200, "{usage}");
    assert_eq!(usage["current_usage"]["daily_queries"], 50);
    assert_eq!(usage["current_usage"]["daily_remaining"], 0);
    assert_eq!(usage["current_usage"]["monthly_queries"], 50);
    assert_eq!(
        usage["breakdown"]["query"], 50,
        "one cost record per answered query: {usage}"
    );
    assert_eq!(usage["recent_queries"].as_array().map(Vec::len), Some(5));
    assert_eq!(usage["historical"].as_array().map(Vec::len), Some(7));
    assert_eq!(usage["daily_costs"]["currency"], "EUR");
    server.stop()
}

#[tokio::test]
async fn erasing_a_users_data_leaves_an_empty_account() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let rose = server.token("rose")?;
    let sam = server.token("sam")?;
    for (token, name, text) in [
        (
            &rose,
            "a.txt",
            "Descale the kettle every month with citric acid.",
        ),
        (
            &rose,
            "b.md",
            "# Oven\n\nPreheat the oven to 180 degrees before baking.",
        ),
        (
            &sam,
            "c.txt",
            "Descale the kettle every month with citric acid.",
        ),
    ] {
        let (status, body) = server.upload(token, name, text.as_bytes()).await?;
        assert_eq!(status, 201, "{body}");
        server
            .wait_processed(token, body["manual_id"].as_str().ok_or("id")?)
            .await?;
    }
    let answer = server
        .ask(&rose, "How often should I descale the kettle?")
        .await?;
    assert_eq!(answer["context_found"], true, "{answer}");

    let (status, erased) = server.delete(&rose, "/api/user/data").await?;
    assert_eq!(status, 200, "{erased}");
    assert_eq!(erased["deleted"]["manuals"], 2);
    // The cost record goes; today's and this month's counters stay (under the id's hash).
    assert!(
        erased["deleted"]["usage_and_cost_records"]
            .as_u64()
            .is_some_and(|n| n >= 1),
        "{erased}"
    );

    let (_, list) = server.get(&rose, "/api/manuals").await?;
    assert_eq!(list["count"], 0);
    let (_, quota) = server.get(&rose, "/api/user/quota").await?;
    assert_eq!(quota["quotas"]["daily"]["used"], 1, "{quota}");
    let (_, usage) = server.get(&rose, "/api/user/usage").await?;
    assert_eq!(usage["recent_queries"], json!([]));
    let answer = server
        .ask(&rose, "How often should I descale the kettle?")
        .await?;
    assert_eq!(answer["context_found"], false, "{answer}");
    let objects = dir.path().join("objects/manuals/rose");
    let left = std::fs::read_dir(&objects)
        .map(|entries| entries.count())
        .unwrap_or(0);
    assert_eq!(left, 0, "files left in {}", objects.display());

    // Sam's data is untouched.
    let (_, list) = server.get(&sam, "/api/manuals").await?;
    assert_eq!(list["count"], 1);
    let answer = server
        .ask(&sam, "How often should I descale the kettle?")
        .await?;
    assert_eq!(answer["context_found"], true, "{answer}");

    // Erasing again is harmless.
    let (status, erased) = server.delete(&rose, "/api/user/data").await?;
    assert_eq!(status, 200);
    assert_eq!(erased["deleted"]["manuals"], 0);
    server.stop()
}

#[tokio::test]
async fn erasing_your_data_does_not_reset_your_quota() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = Server::start_with_env(
        dir.path(),
        &[],
        &[("DAILY_QUOTA_LIMIT", "3"), ("MONTHLY_QUOTA_LIMIT", "5")],
    )?;
    let rose = server.token("rose")?;
    server
        .upload_ready(
            &rose,
            "kettle.txt",
            b"Descale the kettle every month with citric acid.",
        )
        .await?;
    // A different question each time: a cached answer is not charged.
    let question =
        |n: u32| json!({"question": format!("How often should I descale kettle number {n}?")});
    let mut answered = 0;
    loop {
        let (status, body) = server
            .post(&rose, "/api/query", &question(answered))
            .await?;
        match status {
            200 => answered += 1,
            429 => {
                assert_error(status, &body, 429, "quota_exceeded");
                break;
            }
            other => return Err(format!("{other}: {body}").into()),
        }
        assert!(answered <= 3, "more answers than the daily limit");
    }
    assert_eq!(answered, 3);
    let (status, erased) = server.delete(&rose, "/api/user/data").await?;
    assert_eq!(status, 200, "{erased}");
    server
        .upload_ready(
            &rose,
            "kettle.txt",
            b"Descale the kettle every month with citric acid.",
        )
        .await?;
    let (status, body) = server.post(&rose, "/api/query", &question(99)).await?;
    assert_error(status, &body, 429, "quota_exceeded");
    let (_, quota) = server.get(&rose, "/api/user/quota").await?;
    assert_eq!(quota["quotas"]["daily"]["used"], 3, "{quota}");
    server.stop()
}
