//! process-manual's memory on the largest manual it accepts (issue 19): a 48.9 MB illustrated
//! PDF announced through the manuals function's upload link, stored in moto's S3, and processed
//! from its S3 event by the release binary under its role's credentials, as in AWS. The peak
//! resident set (`VmHWM`) stands for Lambda's "Max Memory Used", against the function's
//! `LambdaMemorySize` (512 MB by default).
//!
//! The S3 download is on loopback and the knowledge base is the recording fake, so the time is
//! process-manual's own work, not AWS's.

use std::path::Path;
use std::time::Instant;

use aws_sdk_dynamodb::types::AttributeValue;
use manuel_lambda_harness::stack::{api_event, stack};
use manuel_lambda_harness::{FakeBedrock, Invocation, Lambda};
use rand::RngCore;
use serde::Serialize;
use serde_json::{Value, json};

const USER: &str = "0e6a4c2b-8d1f-4b7a-9c3e-5f2d1a0b9c8d";
/// Just under the knowledge base's 50 MB a file ([`manuel_aws`]'s `MAX_DOCUMENT_BYTES`).
const PAGES: usize = 300;
const IMAGE_BYTES: usize = 160_000;

#[derive(Serialize)]
pub struct LargeManualResult {
    pub manual_bytes: u64,
    pub pages: usize,
    /// The S3 event in → process-manual's answer.
    pub seconds: f64,
    pub status: String,
    pub status_reason: String,
    pub peak_rss_kib: u64,
}

pub async fn run(
    bin_dir: &Path,
    moto: &str,
) -> Result<LargeManualResult, Box<dyn std::error::Error>> {
    let mut rng = rand::thread_rng();
    let pdf = manuel_core::test_pdf::illustrated_manual(PAGES, IMAGE_BYTES, |pixels| {
        rng.fill_bytes(pixels)
    });
    let bedrock = FakeBedrock::start().await;
    let stack = stack(moto, &bedrock).await;
    let mut manuals = Lambda::start(
        &bin_dir.join("manuel-manuals"),
        "manuel-manuals",
        &stack.env_of("manuel-manuals"),
    )
    .await;
    let announced = match manuals
        .invoke(api_event(
            "POST",
            "/api/manuals/upload-url",
            USER,
            Some(json!({"file_name": "Espresso machine service manual.pdf",
                        "content_type": "application/pdf", "size_bytes": pdf.len()})),
        ))
        .await
    {
        Invocation::Response(response) => response,
        other => return Err(format!("the upload link was not given: {other:?}").into()),
    };
    let link: Value = serde_json::from_str(announced["body"].as_str().unwrap_or_default())?;
    let (Some(manual_id), Some(key)) = (link["manual_id"].as_str(), link["key"].as_str()) else {
        return Err(format!("the upload link was not given: {announced}").into());
    };
    stack
        .s3
        .put_object()
        .bucket(&stack.bucket)
        .key(key)
        .content_type("application/pdf")
        .body(pdf.clone().into())
        .send()
        .await?;

    let mut process = Lambda::start(
        &bin_dir.join("manuel-process-manual"),
        "manuel-process-manual",
        &stack.env_of("manuel-process-manual"),
    )
    .await;
    let mut event: Value = serde_json::from_str(include_str!(
        "../../lambda-harness/tests/fixtures/s3-object-created.json"
    ))?;
    event["Records"][0]["s3"]["bucket"]["name"] = json!(stack.bucket);
    event["Records"][0]["s3"]["object"]["key"] = json!(key);
    event["Records"][0]["s3"]["object"]["size"] = json!(pdf.len());
    let started = Instant::now();
    if let Invocation::Error(error) = process.invoke(event).await {
        return Err(format!("process-manual reported an error: {error}").into());
    }
    let seconds = started.elapsed().as_secs_f64();
    let pid = process.pid().ok_or("process-manual exited")?;
    let peak_rss_kib = crate::lambdas::vm_hwm_kib(pid, "VmHWM:");
    let row = stack
        .dynamodb
        .get_item()
        .table_name(&stack.manuals_table)
        .key("user_id", AttributeValue::S(USER.to_owned()))
        .key("manual_id", AttributeValue::S(manual_id.to_owned()))
        .send()
        .await?;
    let text = |name: &str| {
        row.item()
            .and_then(|item| item.get(name))
            .and_then(|value| value.as_s().ok())
            .cloned()
            .unwrap_or_default()
    };
    let result = LargeManualResult {
        manual_bytes: pdf.len() as u64,
        pages: PAGES,
        seconds,
        status: text("status"),
        status_reason: text("status_reason"),
        peak_rss_kib,
    };
    eprintln!(
        "lambda: manuel-process-manual on a {:.1} MB manual: {} in {:.1} s, peak RSS {:.0} MiB",
        result.manual_bytes as f64 / 1e6,
        result.status,
        result.seconds,
        result.peak_rss_kib as f64 / 1024.0
    );
    Ok(result)
}
