//! One bad manual must never take the service down (issue 21): a decompression-bomb PDF, a
//! manual bigger than the limits, a server killed in the middle of an ingestion, and one user's
//! big manuals next to another user's small one — against the real manuel-local binary.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::{Server, TestResult};
use flate2::Compression;
use flate2::write::ZlibEncoder;
use manuel_core::test_pdf::pdf_of;
use serde_json::{Value, json};

const MIB: u64 = 1 << 20;
/// What manuel-local may hold at its peak while a bomb is ingested: the server itself (models,
/// index, runtime) with its ingest workers being other processes. Measured ~200-260 MB.
const SERVER_PEAK_BOUND: u64 = 600 * MIB;
/// What the bomb's one content stream inflates to (~590 KB compressed: deflate repeats a
/// 62-byte line at about 340:1).
const BOMB_INFLATED: u64 = 192 * MIB;

/// A one-page PDF whose single content stream inflates to `inflated` bytes of text-drawing
/// operators; written as it is compressed, so the test never holds the inflated text.
fn bomb_pdf(inflated: u64) -> TestResult<Vec<u8>> {
    let block = b"BT /F1 12 Tf 72 720 Td (Press the red button to start) Tj ET\n".repeat(16_384);
    let mut encoder = ZlibEncoder::new(Vec::new(), Compression::best());
    let mut written = 0u64;
    while written < inflated {
        encoder.write_all(&block)?;
        written += block.len() as u64;
    }
    Ok(pdf_with_content(&encoder.finish()?))
}

fn pdf_with_content(stream: &[u8]) -> Vec<u8> {
    let mut content = format!(
        "<< /Length {} /Filter /FlateDecode >>\nstream\n",
        stream.len()
    )
    .into_bytes();
    content.extend_from_slice(stream);
    content.extend_from_slice(b"\nendstream");
    pdf_of(vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>".to_vec(),
        content,
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_vec(),
    ])
}

/// A PDF whose one page with text sits under `depth` levels of page-tree nodes.
fn deep_page_tree_pdf(depth: usize) -> Vec<u8> {
    let text = b"BT /F1 12 Tf 72 720 Td (Press the red button to start) Tj ET";
    let mut objects = vec![
        b"<< /Type /Catalog /Pages 4 0 R >>".to_vec(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_vec(),
        [
            format!("<< /Length {} >>\nstream\n", text.len()).as_bytes(),
            text,
            b"\nendstream",
        ]
        .concat(),
    ];
    // Objects 4 .. 4 + depth - 1 are the nodes, the last one the page.
    for level in 0..depth {
        let number = 4 + level;
        let parent = if level == 0 {
            String::new()
        } else {
            format!(" /Parent {} 0 R", number - 1)
        };
        objects.push(
            format!(
                "<< /Type /Pages /Kids [{} 0 R] /Count 1{parent} >>",
                number + 1
            )
            .into_bytes(),
        );
    }
    objects.push(
        format!(
            "<< /Type /Page /Parent {} 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 2 0 R >> >> /Contents 3 0 R >>",
            3 + depth
        )
        .into_bytes(),
    );
    pdf_of(objects)
}

/// A plain-text manual of `sections` sections of real-looking prose, each its own page.
fn long_manual(title: &str, sections: usize) -> Vec<u8> {
    let nouns = [
        "filter", "valve", "drum", "hose", "panel", "belt", "sensor", "door",
    ];
    let verbs = ["clean", "replace", "check", "tighten", "inspect", "remove"];
    let mut text = format!("{title}\n{}\n\n", "=".repeat(title.len()));
    for section in 1..=sections {
        let noun = nouns[section % nouns.len()];
        text.push_str(&format!(
            "Part {section}: the {noun}\n{}\n\n",
            "-".repeat(20)
        ));
        for step in 1..=12 {
            let verb = verbs[(section + step) % verbs.len()];
            text.push_str(&format!(
                "Step {step}. {verb} the {noun} number {section}-{step} before you press the start button, then wait {step} minutes and {verb} it again.\n\n"
            ));
        }
    }
    text.into_bytes()
}

async fn upload_id(server: &Server, token: &str, name: &str, bytes: &[u8]) -> TestResult<String> {
    let (status, body) = server.upload(token, name, bytes).await?;
    assert_eq!(status, 201, "{body}");
    Ok(body["manual_id"].as_str().ok_or("no manual_id")?.to_owned())
}

async fn status_of(server: &Server, token: &str, id: &str) -> TestResult<Value> {
    let (status, body) = server.get(token, &format!("/api/manuals/{id}")).await?;
    assert_eq!(status, 200, "{body}");
    Ok(body)
}

/// Waits (up to `limit`) until `id` leaves `processing`.
async fn wait_done(server: &Server, token: &str, id: &str, limit: Duration) -> TestResult<Value> {
    let deadline = Instant::now() + limit;
    loop {
        let body = status_of(server, token, id).await?;
        if body["status"] != "processing" {
            return Ok(body);
        }
        if Instant::now() > deadline {
            return Err(format!("{id} still processing after {limit:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether process `pid` is alive (a zombie is not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

async fn wait_gone(pids: &[u32], limit: Duration) -> TestResult {
    let deadline = Instant::now() + limit;
    while pids.iter().any(|&pid| alive(pid)) {
        if Instant::now() > deadline {
            return Err(format!("processes {pids:?} still alive after {limit:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn reason(detail: &Value) -> &str {
    detail["status_reason"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn a_decompression_bomb_fails_at_the_content_limit_while_other_users_are_served() -> TestResult
{
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let (alice, bob) = (server.token("alice")?, server.token("bob")?);
    let bomb = bomb_pdf(BOMB_INFLATED)?;
    assert!(bomb.len() < 700_000, "the bomb is {} bytes", bomb.len());

    let bomb_id = upload_id(&server, &alice, "bomb.pdf", &bomb).await?;
    let small = b"# Kettle\n\nDescale the kettle every month with white vinegar.".to_vec();
    let small_id = upload_id(&server, &bob, "kettle.md", &small).await?;

    let failed = wait_done(&server, &alice, &bomb_id, Duration::from_secs(60)).await?;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        reason(&failed).contains("decompressed content per page (32 MiB)"),
        "{failed}"
    );
    let ready = wait_done(&server, &bob, &small_id, Duration::from_secs(60)).await?;
    assert_eq!(ready["status"], "ready", "{ready}");
    // The server never draws it either (pdf-page would run pdfium in the server's process).
    let pdf_url = failed["pdfUrl"].as_str().ok_or("no pdfUrl")?;
    let (status, body) = server
        .post(
            &alice,
            "/api/pdf-page",
            &serde_json::json!({"pdf_url": pdf_url, "page_number": 1}),
        )
        .await?;
    common::assert_error(status, &body, 409, "conflict");
    let peak = server.peak_rss()?;
    assert!(
        peak < SERVER_PEAK_BOUND,
        "server peak RSS {} MiB",
        peak / MIB
    );
    // Nothing of the bomb is searchable, and it can be deleted.
    let (status, body) = server
        .delete(&alice, &format!("/api/manuals/{bomb_id}"))
        .await?;
    assert!(status == 200 || status == 204, "{status} {body}");
    server.stop()
}

#[tokio::test]
async fn a_bomb_past_the_stream_check_is_stopped_by_the_workers_memory_limit() -> TestResult {
    let dir = tempfile::tempdir()?;
    // The cheap stream check is set out of the way, so pdfium gets the bomb: the worker's
    // memory limit must contain it.
    let server = Server::start_with_env(
        dir.path(),
        &[],
        &[
            ("INGEST_MAX_PAGE_CONTENT_MB", "100000"),
            ("INGEST_MAX_DOCUMENT_CONTENT_MB", "100000"),
            ("INGEST_MAX_MEMORY_MB", "400"),
        ],
    )?;
    let (alice, bob) = (server.token("alice")?, server.token("bob")?);
    let started = Instant::now();
    let bomb_id = upload_id(&server, &alice, "bomb.pdf", &bomb_pdf(BOMB_INFLATED)?).await?;
    let small_id = upload_id(
        &server,
        &bob,
        "kettle.md",
        b"# Kettle\n\nDescale the kettle every month with white vinegar.",
    )
    .await?;
    let ready = wait_done(&server, &bob, &small_id, Duration::from_secs(60)).await?;
    assert_eq!(ready["status"], "ready", "{ready}");
    let failed = wait_done(&server, &alice, &bomb_id, Duration::from_secs(120)).await?;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        reason(&failed).contains("memory limit for processing one manual (400 MiB)"),
        "{failed}"
    );
    let peak = server.peak_rss()?;
    eprintln!(
        "bomb stopped by the memory limit after {:?}; server peak RSS {} MiB",
        started.elapsed(),
        peak / MIB
    );
    assert!(
        peak < SERVER_PEAK_BOUND,
        "server peak RSS {} MiB",
        peak / MIB
    );
    assert!(server.children().is_empty(), "a worker outlived its manual");
    // The server still answers.
    let (status, _) = server.get(&bob, "/api/manuals").await?;
    assert_eq!(status, 200);
    server.stop()
}

#[tokio::test]
async fn manuals_over_the_text_page_and_chunk_limits_fail_naming_the_limit() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = Server::start_with_env(
        dir.path(),
        &[],
        &[
            ("INGEST_MAX_MANUAL_TEXT_MB", "1"),
            ("INGEST_MAX_PAGES", "50"),
            ("INGEST_MAX_CHUNKS", "20"),
        ],
    )?;
    let alice = server.token("alice")?;
    let cases: [(&str, Vec<u8>, &str); 3] = [
        (
            "one-word.md",
            format!("# Word\n\n{}", "word ".repeat(300_000)).into_bytes(),
            "text per manual (1 MiB)",
        ),
        (
            "pages.txt",
            "word\x0c".repeat(100_000).into_bytes(),
            "page limit (50 pages per manual)",
        ),
        (
            "chunks.txt",
            long_manual("Washer", 30),
            "search passages per manual (20)",
        ),
    ];
    for (name, bytes, expected) in cases {
        let id = upload_id(&server, &alice, name, &bytes).await?;
        let detail = wait_done(&server, &alice, &id, Duration::from_secs(60)).await?;
        assert_eq!(detail["status"], "failed", "{name}: {detail}");
        assert!(reason(&detail).contains(expected), "{name}: {detail}");
    }
    // A page tree 5,000 levels deep is a damaged page structure, not a manual without text.
    let shallow = deep_page_tree_pdf(3);
    let id = upload_id(&server, &alice, "shallow.pdf", &shallow).await?;
    let detail = wait_done(&server, &alice, &id, Duration::from_secs(60)).await?;
    assert_eq!(
        detail["status"], "ready",
        "the generator makes readable trees: {detail}"
    );
    let id = upload_id(&server, &alice, "deep.pdf", &deep_page_tree_pdf(5_000)).await?;
    let detail = wait_done(&server, &alice, &id, Duration::from_secs(60)).await?;
    assert_eq!(detail["status"], "failed", "{detail}");
    assert!(
        !reason(&detail).contains("No text could be extracted"),
        "{detail}"
    );
    server.stop()
}

#[tokio::test]
async fn a_user_with_big_manuals_does_not_delay_another_users_small_one() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &["--ingest-workers", "2"])?;
    let (alice, bob) = (server.token("alice")?, server.token("bob")?);
    let big_one = upload_id(&server, &alice, "washer.txt", &long_manual("Washer", 150)).await?;
    let big_two = upload_id(&server, &alice, "dryer.txt", &long_manual("Dryer", 150)).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let small = upload_id(
        &server,
        &bob,
        "kettle.md",
        b"# Kettle\n\nDescale the kettle every month with white vinegar.",
    )
    .await?;
    let ready = wait_done(&server, &bob, &small, Duration::from_secs(60)).await?;
    assert_eq!(ready["status"], "ready", "{ready}");
    for big in [&big_one, &big_two] {
        let detail = status_of(&server, &alice, big).await?;
        assert_eq!(
            detail["status"], "processing",
            "bob's small manual waited: {detail}"
        );
    }

    // SIGTERM in the middle of alice's ingestion: the server is gone within seconds, its
    // worker with it, and alice's manuals are resumed at the next start.
    let workers = server.children();
    assert!(!workers.is_empty(), "no ingest worker is running");
    let stopping = Instant::now();
    server.stop()?;
    let took = stopping.elapsed();
    assert!(took < Duration::from_secs(5), "SIGTERM took {took:?}");
    wait_gone(&workers, Duration::from_secs(2)).await?;
    let server = Server::start(dir.path(), &[])?;
    for big in [&big_one, &big_two] {
        let detail = status_of(&server, &alice, big).await?;
        assert_eq!(detail["status"], "processing", "{detail}");
    }
    server.stop()
}

#[tokio::test]
async fn a_manual_whose_ingestion_crashed_the_server_twice_is_not_resumed_again() -> TestResult {
    let dir = tempfile::tempdir()?;
    let big = long_manual("Washer", 400);
    let mut big_id = String::new();
    let small = b"# Kettle\n\nDescale the kettle every month with white vinegar.";
    let mut small_id = String::new();
    for round in 0..2 {
        let server = Server::start(dir.path(), &["--ingest-workers", "1"])?;
        if round == 0 {
            let alice = server.token("alice")?;
            big_id = upload_id(&server, &alice, "washer.txt", &big).await?;
        }
        // Wait until a worker is on it, then kill the server as a crash would.
        let deadline = Instant::now() + Duration::from_secs(30);
        let workers = loop {
            let workers = server.children();
            if !workers.is_empty() {
                break workers;
            }
            if Instant::now() > deadline {
                return Err("no ingest worker started".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        if round == 1 {
            // Queued behind the big one (one worker): it must still be processed.
            let bob = server.token("bob")?;
            small_id = upload_id(&server, &bob, "kettle.md", small).await?;
        }
        server.crash()?;
        // The worker notices its server is gone and exits by itself.
        wait_gone(&workers, Duration::from_secs(5)).await?;
    }
    let server = Server::start(dir.path(), &["--ingest-workers", "1"])?;
    let (alice, bob) = (server.token("alice")?, server.token("bob")?);
    let detail = status_of(&server, &alice, &big_id).await?;
    assert_eq!(detail["status"], "failed", "{detail}");
    assert!(
        reason(&detail).contains("could not be processed"),
        "{detail}"
    );
    let ready = wait_done(&server, &bob, &small_id, Duration::from_secs(60)).await?;
    assert_eq!(ready["status"], "ready", "{ready}");
    let (status, body) = server
        .delete(&alice, &format!("/api/manuals/{big_id}"))
        .await?;
    assert!(status == 200 || status == 204, "{status} {body}");
    server.stop()
}

#[tokio::test]
async fn a_page_that_breaks_the_renderer_costs_one_request_not_the_server() -> TestResult {
    let dir = tempfile::tempdir()?;
    // 16 MB is less than pdfium needs to draw a page at 144 dpi (about 40 MB): every drawing
    // dies in its worker, as a hostile PDF's would.
    let server = Server::start_with_env(dir.path(), &[], &[("RENDER_MAX_MEMORY_MB", "16")])?;
    let alice = server.token("alice")?;
    let detail = server
        .upload_ready(
            &alice,
            "printer.pdf",
            &common::fixture("printer-manual.pdf"),
        )
        .await?;
    assert!(detail["pdfUrl"].is_string(), "{detail}");
    let page = json!({"pdf_url": detail["pdfUrl"], "page_number": 2, "highlight_text": "paper"});
    let before = server.peak_rss()?;
    for _ in 0..3 {
        let (status, body) = server.post(&alice, "/api/pdf-page", &page).await?;
        common::assert_error(status, &body, 415, "unsupported_media_type");
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|message| message.contains("RENDER_MAX_MEMORY_MB = 16 MB")),
            "{body}"
        );
    }
    assert!(
        server.children().is_empty(),
        "a render worker outlived its request"
    );
    assert!(
        server.peak_rss()? < before + 64 * MIB,
        "the server's own memory grew by drawing"
    );
    let (status, _) = server.get(&alice, "/api/manuals").await?;
    assert_eq!(status, 200, "the server still answers");
    server.stop()
}
