//! `POST /api/manuals/download` over HTTP: a real download from a test server on loopback
//! (exempted only through `URL_FETCH_ALLOW_HOSTS`), redirects followed by hand and checked at
//! every hop, and an SSRF corpus of URLs and redirect chains that must each be refused with 400.

mod common;

use std::net::SocketAddr;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use common::{Server, TestResult, assert_error, fixture};
use serde_json::json;

/// A web server with a manual, redirects (some to internal addresses), errors and a huge file.
async fn web_server() -> TestResult<SocketAddr> {
    let pdf = fixture("printer-manual.pdf");
    let app = Router::new()
        .route(
            "/manuals/printer%20manual.pdf",
            get(move || {
                let pdf = pdf.clone();
                async move { ([(header::CONTENT_TYPE, "application/pdf")], pdf) }
            }),
        )
        .route(
            "/notes.txt",
            get(|| async { "Descale the kettle every month with citric acid.\n" }),
        )
        .route("/hop1", get(|| async { Redirect::temporary("/hop2") }))
        .route("/hop2", get(|| async { Redirect::permanent("/notes.txt") }))
        .route("/r1", get(|| async { Redirect::to("/r2") }))
        .route("/r2", get(|| async { Redirect::to("/r3") }))
        .route("/r3", get(|| async { Redirect::to("/r4") }))
        .route("/r4", get(|| async { Redirect::to("/notes.txt") }))
        .route(
            "/to-metadata",
            get(|| async { Redirect::temporary("http://169.254.169.254/latest/meta-data/") }),
        )
        .route(
            "/to-loopback",
            get(|| async { Redirect::temporary("http://127.0.0.1:6379/") }),
        )
        .route(
            "/to-decimal",
            get(|| async { Redirect::temporary("http://2130706433/") }),
        )
        .route(
            "/to-file",
            get(|| async { Redirect::temporary("file:///etc/passwd") }),
        )
        .route(
            "/to-mapped",
            get(|| async { Redirect::temporary("http://[::ffff:10.0.0.1]/") }),
        )
        .route(
            "/to-private-name",
            get(|| async { Redirect::temporary("http://localhost/") }),
        )
        .route("/missing", get(|| async { StatusCode::NOT_FOUND }))
        .route(
            "/page.html",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/html")],
                    "<!doctype html><html><body>not a manual</body></html>",
                )
            }),
        )
        .route(
            "/huge.txt",
            get(|| async {
                let mut headers = HeaderMap::new();
                headers.insert(
                    header::CONTENT_TYPE,
                    axum::http::HeaderValue::from_static("text/plain"),
                );
                let body = "word ".repeat(2 * 1024 * 1024 / 5);
                (headers, body).into_response()
            }),
        )
        .route(
            "/no-location",
            get(|| async {
                let response: Response = StatusCode::FOUND.into_response();
                response
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(address)
}

fn start(dir: &std::path::Path, web: SocketAddr) -> TestResult<Server> {
    let allow = web.to_string();
    Server::start_with_env(
        dir,
        &[],
        &[
            ("URL_FETCH_ALLOW_HOSTS", allow.as_str()),
            ("MAX_DOWNLOAD_BYTES", "1048576"),
        ],
    )
}

#[tokio::test]
async fn a_manual_is_downloaded_through_redirects_and_processed_like_an_upload() -> TestResult {
    let web = web_server().await?;
    let dir = tempfile::tempdir()?;
    let server = start(dir.path(), web)?;
    let token = server.token("dora")?;

    let (status, body) = server
        .post(
            &token,
            "/api/manuals/download",
            &json!({"url": format!("http://{web}/manuals/printer%20manual.pdf")}),
        )
        .await?;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["file_name"], "printer manual.pdf");
    let id = body["manual_id"].as_str().ok_or("manual_id")?.to_owned();
    let ready = server.wait_processed(&token, &id).await?;
    assert_eq!(ready["status"], "ready", "{ready}");
    let answer = server
        .ask(&token, "How do I replace the ink cartridge?")
        .await?;
    assert_eq!(answer["context_found"], true, "{answer}");

    // Two redirects, then the file; the name given wins.
    let (status, body) = server
        .post(
            &token,
            "/api/manuals/download",
            &json!({"url": format!("http://{web}/hop1"), "filename": "Kettle notes.txt"}),
        )
        .await?;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["file_name"], "Kettle notes.txt");

    // The same bytes again are a duplicate, as for an upload.
    let (status, body) = server
        .post(
            &token,
            "/api/manuals/download",
            &json!({"url": format!("http://{web}/notes.txt")}),
        )
        .await?;
    assert_eq!((status, &body["duplicate"]), (200, &json!(true)), "{body}");
    server.stop()
}

#[tokio::test]
async fn an_ssrf_corpus_and_bad_downloads_are_refused_with_400() -> TestResult {
    let web = web_server().await?;
    let dir = tempfile::tempdir()?;
    let server = start(dir.path(), web)?;
    let token = server.token("sam")?;

    let corpus: Vec<String> = [
        // Loopback in every spelling.
        "http://127.0.0.1/",
        "http://127.0.0.1:8080/manual.pdf",
        "http://127.1/",
        "http://2130706433/",
        "http://0x7f000001/",
        "http://017700000001/",
        "http://0x7f.0x0.0x0.0x1/",
        "http://0177.0.0.1/",
        "http://127.000.000.001/",
        "http://localhost/",
        "http://LOCALHOST:8080/",
        "http://[::1]/",
        "http://[0:0:0:0:0:0:0:1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:7f00:1]/",
        // Cloud metadata and link-local.
        "http://169.254.169.254/latest/meta-data/",
        "http://169.254.169.254:80/",
        "http://2852039166/",
        "http://0xa9fea9fe/",
        "http://[fe80::1]/",
        "http://[fd00:ec2::254]/",
        "http://[::ffff:169.254.169.254]/",
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://[2002:a9fe:a9fe::]/",
        // Private, CGNAT, unspecified, multicast, broadcast, reserved.
        "http://10.0.0.1/",
        "http://172.16.0.1/",
        "http://192.168.0.1/",
        "http://100.64.0.1/",
        "http://0.0.0.0/",
        "http://0/",
        "http://224.0.0.1/",
        "http://255.255.255.255/",
        "http://240.0.0.1/",
        "http://[::]/",
        "http://[ff02::1]/",
        "http://[fc00::1]/",
        // Other schemes, credentials, ports and nonsense.
        "file:///etc/passwd",
        "ftp://example.com/manual.pdf",
        "gopher://127.0.0.1:6379/_INFO",
        "dict://127.0.0.1:11211/stat",
        "javascript:alert(1)",
        "data:text/plain,hello",
        "http://user:pass@example.com/manual.pdf",
        "https://example.com:22/manual.pdf",
        "http://example.com:6379/",
        "not a url",
        "http://",
        "http://.invalid-host-that-does-not-resolve.test/",
    ]
    .into_iter()
    .map(str::to_owned)
    // Redirect chains from the allowed server into places it may not lead.
    .chain(
        [
            "/to-metadata",
            "/to-loopback",
            "/to-decimal",
            "/to-file",
            "/to-mapped",
            "/to-private-name",
            "/r1",
            "/no-location",
            "/missing",
        ]
        .into_iter()
        .map(|path| format!("http://{web}{path}")),
    )
    .collect();
    assert!(corpus.len() >= 40);
    for url in &corpus {
        let (status, body) = server
            .post(&token, "/api/manuals/download", &json!({ "url": url }))
            .await?;
        assert_error(status, &body, 400, "validation_failed");
        assert_eq!(body["details"]["field"], "url", "{url}: {body}");
        let message = body["error"].as_str().unwrap_or_default();
        assert!(
            !message.contains("127.0.0.1") && !message.contains("169.254"),
            "{url}: the refusal reveals an address: {message}"
        );
    }

    // Content is checked by its bytes; the size cap holds while streaming.
    let (status, body) = server
        .post(
            &token,
            "/api/manuals/download",
            &json!({"url": format!("http://{web}/page.html")}),
        )
        .await?;
    assert_error(status, &body, 415, "unsupported_media_type");
    let (status, body) = server
        .post(
            &token,
            "/api/manuals/download",
            &json!({"url": format!("http://{web}/huge.txt")}),
        )
        .await?;
    assert_error(status, &body, 413, "payload_too_large");
    let (status, body) = server
        .post(&token, "/api/manuals/download", &json!({}))
        .await?;
    assert_error(status, &body, 400, "validation_failed");

    let (_, list) = server.get(&token, "/api/manuals").await?;
    assert_eq!(list["count"], 0, "refused downloads stored nothing: {list}");
    server.stop()
}
