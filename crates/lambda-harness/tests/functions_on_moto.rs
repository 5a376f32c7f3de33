//! The function binaries, run as Lambda runs them (a local Runtime API, API Gateway REST, S3 and
//! SQS event fixtures), against moto for S3, DynamoDB, SQS and SNS and a recording Bedrock fake:
//! an upload lands in S3 with its sidecar and a manuals row, the S3 event makes it ready, a
//! question retrieves with the caller's filter, another user gets 404, dead letters are grouped
//! and alerted once, and a missing setting stops init naming the variable.
// Fixture setup fails loudly: a test that cannot create its tables has nothing to say.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use manuel_lambda_harness::fixtures::{self, header, http, moto, play_transcribe};
use manuel_lambda_harness::stack::{Stack, api_event, stack, stack_with};
use manuel_lambda_harness::{FakeBedrock, FaultProxy, KbPassage, Lambda, binary};
use serde_json::{Value, json};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const ALICE: &str = "7d8f2a10-1c2b-4e5f-9a8b-0c1d2e3f4a5b";
const BOB: &str = "0b0b0b0b-1c2b-4e5f-9a8b-0c1d2e3f4a5b";

async fn item(
    stack: &Stack,
    user: &str,
    manual_id: &str,
) -> std::collections::HashMap<String, AttributeValue> {
    stack
        .dynamodb
        .get_item()
        .table_name(&stack.manuals_table)
        .key("user_id", AttributeValue::S(user.to_owned()))
        .key("manual_id", AttributeValue::S(manual_id.to_owned()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap_or_default()
}

#[tokio::test]
async fn upload_processing_query_and_isolation_through_the_lambda_binaries() -> TestResult {
    let (Some(moto), Some(manuals_bin), Some(process_bin), Some(query_bin)) = (
        moto(),
        binary("manuel-manuals"),
        binary("manuel-process-manual"),
        binary("manuel-query"),
    ) else {
        return Ok(());
    };
    let bedrock = FakeBedrock::start().await;
    let stack = stack(&moto, &bedrock).await;
    let mut manuals = Lambda::start(
        &manuals_bin,
        "manuel-manuals",
        &stack.env_of("manuel-manuals"),
    )
    .await;

    // Upload: the object and its sidecar land in S3, the row in DynamoDB.
    let pdf = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../local/tests/fixtures/printer-manual.pdf"
    ))?;
    let upload = json!({
        "file_name": "Printer Manual.pdf",
        "file_data": base64::engine::general_purpose::STANDARD.encode(&pdf),
        "content_type": "application/pdf",
    });
    let (status, body) = http(
        &manuals
            .invoke(api_event(
                "POST",
                "/api/manuals/upload",
                ALICE,
                Some(upload),
            ))
            .await
            .response(),
    );
    assert_eq!(status, 201, "{body}");
    let manual_id = body["manual_id"].as_str().unwrap().to_owned();
    let key = body["key"].as_str().unwrap().to_owned();
    assert_eq!(
        key,
        format!("{}{manual_id}.pdf", fixtures::manuals_prefix(ALICE))
    );
    assert!(!key.contains(ALICE), "no user id in a storage key: {key}");
    let stored = stack
        .s3
        .get_object()
        .bucket(&stack.bucket)
        .key(&key)
        .send()
        .await?;
    assert_eq!(stored.body.collect().await?.into_bytes().len(), pdf.len());
    let sidecar = stack
        .s3
        .get_object()
        .bucket(&stack.bucket)
        .key(format!("{key}.metadata.json"))
        .send()
        .await?;
    let sidecar: Value = serde_json::from_slice(&sidecar.body.collect().await?.into_bytes())?;
    assert_eq!(
        sidecar,
        json!({"metadataAttributes": {"user_id": ALICE, "manual_id": manual_id, "manual_name": "Printer Manual.pdf"}})
    );
    let row = item(&stack, ALICE, &manual_id).await;
    assert_eq!(
        row.get("status")
            .and_then(|v| v.as_s().ok())
            .map(String::as_str),
        Some("processing")
    );

    // The S3 event (key URL-encoded, as S3 sends it) makes it ready with its page count.
    let mut process = Lambda::start(
        &process_bin,
        "manuel-process-manual",
        &stack.env_of("manuel-process-manual"),
    )
    .await;
    let mut event: Value = serde_json::from_str(include_str!("fixtures/s3-object-created.json"))?;
    event["Records"][0]["s3"]["bucket"]["name"] = json!(stack.bucket);
    event["Records"][0]["s3"]["object"]["key"] = json!(key.replace('-', "%2D"));
    process.invoke(event).await.response();
    let row = item(&stack, ALICE, &manual_id).await;
    assert_eq!(
        row.get("status")
            .and_then(|v| v.as_s().ok())
            .map(String::as_str),
        Some("ready"),
        "{row:?}"
    );
    assert_eq!(
        row.get("pages")
            .and_then(|v| v.as_n().ok())
            .map(String::as_str),
        Some("6")
    );
    let ingested = bedrock.requests("/datasources/DSTEST1234/documents");
    let ingest = ingested
        .iter()
        .find(|(path, _)| path.ends_with("/documents"))
        .unwrap();
    assert_eq!(
        ingest
            .1
            .pointer("/documents/0/content/s3/s3Location/uri")
            .and_then(Value::as_str),
        Some(format!("s3://{}/{key}", stack.bucket).as_str())
    );
    // The sidecar event is not a manual.
    let mut sidecar_event: Value =
        serde_json::from_str(include_str!("fixtures/s3-object-created.json"))?;
    sidecar_event["Records"][0]["s3"]["object"]["key"] = json!(format!("{key}.metadata.json"));
    process.invoke(sidecar_event).await.response();

    // A question retrieves with Alice's filter, HYBRID, and cites her page.
    bedrock.add_passage(KbPassage {
        user_id: ALICE.into(),
        manual_id: manual_id.clone(),
        page: 5,
        text: "The warranty lasts two years from the date of purchase.".into(),
    });
    bedrock.add_passage(KbPassage {
        user_id: BOB.into(),
        manual_id: "bobs-manual".into(),
        page: 1,
        text: "Bob's secret notes.".into(),
    });
    let mut query = Lambda::start(&query_bin, "manuel-query", &stack.env_of("manuel-query")).await;
    let (status, answer) = http(
        &query
            .invoke(api_event(
                "POST",
                "/api/query",
                ALICE,
                Some(json!({"question": "How long is the warranty?"})),
            ))
            .await
            .response(),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["context_found"], true, "{answer}");
    assert_eq!(answer["sources"][0]["manual_id"], manual_id.as_str());
    assert_eq!(answer["sources"][0]["page_number"], 5);
    assert!(answer["answer"].as_str().unwrap().contains("two years"));
    assert!(!answer.to_string().contains("Bob's secret"));
    assert_eq!(answer["cost_info"]["input_tokens"], 321);
    let retrieve = bedrock.requests("/knowledgebases/KBTEST1234/retrieve");
    assert_eq!(retrieve.len(), 1);
    let search = &retrieve[0].1["retrievalConfiguration"]["vectorSearchConfiguration"];
    // The template's default store, S3 Vectors, has vector search only.
    assert_eq!(search["overrideSearchType"], "SEMANTIC");
    assert_eq!(
        search["filter"],
        json!({"equals": {"key": "user_id", "value": ALICE}})
    );
    let converse = bedrock.requests("/converse");
    assert!(
        converse[0]
            .0
            .contains("eu.anthropic.claude-sonnet-4-5-20250929-v1"),
        "{}",
        converse[0].0
    );

    // Bob cannot see Alice's manual, through either function.
    let (status, body) = http(
        &manuals
            .invoke(api_event(
                "GET",
                &format!("/api/manuals/{manual_id}"),
                BOB,
                None,
            ))
            .await
            .response(),
    );
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    let (status, body) = http(
        &manuals
            .invoke(api_event("GET", "/api/manuals", BOB, None))
            .await
            .response(),
    );
    assert_eq!((status, body["count"].as_u64()), (200, Some(0)));
    let (status, body) = http(
        &manuals
            .invoke(api_event(
                "GET",
                &format!("/api/manuals/{manual_id}"),
                ALICE,
                None,
            ))
            .await
            .response(),
    );
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("ready")),
        "{body}"
    );

    // Metrics: EMF lines in the namespace, with the cold start counted once.
    let emf: Vec<Value> = query
        .stdout()
        .iter()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    assert!(
        emf.iter()
            .any(|line| line["ColdStart"] == 1.0 && line["Function"] == "query"),
        "{emf:?}"
    );
    assert!(
        emf.iter()
            .all(|line| line["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Manuel/Application")
    );
    assert!(emf.iter().any(|line| line["Requests"] == 1.0));
    Ok(())
}

#[tokio::test]
async fn error_processor_groups_dead_letters_alerts_once_and_keeps_poison() -> TestResult {
    let (Some(moto), Some(bin)) = (moto(), binary("manuel-error-processor")) else {
        return Ok(());
    };
    let bedrock = FakeBedrock::start().await;
    let stack = stack(&moto, &bedrock).await;
    let mut lambda = Lambda::start(
        &bin,
        "manuel-error-processor",
        &stack.env_of("manuel-error-processor"),
    )
    .await;
    let event: Value = serde_json::from_str(include_str!("fixtures/sqs-dead-letters.json"))?;
    let response = lambda.invoke(event).await.response();
    assert_eq!(
        response["batchItemFailures"],
        json!([]),
        "{response}\n{}",
        lambda.stderr().join("\n")
    );

    let items = stack
        .dynamodb
        .scan()
        .table_name(&stack.errors_table)
        .send()
        .await?
        .items
        .unwrap_or_default();
    assert_eq!(
        items.len(),
        2,
        "one throttling fingerprint, one malformed record: {items:?}"
    );
    let counts: Vec<(String, String)> = items
        .iter()
        .map(|item| {
            (
                item["severity"].as_s().unwrap().clone(),
                item["count"].as_n().unwrap().clone(),
            )
        })
        .collect();
    assert!(
        counts.contains(&("high".to_owned(), "2".to_owned())),
        "{counts:?}"
    );
    assert!(
        counts.contains(&("low".to_owned(), "1".to_owned())),
        "{counts:?}"
    );

    let mut alerts = 0;
    for _ in 0..3 {
        let received = stack
            .sqs
            .receive_message()
            .queue_url(&stack.alerts_queue)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await?;
        alerts += received.messages().len();
    }
    assert_eq!(
        alerts, 1,
        "one alert for the high-severity fingerprint, none for low"
    );
    Ok(())
}

#[tokio::test]
async fn a_missing_setting_stops_init_and_names_the_variable() -> TestResult {
    let (Some(moto), Some(bin)) = (moto(), binary("manuel-manuals")) else {
        return Ok(());
    };
    let bedrock = FakeBedrock::start().await;
    let stack = stack(&moto, &bedrock).await;
    let env: Vec<(String, String)> = stack
        .env_of("manuel-manuals")
        .into_iter()
        .filter(|(name, _)| name != "MANUALS_TABLE")
        .collect();
    let mut lambda = Lambda::start(&bin, "manuel-manuals", &env).await;
    let code = lambda.exit_code().await;
    assert_ne!(code, Some(0));
    assert!(code.is_some(), "init did not stop");
    let logs = lambda.stderr().join("\n");
    assert!(logs.contains("MANUALS_TABLE"), "{logs}");

    // A transfer mode API Gateway does not have would answer every request in the wrong
    // format: the query function refuses to start instead.
    if let Some(query_bin) = binary("manuel-query") {
        let mut env = stack.env_of("QueryStreamFunction");
        env.retain(|(name, _)| name != "RESPONSE_TRANSFER_MODE");
        env.push((
            "RESPONSE_TRANSFER_MODE".to_owned(),
            "RESPONSE_STREAM".to_owned(),
        ));
        let mut query = Lambda::start(&query_bin, "manuel-query-stream", &env).await;
        assert_ne!(query.exit_code().await, Some(0));
        let logs = query.stderr().join("\n");
        assert!(logs.contains("RESPONSE_TRANSFER_MODE"), "{logs}");
    }
    Ok(())
}

const SPOKEN: &str = "How do I replace the ink cartridge?";

#[tokio::test]
async fn a_spoken_clip_is_transcribed_and_charged_and_bad_audio_refused_through_the_lambda_binary()
-> TestResult {
    let (Some(moto), Some(transcribe_bin), Some(query_bin)) =
        (moto(), binary("manuel-transcribe"), binary("manuel-query"))
    else {
        return Ok(());
    };
    let bedrock = FakeBedrock::start().await;
    let mut stack = stack(&moto, &bedrock).await;
    // moto has no Transcribe streaming: every clip goes to a batch job, whose part this test
    // plays (the streaming path is tested in crates/aws/tests/transcribe_streaming.rs).
    stack
        .env
        .push(("TRANSCRIBE_STREAMING".to_owned(), "false".to_owned()));
    let service = play_transcribe(stack.s3.clone(), stack.audio_bucket.clone(), SPOKEN);
    let mut transcribe = Lambda::start(
        &transcribe_bin,
        "manuel-transcribe",
        &stack.env_of("manuel-transcribe"),
    )
    .await;
    let encode = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let clip = manuel_core::audio::silent_wav(16_000, 1.5);

    let (status, body) = http(
        &transcribe
            .invoke(api_event(
                "POST",
                "/api/transcribe",
                ALICE,
                Some(json!({"audio_data": encode(&clip), "content_type": "audio/wav"})),
            ))
            .await
            .response(),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["transcription"], SPOKEN);
    assert_eq!(body["usage"]["daily_used"], 1);
    assert_eq!(body["cost"]["operation"], "transcribe");
    assert_eq!(body["cost"]["audio_seconds"], 1.5);
    assert_eq!(body["format"], "wav");

    // Bad audio is refused before any paid work, and costs nothing.
    let pdf = b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n".to_vec();
    let refusals = [
        (
            json!({"audio_data": "", "content_type": "audio/wav"}),
            "audio_data",
        ),
        (
            json!({"audio_data": encode(&clip[..clip.len() / 2 - 7]), "content_type": "audio/wav"}),
            "audio_data",
        ),
        (
            json!({"audio_data": encode(&clip), "content_type": "audio/flac"}),
            "content_type",
        ),
        (
            json!({"audio_data": encode(&pdf), "content_type": "audio/wav"}),
            "audio_data",
        ),
        (
            json!({"audio_data": encode(&manuel_core::audio::silent_wav(16_000, 0.2)), "content_type": "audio/wav"}),
            "audio_data",
        ),
        (
            json!({"audio_data": encode(&manuel_core::audio::silent_wav(16_000, 61.0)), "content_type": "audio/wav"}),
            "audio_data",
        ),
        (
            json!({"audio_data": "not base64!", "content_type": "audio/wav"}),
            "audio_data",
        ),
    ];
    for (request, field) in refusals {
        let (status, body) = http(
            &transcribe
                .invoke(api_event("POST", "/api/transcribe", ALICE, Some(request)))
                .await
                .response(),
        );
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["code"], "validation_failed", "{body}");
        assert_eq!(body["details"]["field"], field, "{body}");
    }

    let (status, body) = http(
        &transcribe
            .invoke(api_event(
                "POST",
                "/api/transcribe",
                BOB,
                Some(json!({"audio_data": encode(&clip), "content_type": "audio/x-wav"})),
            ))
            .await
            .response(),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["usage"]["daily_used"], 1,
        "Bob's quota is his own: {body}"
    );
    let (status, body) = http(
        &transcribe
            .invoke(api_event(
                "POST",
                "/api/transcribe",
                ALICE,
                Some(json!({"audio_data": encode(&clip), "content_type": "audio/wav"})),
            ))
            .await
            .response(),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["usage"]["daily_used"], 2,
        "refusals were not charged: {body}"
    );

    // A spoken question to the query function: transcribed, then answered, charged once.
    let mut query = Lambda::start(&query_bin, "manuel-query", &stack.env_of("manuel-query")).await;
    let (status, body) = http(
        &query
            .invoke(api_event(
                "POST",
                "/api/query",
                ALICE,
                Some(json!({"file_data": encode(&clip), "content_type": "audio/wav"})),
            ))
            .await
            .response(),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["question"], SPOKEN);
    assert_eq!(
        body["context_found"], false,
        "Alice has no manuals yet: {body}"
    );
    assert_eq!(body["usage"]["daily_used"], 3, "{body}");
    assert_eq!(body["cost_info"]["operation"], "transcribe");
    service.abort();

    // Clips and transcripts are removed once read.
    let left = stack
        .s3
        .list_objects_v2()
        .bucket(&stack.audio_bucket)
        .send()
        .await?;
    let left: Vec<&str> = left
        .contents()
        .iter()
        .filter_map(|object| object.key())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    Ok(())
}

#[tokio::test]
async fn a_download_lands_in_s3_with_its_sidecar_and_a_retry_with_its_key_has_no_second_effect()
-> TestResult {
    let (Some(moto), Some(manuals_bin)) = (moto(), binary("manuel-manuals")) else {
        return Ok(());
    };
    // The web server the manual comes from, on loopback: exempted by URL_FETCH_ALLOW_HOSTS only.
    let pdf = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../local/tests/fixtures/printer-manual.pdf"
    ))?;
    let app = axum::Router::new().route(
        "/printer.pdf",
        axum::routing::get(move || {
            let pdf = pdf.clone();
            async move { pdf }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let web = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let bedrock = FakeBedrock::start().await;
    let mut stack = stack(&moto, &bedrock).await;
    stack
        .env
        .push(("URL_FETCH_ALLOW_HOSTS".to_owned(), web.to_string()));
    let mut manuals = Lambda::start(
        &manuals_bin,
        "manuel-manuals",
        &stack.env_of("manuel-manuals"),
    )
    .await;
    let request = |user: &str| {
        let mut event = api_event(
            "POST",
            "/api/manuals/download",
            user,
            Some(json!({"url": format!("http://{web}/printer.pdf")})),
        );
        event["headers"]["Idempotency-Key"] = json!("download-1");
        event["multiValueHeaders"]["Idempotency-Key"] = json!(["download-1"]);
        event
    };

    let first = manuals.invoke(request(ALICE)).await.response();
    let (status, body) = http(&first);
    assert_eq!(status, 201, "{body}");
    let manual_id = body["manual_id"].as_str().unwrap().to_owned();
    let key = body["key"].as_str().unwrap().to_owned();
    assert_eq!(body["file_name"], "printer.pdf");
    let sidecar = stack
        .s3
        .get_object()
        .bucket(&stack.bucket)
        .key(format!("{key}.metadata.json"))
        .send()
        .await?;
    let sidecar: Value = serde_json::from_slice(&sidecar.body.collect().await?.into_bytes())?;
    assert_eq!(sidecar["metadataAttributes"]["user_id"], ALICE);
    let row = item(&stack, ALICE, &manual_id).await;
    assert_eq!(
        row.get("status")
            .and_then(|v| v.as_s().ok())
            .map(String::as_str),
        Some("processing")
    );

    // The retry (a lost response, say) gets the same answer and stores nothing new.
    let again = manuals.invoke(request(ALICE)).await.response();
    let (status, replayed) = http(&again);
    assert_eq!((status, &replayed), (201, &body));
    let objects = stack
        .s3
        .list_objects_v2()
        .bucket(&stack.bucket)
        .prefix(fixtures::manuals_prefix(ALICE))
        .send()
        .await?;
    assert_eq!(objects.contents().len(), 2, "the file and its sidecar only");

    // An internal address is refused through the Lambda path too.
    let (status, body) = http(
        &manuals
            .invoke(api_event(
                "POST",
                "/api/manuals/download",
                BOB,
                Some(json!({"url": "http://169.254.169.254/latest/meta-data/"})),
            ))
            .await
            .response(),
    );
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("validation_failed"))
    );
    Ok(())
}

/// A PUT the way a client sends it to a pre-signed URL (moto speaks plain HTTP). Returns the
/// status code.
async fn put_to_link(url: &str, content_type: &str, body: &[u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let slash = rest.find('/').unwrap();
    let (authority, path) = rest.split_at(slash);
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(authority).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let status_line = String::from_utf8_lossy(&response);
    status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap()
}

async fn announce_upload(manuals: &mut Lambda, name: &str, size: usize) -> Value {
    let (status, body) = http(
        &manuals
            .invoke(api_event(
                "POST",
                "/api/manuals/upload-url",
                ALICE,
                Some(json!({"file_name": name, "content_type": "application/pdf", "size_bytes": size})),
            ))
            .await
            .response(),
    );
    assert_eq!(status, 201, "{body}");
    body
}

/// The row's status, status reason and sha256.
async fn status_of(stack: &Stack, manual_id: &str) -> (String, String, String) {
    let row = item(stack, ALICE, manual_id).await;
    let text = |name: &str| {
        row.get(name)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default()
    };
    (text("status"), text("status_reason"), text("sha256"))
}

#[tokio::test]
async fn a_manual_put_to_its_upload_link_is_processed_from_the_s3_event() -> TestResult {
    let (Some(moto), Some(manuals_bin), Some(process_bin)) = (
        moto(),
        binary("manuel-manuals"),
        binary("manuel-process-manual"),
    ) else {
        return Ok(());
    };
    let bedrock = FakeBedrock::start().await;
    let stack = stack(&moto, &bedrock).await;
    let mut manuals = Lambda::start(
        &manuals_bin,
        "manuel-manuals",
        &stack.env_of("manuel-manuals"),
    )
    .await;
    let mut process = Lambda::start(
        &process_bin,
        "manuel-process-manual",
        &stack.env_of("manuel-process-manual"),
    )
    .await;
    let pdf = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../local/tests/fixtures/printer-manual.pdf"
    ))?;
    let link = announce_upload(&mut manuals, "Big printer manual.pdf", pdf.len()).await;
    let manual_id = link["manual_id"].as_str().unwrap().to_owned();
    let key = link["key"].as_str().unwrap().to_owned();
    let url = link["upload_url"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&moto), "{url}");
    assert!(
        url.contains("X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost"),
        "{url}"
    );
    assert_eq!(link["headers"]["Content-Type"], "application/pdf");
    assert_eq!(status_of(&stack, &manual_id).await.0, "uploading");
    // Bedrock reads the sidecar when it ingests the file: it is written with the link.
    let sidecar = stack
        .s3
        .get_object()
        .bucket(&stack.bucket)
        .key(format!("{key}.metadata.json"))
        .send()
        .await?;
    let sidecar: Value = serde_json::from_slice(&sidecar.body.collect().await?.into_bytes())?;
    assert_eq!(
        sidecar["metadataAttributes"]["manual_id"],
        manual_id.as_str()
    );

    assert_eq!(put_to_link(&url, "application/pdf", &pdf).await, 200);
    let mut event: Value = serde_json::from_str(include_str!("fixtures/s3-object-created.json"))?;
    event["Records"][0]["s3"]["bucket"]["name"] = json!(stack.bucket);
    event["Records"][0]["s3"]["object"]["key"] = json!(key);
    process.invoke(event.clone()).await.response();
    let (status, _, sha256) = status_of(&stack, &manual_id).await;
    assert_eq!(status, "ready");
    let expected_sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&pdf));
    assert_eq!(sha256, expected_sha);
    assert!(
        item(&stack, ALICE, &format!("SHA#pending-{manual_id}"))
            .await
            .is_empty()
    );
    assert!(
        !item(&stack, ALICE, &format!("SHA#{expected_sha}"))
            .await
            .is_empty()
    );
    let (status, detail) = http(
        &manuals
            .invoke(api_event(
                "GET",
                &format!("/api/manuals/{manual_id}"),
                ALICE,
                None,
            ))
            .await
            .response(),
    );
    assert_eq!(
        (status, detail["pages"].as_u64()),
        (200, Some(6)),
        "{detail}"
    );

    // The same bytes through a second link: that manual fails naming the first, its object goes.
    let copy = announce_upload(&mut manuals, "copy.pdf", pdf.len()).await;
    let copy_id = copy["manual_id"].as_str().unwrap().to_owned();
    let copy_key = copy["key"].as_str().unwrap().to_owned();
    assert_eq!(
        put_to_link(
            copy["upload_url"].as_str().unwrap(),
            "application/pdf",
            &pdf
        )
        .await,
        200
    );
    event["Records"][0]["s3"]["object"]["key"] = json!(copy_key);
    process.invoke(event).await.response();
    let (status, reason, _) = status_of(&stack, &copy_id).await;
    assert_eq!(status, "failed");
    assert!(reason.contains(&manual_id), "{reason}");
    let listed = stack
        .s3
        .list_objects_v2()
        .bucket(&stack.bucket)
        .prefix(&copy_key)
        .send()
        .await?;
    assert!(listed.contents().is_empty(), "{listed:?}");
    Ok(())
}

#[tokio::test]
async fn each_vector_store_is_asked_for_the_search_it_has() -> TestResult {
    let (Some(moto), Some(query_bin)) = (moto(), binary("manuel-query")) else {
        return Ok(());
    };
    for (store, search) in [
        ("S3Vectors", "SEMANTIC"),
        ("OpenSearchServerless", "HYBRID"),
    ] {
        let bedrock = FakeBedrock::start().await;
        bedrock.set_converse_latency(std::time::Duration::ZERO);
        let stack = stack_with(&moto, &bedrock, store).await;
        fixtures::ready_manual(&stack, &bedrock, ALICE).await;
        let mut query =
            Lambda::start(&query_bin, "manuel-query", &stack.env_of("manuel-query")).await;
        let (status, answer) = http(&ask(&mut query, "How do I reset it?").await);
        assert_eq!(status, 200, "{store}: {answer}");
        assert_eq!(answer["context_found"], true, "{store}: {answer}");
        let retrievals = bedrock.requests("/retrieve");
        let asked = retrievals[0]
            .1
            .pointer("/retrievalConfiguration/vectorSearchConfiguration/overrideSearchType");
        assert_eq!(asked, Some(&json!(search)), "{store}");
        assert!(
            bedrock.denied().is_empty(),
            "{store}: {:?}",
            bedrock.denied()
        );

        if store == "S3Vectors" {
            // Told the wrong store, the function asks S3 Vectors for a hybrid search, which
            // Bedrock refuses: the question fails (503) and is given back.
            let mut env = stack.env_of("manuel-query");
            env.retain(|(name, _)| name != "VECTOR_STORE");
            env.push(("VECTOR_STORE".to_owned(), "OpenSearchServerless".to_owned()));
            let mut misconfigured = Lambda::start(&query_bin, "manuel-query", &env).await;
            let (status, body) = http(&ask(&mut misconfigured, "How do I reset it now?").await);
            assert_eq!(status, 503, "{body}");
        }
    }
    Ok(())
}

async fn ask(query: &mut Lambda, question: &str) -> Value {
    query
        .invoke(api_event(
            "POST",
            "/api/query",
            ALICE,
            Some(json!({ "question": question })),
        ))
        .await
        .response()
}

#[tokio::test]
async fn bedrock_throttling_is_retried_and_a_persistent_failure_opens_the_circuit_until_it_recovers()
-> TestResult {
    let (Some(moto), Some(query_bin)) = (moto(), binary("manuel-query")) else {
        return Ok(());
    };
    let bedrock = FakeBedrock::start().await;
    let mut stack = stack(&moto, &bedrock).await;
    for (name, value) in [
        ("RETRY_BEDROCK", "exponential:3:20:100"),
        ("CIRCUIT_FAILURE_THRESHOLD", "2"),
        ("CIRCUIT_COOLDOWN_SECONDS", "2"),
        ("CIRCUIT_SUCCESS_THRESHOLD", "1"),
    ] {
        stack.env.push((name.to_owned(), value.to_owned()));
    }
    // A ready manual of Alice's, and a passage of it in the knowledge base.
    fixtures::ready_manual(&stack, &bedrock, ALICE).await;
    let mut query = Lambda::start(&query_bin, "manuel-query", &stack.env_of("manuel-query")).await;
    let converse_calls = || bedrock.requests("/converse").len();
    // Throttling that clears: retried inside the same request, which succeeds.
    bedrock.fail("/converse", 429, "ThrottlingException", Some(2));
    let response = ask(&mut query, "How do I reset it?").await;
    let (status, answer) = http(&response);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["context_found"], true, "{answer}");
    assert_eq!(
        converse_calls(),
        3,
        "two throttled attempts and the one that worked"
    );
    assert_eq!(answer["usage"]["daily_used"], 1);

    // A persistent failure of the model itself: a 500 after the request was sent may have been
    // processed (and billed), so each request calls once and is not retried; after two the
    // breaker opens and the next request is refused without calling Bedrock, with a Retry-After.
    bedrock.fail("/converse", 500, "InternalServerException", None);
    for question in ["How do I restore it?", "What does reset do?"] {
        let (status, body) = http(&ask(&mut query, question).await);
        assert_eq!(
            (status, body["code"].as_str()),
            (503, Some("service_unavailable")),
            "{body}"
        );
    }
    let calls_when_open = converse_calls();
    assert_eq!(calls_when_open, 3 + 2);
    let refused = ask(&mut query, "Is there a factory reset?").await;
    let (status, body) = http(&refused);
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("service_unavailable")),
        "{body}"
    );
    let retry_after: u64 = header(&refused, "retry-after").unwrap().parse()?;
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert_eq!(
        converse_calls(),
        calls_when_open,
        "not called while the circuit is open"
    );

    let health = |deep: bool| {
        let mut event = api_event("GET", "/health", ALICE, None);
        if deep {
            event["queryStringParameters"] = json!({"deep": "true"});
            event["multiValueQueryStringParameters"] = json!({"deep": ["true"]});
        }
        event
    };
    let (status, report) = http(&query.invoke(health(true)).await.response());
    assert_eq!(status, 503, "{report}");
    assert_eq!(report["status"], "degraded");
    assert_eq!(
        report["dependencies"]["bedrock-converse"]["circuit"],
        "open"
    );
    assert_eq!(
        report["dependencies"]["bedrock-retrieve"]["circuit"],
        "closed"
    );
    let (status, plain) = http(&query.invoke(health(false)).await.response());
    assert_eq!((status, plain.get("dependencies")), (200, None));

    // After the cooldown one probe goes through; it succeeds and the circuit closes. The failed
    // questions were given back: two answers, two charged.
    bedrock.heal();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (status, answer) = http(&ask(&mut query, "How long do I hold the reset button?").await);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["usage"]["daily_used"], 2, "{answer}");
    let (status, report) = http(&query.invoke(health(true)).await.response());
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["dependencies"]["bedrock-converse"]["circuit"],
        "closed"
    );
    Ok(())
}

#[tokio::test]
async fn a_manual_that_still_fails_is_reported_to_the_dead_letter_queue_and_marked_failed()
-> TestResult {
    let (Some(moto), Some(manuals_bin), Some(process_bin)) = (
        moto(),
        binary("manuel-manuals"),
        binary("manuel-process-manual"),
    ) else {
        return Ok(());
    };
    let bedrock = FakeBedrock::start().await;
    let mut stack = stack(&moto, &bedrock).await;
    for (name, value) in [
        ("RETRY_BEDROCK", "fixed:2:10:10"),
        ("PROCESSING_ATTEMPTS", "fixed:2:10:10"),
    ] {
        stack.env.push((name.to_owned(), value.to_owned()));
    }
    let mut manuals = Lambda::start(
        &manuals_bin,
        "manuel-manuals",
        &stack.env_of("manuel-manuals"),
    )
    .await;
    let pdf = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../local/tests/fixtures/printer-manual.pdf"
    ))?;
    let upload = json!({
        "file_name": "Printer Manual.pdf",
        "file_data": base64::engine::general_purpose::STANDARD.encode(&pdf),
    });
    let (status, body) = http(
        &manuals
            .invoke(api_event(
                "POST",
                "/api/manuals/upload",
                ALICE,
                Some(upload),
            ))
            .await
            .response(),
    );
    assert_eq!(status, 201, "{body}");
    let manual_id = body["manual_id"].as_str().unwrap().to_owned();
    let key = body["key"].as_str().unwrap().to_owned();

    // The knowledge base refuses every ingestion: each attempt's call is retried, then the
    // attempts run out.
    bedrock.fail("/documents", 500, "InternalServerException", None);
    let mut process = Lambda::start(
        &process_bin,
        "manuel-process-manual",
        &stack.env_of("manuel-process-manual"),
    )
    .await;
    let mut event: Value = serde_json::from_str(include_str!("fixtures/s3-object-created.json"))?;
    event["Records"][0]["s3"]["bucket"]["name"] = json!(stack.bucket);
    event["Records"][0]["s3"]["object"]["key"] = json!(key);
    // Reported, so the invocation succeeds (Lambda does not retry it).
    process.invoke(event).await.response();
    assert_eq!(
        bedrock.requests("/documents").len(),
        4,
        "2 attempts × 2 calls"
    );

    let (status, reason, _) = status_of(&stack, &manual_id).await;
    assert_eq!(status, "failed");
    assert!(reason.contains("upload it again"), "{reason}");
    let received = stack
        .sqs
        .receive_message()
        .queue_url(&stack.dead_letters)
        .max_number_of_messages(10)
        .send()
        .await?;
    let messages = received.messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    let report: Value = serde_json::from_str(messages[0].body().unwrap())?;
    assert_eq!(report["service"], "bedrock-ingestion", "{report}");
    assert_eq!(report["operation"], "process-manual");
    assert_eq!(report["error_kind"], "unavailable");
    assert_eq!(report["attempts"], 2);
    assert_eq!(
        report["payload_ref"],
        format!("s3://{}/{key}", stack.bucket).as_str()
    );
    let alice_hash = hex::encode(&<sha2::Sha256 as sha2::Digest>::digest(ALICE.as_bytes())[..8]);
    assert_eq!(report["user_hash"], alice_hash.as_str());
    assert!(
        report["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{report}"
    );
    assert!(
        report["message"]
            .as_str()
            .is_some_and(|m| m.contains("InternalServerException")),
        "{report}"
    );
    assert!(chrono::DateTime::parse_from_rfc3339(report["time"].as_str().unwrap()).is_ok());
    // The user appears hashed; only the object key (the payload's address) holds the id.
    let mut without_payload = report.clone();
    without_payload["payload_ref"] = Value::Null;
    assert!(!without_payload.to_string().contains(ALICE), "{report}");
    Ok(())
}

#[tokio::test]
async fn a_dynamodb_outage_during_quota_reservation_is_a_503_and_never_free_usage() -> TestResult {
    let (Some(moto), Some(query_bin)) = (moto(), binary("manuel-query")) else {
        return Ok(());
    };
    let bedrock = FakeBedrock::start().await;
    let proxy = FaultProxy::start(&moto).await;
    let mut stack = stack(&moto, &bedrock).await;
    stack.env.extend([
        ("AWS_ENDPOINT_URL_DYNAMODB".to_owned(), proxy.url.clone()),
        ("RETRY_DYNAMODB".to_owned(), "fixed:2:10:10".to_owned()),
    ]);
    let mut query = Lambda::start(&query_bin, "manuel-query", &stack.env_of("manuel-query")).await;

    // Every reservation (one transaction over the day and month counters) fails.
    proxy.fail_target(
        "DynamoDB_20120810.TransactWriteItems",
        500,
        "InternalServerError",
        None,
    );
    let response = ask(&mut query, "How do I descale the machine?").await;
    let (status, body) = http(&response);
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("service_unavailable")),
        "{body}"
    );
    assert!(header(&response, "retry-after").is_some());
    assert_eq!(
        proxy.injected().len(),
        2,
        "tried twice: {:?}",
        proxy.injected()
    );
    assert!(
        bedrock.requests("/retrieve").is_empty(),
        "no work without a reservation"
    );
    assert!(
        bedrock.requests("/converse").is_empty(),
        "no answer without a reservation"
    );
    let counters = stack
        .dynamodb
        .scan()
        .table_name(
            stack
                .env
                .iter()
                .find(|(n, _)| n == "USAGE_TABLE")
                .unwrap()
                .1
                .clone(),
        )
        .send()
        .await?;
    assert_eq!(
        counters.count(),
        0,
        "nothing counted: {:?}",
        counters.items()
    );

    // Once DynamoDB is back, the question is answered and counted once.
    proxy.heal();
    let (status, body) = http(&ask(&mut query, "How do I descale the machine?").await);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["usage"]["daily_used"], 1, "{body}");
    Ok(())
}

#[tokio::test]
async fn an_s3_failure_during_upload_leaves_no_manual_record() -> TestResult {
    let (Some(moto), Some(manuals_bin)) = (moto(), binary("manuel-manuals")) else {
        return Ok(());
    };
    let bedrock = FakeBedrock::start().await;
    let proxy = FaultProxy::start(&moto).await;
    let mut stack = stack(&moto, &bedrock).await;
    stack.env.extend([
        ("AWS_ENDPOINT_URL_S3".to_owned(), proxy.url.clone()),
        ("RETRY_S3".to_owned(), "fixed:2:10:10".to_owned()),
    ]);
    let mut manuals = Lambda::start(
        &manuals_bin,
        "manuel-manuals",
        &stack.env_of("manuel-manuals"),
    )
    .await;
    // The manual's own PUT fails (its metadata sidecar is written first and succeeds).
    proxy.fail_path_ending("PUT", ".pdf", 503, "SlowDown", None);
    let upload = json!({
        "file_name": "Printer Manual.pdf",
        "file_data": base64::engine::general_purpose::STANDARD.encode(b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"),
    });
    let response = manuals
        .invoke(api_event(
            "POST",
            "/api/manuals/upload",
            ALICE,
            Some(upload),
        ))
        .await
        .response();
    let (status, body) = http(&response);
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("service_unavailable")),
        "{body}"
    );
    assert_eq!(
        proxy
            .injected()
            .iter()
            .filter(|what| what.ends_with(".pdf"))
            .count(),
        2,
        "{:?}",
        proxy.injected()
    );
    let rows = stack
        .dynamodb
        .query()
        .table_name(&stack.manuals_table)
        .key_condition_expression("user_id = :user")
        .expression_attribute_values(":user", AttributeValue::S(ALICE.to_owned()))
        .send()
        .await?;
    assert_eq!(rows.count(), 0, "no orphan record: {:?}", rows.items());
    let objects = stack
        .s3
        .list_objects_v2()
        .bucket(&stack.bucket)
        .prefix(fixtures::manuals_prefix(ALICE))
        .send()
        .await?;
    assert!(
        objects.contents().is_empty(),
        "no orphan sidecar: {:?}",
        objects.contents()
    );
    let (status, list) = http(
        &manuals
            .invoke(api_event("GET", "/api/manuals", ALICE, None))
            .await
            .response(),
    );
    assert_eq!((status, list["count"].as_u64()), (200, Some(0)));
    Ok(())
}

/// The usage report and the erasure of a user's data run with the usage function's role only:
/// every call the role does not allow fails as it would in AWS.
#[tokio::test]
async fn usage_report_and_erasure_run_with_the_usage_role_only() -> TestResult {
    let (Some(moto), Some(manuals_bin), Some(usage_bin)) =
        (moto(), binary("manuel-manuals"), binary("manuel-usage"))
    else {
        return Ok(());
    };
    let bedrock = FakeBedrock::start().await;
    let stack = stack(&moto, &bedrock).await;
    assert!(stack.iam_enforced());
    let mut manuals = Lambda::start(
        &manuals_bin,
        "manuel-manuals",
        &stack.env_of("manuel-manuals"),
    )
    .await;
    let mut usage = Lambda::start(&usage_bin, "manuel-usage", &stack.env_of("manuel-usage")).await;

    // An idempotent upload leaves a stored response that holds Alice's data.
    let pdf = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../local/tests/fixtures/printer-manual.pdf"
    ))?;
    let mut upload = api_event(
        "POST",
        "/api/manuals/upload",
        ALICE,
        Some(json!({
            "file_name": "Printer Manual.pdf",
            "file_data": base64::engine::general_purpose::STANDARD.encode(&pdf),
            "content_type": "application/pdf",
        })),
    );
    upload["headers"]["Idempotency-Key"] = json!("upload-1");
    upload["multiValueHeaders"]["Idempotency-Key"] = json!(["upload-1"]);
    let (status, body) = http(&manuals.invoke(upload).await.response());
    assert_eq!(status, 201, "{body}\n{}", manuals.stderr().join("\n"));

    let (status, report) = http(
        &usage
            .invoke(api_event("GET", "/api/user/usage", ALICE, None))
            .await
            .response(),
    );
    assert_eq!(status, 200, "{report}\n{}", usage.stderr().join("\n"));

    let (status, erased) = http(
        &usage
            .invoke(api_event("DELETE", "/api/user/data", ALICE, None))
            .await
            .response(),
    );
    assert_eq!(status, 200, "{erased}\n{}", usage.stderr().join("\n"));
    assert_eq!(erased["deleted"]["manuals"], 1, "{erased}");
    assert_eq!(erased["deleted"]["stored_responses"], 1, "{erased}");
    let left = stack
        .dynamodb
        .scan()
        .table_name(&stack.idempotency_table)
        .send()
        .await?;
    assert_eq!(left.count(), 0, "{:?}", left.items());
    let objects = stack
        .s3
        .list_objects_v2()
        .bucket(&stack.bucket)
        .send()
        .await?;
    assert!(objects.contents().is_empty(), "{:?}", objects.contents());
    Ok(())
}
