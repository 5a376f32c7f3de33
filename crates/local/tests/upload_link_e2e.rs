//! `POST /api/manuals/upload-url` over HTTP: a manual announced, its bytes PUT to the signed
//! link, processed to `ready` and answerable; altered, expired, reused and mismatched PUTs
//! refused; bad announcements refused with clear errors; another user never sees it.

mod common;

use std::time::{Duration, Instant};

use common::{Server, TestResult, assert_error, fixture};
use serde_json::{Value, json};

async fn announce(server: &Server, token: &str, body: &Value) -> TestResult<(u16, Value)> {
    server.post(token, "/api/manuals/upload-url", body).await
}

/// PUTs `bytes` to the link with the headers it asks for (Content-Length is set by the client).
async fn put(server: &Server, link: &Value, bytes: Vec<u8>) -> TestResult<(u16, Value)> {
    let url = link["upload_url"].as_str().ok_or("no upload_url")?;
    let content_type = link["headers"]["Content-Type"]
        .as_str()
        .ok_or("no Content-Type")?;
    server
        .send(
            server
                .client
                .put(url)
                .header("Content-Type", content_type)
                .body(bytes),
        )
        .await
}

async fn wait_for_status(server: &Server, token: &str, id: &str, want: &str) -> TestResult<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = server.get(token, &format!("/api/manuals/{id}")).await?;
        if status == 200 && body["status"] == want {
            return Ok(body);
        }
        if Instant::now() > deadline {
            return Err(format!("manual {id} never became {want}: {status} {body}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_manual_uploaded_through_its_link_becomes_ready_and_answers() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let alice = server.token("alice")?;
    let bob = server.token("bob")?;
    let pdf = fixture("printer-manual.pdf");

    let (status, link) = announce(
        &server,
        &alice,
        &json!({"file_name": "Printer manual.pdf", "content_type": "application/pdf", "size_bytes": pdf.len()}),
    )
    .await?;
    assert_eq!(status, 201, "{link}");
    assert_eq!(link["method"], "PUT");
    assert_eq!(link["status"], "uploading");
    assert_eq!(link["headers"]["Content-Type"], "application/pdf");
    assert_eq!(link["headers"]["Content-Length"], pdf.len().to_string());
    assert_eq!(link["expires_in"], 900);
    let id = link["manual_id"].as_str().ok_or("no manual_id")?.to_owned();

    // Waiting for its bytes: listed as uploading, no file to link to, not searchable.
    let (_, detail) = server.get(&alice, &format!("/api/manuals/{id}")).await?;
    assert_eq!(detail["status"], "uploading", "{detail}");
    assert_eq!(detail["download_url"], Value::Null);
    let (status, _) = server.get(&bob, &format!("/api/manuals/{id}")).await?;
    assert_eq!(status, 404);

    // The link grants exactly what it says.
    let url = link["upload_url"].as_str().ok_or("no url")?.to_owned();
    let tampered = url.replace(
        &format!("length={}", pdf.len()),
        &format!("length={}", pdf.len() + 1),
    );
    let mut longer = pdf.clone();
    longer.push(b'\n');
    let (status, body) = put(
        &server,
        &json!({"upload_url": tampered, "headers": link["headers"]}),
        longer,
    )
    .await?;
    assert_error(status, &body, 403, "forbidden");
    let other_key = url.replace(&format!("/{id}.pdf"), &format!("/{}.pdf", uuid_like()));
    let (status, body) = put(
        &server,
        &json!({"upload_url": other_key, "headers": link["headers"]}),
        pdf.clone(),
    )
    .await?;
    assert_error(status, &body, 403, "forbidden");
    let (status, body) = server
        .send(
            server
                .client
                .put(&url)
                .header("Content-Type", "text/plain")
                .body(pdf.clone()),
        )
        .await?;
    assert_error(status, &body, 403, "forbidden");
    // A body of another length declares another Content-Length: refused before it is read,
    // as S3 refuses a pre-signed PUT whose signed Content-Length differs.
    let (status, body) = put(&server, &link, pdf[..pdf.len() - 1].to_vec()).await?;
    assert_error(status, &body, 403, "forbidden");

    let (status, body) = put(&server, &link, pdf.clone()).await?;
    assert_eq!(status, 200, "{body}");
    let ready = wait_for_status(&server, &alice, &id, "ready").await?;
    assert!(ready["pages"].as_u64().unwrap_or(0) >= 1, "{ready}");
    assert!(
        ready["download_url"]
            .as_str()
            .is_some_and(|u| u.contains("/files/")),
        "{ready}"
    );
    // A used link cannot replace the file.
    let (status, body) = put(&server, &link, pdf.clone()).await?;
    assert_error(status, &body, 409, "conflict");

    let answer = server
        .ask(&alice, "How do I replace the ink cartridge?")
        .await?;
    assert_eq!(answer["context_found"], true, "{answer}");
    assert!(
        answer["sources"]
            .as_array()
            .is_some_and(|sources| sources.iter().any(|s| s["manual_id"] == id.as_str())),
        "{answer}"
    );
    let theirs = server
        .ask(&bob, "How do I replace the ink cartridge?")
        .await?;
    assert_eq!(theirs["context_found"], false, "{theirs}");

    // The same bytes again through a second link: that manual fails and says which it repeats.
    let (_, again) = announce(
        &server,
        &alice,
        &json!({"fileName": "copy.pdf", "contentType": "application/pdf", "sizeBytes": pdf.len()}),
    )
    .await?;
    let copy = again["manual_id"]
        .as_str()
        .ok_or("no manual_id")?
        .to_owned();
    let (status, _) = put(&server, &again, pdf.clone()).await?;
    assert_eq!(status, 200);
    let failed = wait_for_status(&server, &alice, &copy, "failed").await?;
    assert!(
        failed["status_reason"]
            .as_str()
            .is_some_and(|reason| reason.contains(&id)),
        "{failed}"
    );
    server.stop()
}

fn uuid_like() -> &'static str {
    "00000000-0000-4000-8000-000000000000"
}

#[tokio::test]
async fn bad_announcements_and_expired_links_are_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = Server::start_with_env(
        dir.path(),
        &["--max-upload-link-mb", "1"],
        &[("UPLOAD_LINK_TTL_SECONDS", "1")],
    )?;
    let alice = server.token("alice")?;
    let cases = [
        (
            json!({"file_name": "a.pdf", "content_type": "application/pdf", "size_bytes": 0}),
            400,
            "validation_failed",
        ),
        (
            json!({"file_name": "a.pdf", "content_type": "application/pdf", "size_bytes": 2 * 1024 * 1024}),
            413,
            "payload_too_large",
        ),
        (
            json!({"file_name": "a.html", "content_type": "text/html", "size_bytes": 10}),
            415,
            "unsupported_media_type",
        ),
        (
            json!({"file_name": "...", "content_type": "text/plain", "size_bytes": 10}),
            400,
            "validation_failed",
        ),
        (
            json!({"file_name": "a.pdf", "content_type": "application/pdf", "size_bytes": -1}),
            400,
            "validation_failed",
        ),
        (
            json!({"file_name": "a.pdf", "content_type": "application/pdf"}),
            400,
            "validation_failed",
        ),
    ];
    for (body, status_wanted, code) in cases {
        let (status, response) = announce(&server, &alice, &body).await?;
        assert_error(status, &response, status_wanted, code);
    }
    let (status, _) = server
        .send(
            server
                .client
                .post(server.url("/api/manuals/upload-url"))
                .json(
                    &json!({"file_name": "a.txt", "content_type": "text/plain", "size_bytes": 10}),
                ),
        )
        .await?;
    assert_eq!(status, 401);

    let text = b"Descale the kettle every month.\n".to_vec();
    let (status, link) = announce(
        &server,
        &alice,
        &json!({"file_name": "kettle.txt", "content_type": "text/plain", "size_bytes": text.len()}),
    )
    .await?;
    assert_eq!(status, 201, "{link}");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, body) = put(&server, &link, text).await?;
    assert_error(status, &body, 403, "forbidden");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|m| m.contains("expired")),
        "{body}"
    );
    server.stop()
}

/// A user may mint only so many upload links per link lifetime (10 in a window of
/// `UPLOAD_LINK_TTL_SECONDS`): each one announces up to the upload-link limit of bytes, so
/// unlimited links would be unlimited announced storage. The 11th is a 429 with the time until
/// the window turns; another user is not affected.
#[tokio::test]
async fn upload_links_per_user_are_capped_per_link_lifetime() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let (alice, bob) = (server.token("alice")?, server.token("bob")?);
    let announcement = |n: usize| json!({"file_name": format!("manual-{n}.txt"), "content_type": "text/plain", "size_bytes": 10});
    for n in 0..10 {
        let (status, link) = announce(&server, &alice, &announcement(n)).await?;
        assert_eq!(status, 201, "link {n}: {link}");
    }
    let (status, refused) = announce(&server, &alice, &announcement(10)).await?;
    assert_error(status, &refused, 429, "rate_limited");
    let retry_after = refused["retry_after"].as_u64().ok_or("no retry_after")?;
    assert!((1..=900).contains(&retry_after), "{refused}");

    let (status, link) = announce(&server, &bob, &announcement(0)).await?;
    assert_eq!(status, 201, "another user's first link: {link}");
    server.stop()
}
