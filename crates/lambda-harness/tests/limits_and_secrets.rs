//! The manuals binary as deployed: the largest manual it offers an upload link for is what the
//! knowledge base ingests (50 MB), with a JSON 413 above it; the DELETE signing key comes from
//! Secrets Manager at init (never from the environment), and a DELETE signed over the path the
//! client requested, API Gateway stage included, is accepted.
// Fixture setup fails loudly: a test that cannot create its tables has nothing to say.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use manuel_lambda_harness::fixtures::{http, moto};
use manuel_lambda_harness::stack::{api_event, sdk, stack};
use manuel_lambda_harness::{FakeBedrock, Lambda, binary};
use serde_json::{Value, json};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const ALICE: &str = "11ce0000-1c2b-4e5f-9a8b-0c1d2e3f4a5b";
const KEY: &str = "a-signing-key-from-secrets-manager-0123456789";

fn upload_link(size: u64) -> Value {
    api_event(
        "POST",
        "/api/manuals/upload-url",
        ALICE,
        Some(
            json!({"file_name": "big.pdf", "content_type": "application/pdf", "size_bytes": size}),
        ),
    )
}

/// A DELETE of `path` through the `v1` stage, signed over `signed_path` (`None`: unsigned).
fn delete(path: &str, signed_path: Option<&str>) -> Value {
    let mut event = api_event("DELETE", path, ALICE, None);
    event["requestContext"]["stage"] = json!("v1");
    event["requestContext"]["path"] = json!(format!("/v1{path}"));
    if let Some(signed_path) = signed_path {
        let timestamp = chrono::Utc::now().timestamp().to_string();
        let signature = manuel_core::security::sign_request(
            KEY.as_bytes(),
            &timestamp,
            &axum::http::Method::DELETE,
            signed_path,
            b"",
        );
        for (name, value) in [
            ("X-Manuel-Timestamp", timestamp),
            ("X-Manuel-Signature", signature),
        ] {
            event["headers"][name] = json!(value);
            event["multiValueHeaders"][name] = json!([value]);
        }
    }
    event
}

#[tokio::test]
async fn uploads_stop_at_what_the_knowledge_base_ingests_and_the_signing_key_comes_from_secrets_manager()
-> TestResult {
    let (Some(moto), Some(manuals_bin)) = (moto(), binary("manuel-manuals")) else {
        return Ok(());
    };
    let bedrock = FakeBedrock::start().await;
    let mut stack = stack(&moto, &bedrock).await;
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk(&moto).await);
    let secret = secrets
        .create_secret()
        .name(format!(
            "manuel/test-{}/hmac-signing-key",
            uuid::Uuid::new_v4()
        ))
        .secret_string(KEY)
        .send()
        .await?;
    stack.env.retain(|(name, _)| name != "HMAC_SIGNING_KEY");
    stack.env.push((
        "HMAC_SIGNING_KEY_SECRET_ARN".to_owned(),
        secret.arn().unwrap().to_owned(),
    ));
    stack
        .env
        .push(("MAX_UPLOAD_LINK_BYTES".to_owned(), "50000000".to_owned()));
    let mut manuals = Lambda::start(
        &manuals_bin,
        "manuel-manuals",
        &stack.env_of("manuel-manuals"),
    )
    .await;

    // 50 MB is accepted; one byte more is a JSON 413 that says the limit.
    let (status, body) = http(&manuals.invoke(upload_link(50_000_000)).await.response());
    assert_eq!(status, 201, "{body}");
    let (status, body) = http(&manuals.invoke(upload_link(50_000_001)).await.response());
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["code"], "payload_too_large", "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("50000000 bytes"),
        "{body}"
    );

    // The key read from Secrets Manager is the one enforced.
    let path = "/api/manuals/00000000-0000-4000-8000-000000000001";
    let (status, body) = http(&manuals.invoke(delete(path, None)).await.response());
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("invalid_signature")),
        "{body}"
    );
    // Signed as the client sent it, through the stage: accepted (the manual does not exist).
    let (status, body) = http(
        &manuals
            .invoke(delete(path, Some(&format!("/v1{path}"))))
            .await
            .response(),
    );
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    Ok(())
}

#[tokio::test]
async fn a_signing_key_above_the_limit_or_a_missing_secret_stops_init_naming_the_variable()
-> TestResult {
    let (Some(moto), Some(manuals_bin)) = (moto(), binary("manuel-manuals")) else {
        return Ok(());
    };
    let bedrock = FakeBedrock::start().await;
    for (name, value) in [
        ("MAX_UPLOAD_LINK_BYTES", "104857600".to_owned()),
        (
            "HMAC_SIGNING_KEY_SECRET_ARN",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:manuel/none-AbCdEf".to_owned(),
        ),
    ] {
        let mut stack = stack(&moto, &bedrock).await;
        stack.env.retain(|(key, _)| key != "HMAC_SIGNING_KEY");
        stack.env.push((name.to_owned(), value));
        let mut lambda = Lambda::start(
            &manuals_bin,
            "manuel-manuals",
            &stack.env_of("manuel-manuals"),
        )
        .await;
        let code = lambda.exit_code().await;
        assert!(
            code.is_some_and(|code| code != 0),
            "init did not stop: {code:?}"
        );
        let logs = lambda.stderr().join("\n");
        assert!(logs.contains(name), "{logs}");
    }
    Ok(())
}

#[tokio::test]
async fn a_stored_manual_bigger_than_the_knowledge_base_takes_fails_before_it_is_read() -> TestResult
{
    use aws_sdk_dynamodb::types::AttributeValue;
    let (Some(moto), Some(process_bin)) = (moto(), binary("manuel-process-manual")) else {
        return Ok(());
    };
    let bedrock = FakeBedrock::start().await;
    let stack = stack(&moto, &bedrock).await;
    let manual_id = uuid::Uuid::new_v4().to_string();
    let key = format!("manuals/{ALICE}/{manual_id}.pdf");
    let now = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    let text = |value: &str| AttributeValue::S(value.to_owned());
    stack
        .dynamodb
        .put_item()
        .table_name(&stack.manuals_table)
        .item("user_id", text(ALICE))
        .item("manual_id", text(&manual_id))
        .item("name", text("huge.pdf"))
        .item("object_key", text(&key))
        .item("kind", text("pdf"))
        .item("size_bytes", AttributeValue::N("60000000".to_owned()))
        .item("sha256", text(&"c".repeat(64)))
        .item("status", text("processing"))
        .item("created_at", text(&now))
        .item("updated_at", text(&now))
        .item("created_sk", text(&format!("{now}#{manual_id}")))
        .send()
        .await?;
    stack
        .s3
        .put_object()
        .bucket(&stack.bucket)
        .key(&key)
        .body(b"%PDF-1.7\n".to_vec().into())
        .send()
        .await?;
    let mut process = Lambda::start(
        &process_bin,
        "manuel-process-manual",
        &stack.env_of("manuel-process-manual"),
    )
    .await;
    let mut event: Value = serde_json::from_str(include_str!("fixtures/s3-object-created.json"))?;
    event["Records"][0]["s3"]["bucket"]["name"] = json!(stack.bucket);
    event["Records"][0]["s3"]["object"]["key"] = json!(key);
    process.invoke(event).await.response();
    let row = stack
        .dynamodb
        .get_item()
        .table_name(&stack.manuals_table)
        .key("user_id", text(ALICE))
        .key("manual_id", text(&manual_id))
        .send()
        .await?
        .item
        .unwrap_or_default();
    let field = |name: &str| row.get(name).and_then(|v| v.as_s().ok()).cloned();
    assert_eq!(field("status").as_deref(), Some("failed"), "{row:?}");
    assert!(
        field("status_reason").unwrap_or_default().contains("50 MB"),
        "{row:?}"
    );
    assert!(
        bedrock.requests("/documents").is_empty(),
        "not sent to ingestion"
    );
    Ok(())
}
