//! `POST /api/pdf-page` through the manuals Lambda binary against moto's S3: the page of the
//! caller's own manual is drawn with pdfium (the x86_64 library `make setup` installs; the
//! deployed function loads the aarch64 one from its layer), cached under `pages/` and linked
//! with a pre-signed GET that serves the PNG; another user's link, another bucket's URL and an
//! altered link are 404; deleting the manual deletes its cached pages.
// Fixture setup fails loudly: a test that cannot create its tables has nothing to say.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use manuel_lambda_harness::fixtures::{self, http, moto};
use manuel_lambda_harness::stack::{Stack, api_event, stack};
use manuel_lambda_harness::{FakeBedrock, Lambda, binary};
use serde_json::{Value, json};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const ALICE: &str = "7d8f2a10-1c2b-4e5f-9a8b-0c1d2e3f4a5b";
const BOB: &str = "0b0b0b0b-1c2b-4e5f-9a8b-0c1d2e3f4a5b";

/// The pdfium library `make setup` installs (`MANUEL_PDFIUM_LIB`, as the Makefile exports it).
fn pdfium_lib() -> String {
    std::env::var("MANUEL_PDFIUM_LIB").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../.tools/pdfium/libpdfium.so"
        )
        .to_owned()
    })
}

async fn call(
    lambda: &mut Lambda,
    method: &str,
    path: &str,
    user: &str,
    body: Option<Value>,
) -> (u64, Value) {
    http(
        &lambda
            .invoke(api_event(method, path, user, body))
            .await
            .response(),
    )
}

async fn keys_under(stack: &Stack, prefix: &str) -> Vec<String> {
    stack
        .s3
        .list_objects_v2()
        .bucket(&stack.bucket)
        .prefix(prefix)
        .send()
        .await
        .unwrap()
        .contents()
        .iter()
        .filter_map(|object| object.key().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn a_page_of_the_callers_own_manual_is_drawn_cached_in_s3_and_deleted_with_it() -> TestResult
{
    let (Some(moto), Some(manuals_bin)) = (moto(), binary("manuel-manuals")) else {
        return Ok(());
    };
    let bedrock = FakeBedrock::start().await;
    let stack = stack(&moto, &bedrock).await;
    let mut env = stack.env_of("manuel-manuals");
    env.retain(|(name, _)| name != "MANUEL_PDFIUM_LIB");
    env.push(("MANUEL_PDFIUM_LIB".to_owned(), pdfium_lib()));
    let mut manuals = Lambda::start(&manuals_bin, "manuel-manuals", &env).await;

    let pdf = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../local/tests/fixtures/printer-manual.pdf"
    ))?;
    let upload = json!({
        "fileName": "Printer Manual.pdf",
        "fileContent": base64::engine::general_purpose::STANDARD.encode(&pdf),
        "contentType": "application/pdf",
    });
    let (status, body) = call(
        &mut manuals,
        "POST",
        "/api/manuals/upload",
        ALICE,
        Some(upload),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let manual_id = body["manual_id"].as_str().unwrap().to_owned();
    // Only a ready manual's pages are drawn; processing it is process-manual's part (run from
    // its S3 event in functions_on_moto.rs), so here the record is left as processing leaves it.
    stack
        .dynamodb
        .update_item()
        .table_name(&stack.manuals_table)
        .key("user_id", AttributeValue::S(ALICE.to_owned()))
        .key("manual_id", AttributeValue::S(manual_id.clone()))
        .update_expression("SET #status = :ready, pages = :pages")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":ready", AttributeValue::S("ready".to_owned()))
        .expression_attribute_values(":pages", AttributeValue::N("6".to_owned()))
        .send()
        .await?;
    let (status, detail) = call(
        &mut manuals,
        "GET",
        &format!("/api/manuals/{manual_id}"),
        ALICE,
        None,
    )
    .await;
    assert_eq!(status, 200, "{detail}");
    let pdf_url = detail["pdfUrl"].as_str().unwrap().to_owned();
    assert!(pdf_url.contains("X-Amz-Signature"), "{pdf_url}");

    let request = json!({
        "pdf_url": pdf_url,
        "page_number": 1,
        "highlight_text": "printer",
        "highlight_color": "green",
    });
    let (status, drawn) = call(
        &mut manuals,
        "POST",
        "/api/pdf-page",
        ALICE,
        Some(request.clone()),
    )
    .await;
    assert_eq!(status, 200, "{drawn}");
    assert_eq!(drawn["cached"], false, "{drawn}");
    assert_eq!(drawn["highlight_color"], "green", "{drawn}");
    assert!(
        drawn["width"].as_u64().is_some_and(|width| width > 1000),
        "{drawn}"
    );
    let image_url = drawn["page_image_url"].as_str().unwrap();
    assert!(image_url.contains("X-Amz-Signature"), "{image_url}");
    let image = reqwest::get(image_url).await?;
    assert_eq!(image.status().as_u16(), 200);
    assert_eq!(
        image
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("image/png")
    );
    assert!(image.bytes().await?.starts_with(b"\x89PNG\r\n\x1a\n"));
    let prefix = format!("{}{manual_id}/", fixtures::pages_prefix(ALICE));
    assert_eq!(
        keys_under(&stack, &prefix).await.len(),
        2,
        "the PNG and its details"
    );
    let (_, again) = call(&mut manuals, "POST", "/api/pdf-page", ALICE, Some(request)).await;
    assert_eq!(again["cached"], true, "{again}");

    // Bob with Alice's link, a URL of another bucket on the same endpoint, and an altered
    // link: 404, and nothing was drawn for them.
    let other_bucket =
        pdf_url.replacen(&format!("/{}/", stack.bucket), "/someone-elses-bucket/", 1);
    let altered = pdf_url.replacen(&manual_id, "00000000-0000-4000-8000-000000000000", 1);
    for (user, url) in [
        (BOB, pdf_url.as_str()),
        (ALICE, other_bucket.as_str()),
        (ALICE, altered.as_str()),
    ] {
        let (status, body) = call(
            &mut manuals,
            "POST",
            "/api/pdf-page",
            user,
            Some(json!({"pdf_url": url, "page_number": 1})),
        )
        .await;
        assert_eq!(status, 404, "{url}: {body}");
    }
    assert!(
        keys_under(&stack, &fixtures::pages_prefix(BOB))
            .await
            .is_empty()
    );

    // The CLI deletes by the storage key, URL-encoded (`encodeURIComponent`).
    let encoded_key =
        format!("{}{manual_id}.pdf", fixtures::manuals_prefix(ALICE)).replace('/', "%2F");
    let (status, body) = call(
        &mut manuals,
        "DELETE",
        &format!("/api/manuals/{encoded_key}"),
        BOB,
        None,
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = call(
        &mut manuals,
        "DELETE",
        &format!("/api/manuals/{encoded_key}"),
        ALICE,
        None,
    )
    .await;
    assert_eq!(
        status,
        200,
        "{body}\n{}\n{:?}",
        manuals.stderr().join("\n"),
        bedrock.denied()
    );
    assert!(
        keys_under(&stack, &prefix).await.is_empty(),
        "cached pages outlived the manual"
    );
    Ok(())
}
