//! Refusing before reading (issue 21): what a client without a valid link, or with a body over
//! a route's limit, can make the server read; and what idle, slow or too many connections can
//! hold. Raw TCP on loopback, against the real manuel-local binary.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Server, TestResult};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MIB: u64 = 1 << 20;

/// Sends `head` then up to `body_bytes` of body as fast as the server takes them, while reading
/// the response. Returns the status, the JSON body, and how many body bytes had been written
/// (into the socket) when the response arrived: with nothing reading them, loopback buffers
/// hold a few MiB at most.
async fn race_body(server: &Server, head: &str, body_bytes: u64) -> TestResult<(u16, Value, u64)> {
    let address = server.base.trim_start_matches("http://");
    let stream = TcpStream::connect(address).await?;
    let (mut reader, mut writer) = stream.into_split();
    writer.write_all(head.as_bytes()).await?;
    let written = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&written);
    let chunked = head.contains("Transfer-Encoding: chunked");
    let sending = tokio::spawn(async move {
        let block = vec![b'x'; 64 * 1024];
        let framed = if chunked {
            let mut framed = format!("{:x}\r\n", block.len()).into_bytes();
            framed.extend_from_slice(&block);
            framed.extend_from_slice(b"\r\n");
            framed
        } else {
            block.clone()
        };
        while counter.load(Ordering::Relaxed) < body_bytes {
            if writer.write_all(&framed).await.is_err() {
                return;
            }
            counter.fetch_add(block.len() as u64, Ordering::Relaxed);
        }
    });
    let mut response = Vec::new();
    let mut buffer = [0u8; 8192];
    let deadline = Instant::now() + Duration::from_secs(60);
    let sent_at_response = loop {
        let read =
            tokio::time::timeout(Duration::from_secs(60), reader.read(&mut buffer)).await??;
        response.extend_from_slice(&buffer[..read]);
        let text = String::from_utf8_lossy(&response);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|line| {
                    line.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= length {
                break written.load(Ordering::Relaxed);
            }
        }
        if read == 0 || Instant::now() > deadline {
            return Err(format!("no complete response: {text:?}").into());
        }
    };
    sending.abort();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status: u16 = text.split_whitespace().nth(1).ok_or("no status")?.parse()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.trim())
        .unwrap_or_default();
    let json = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body)?
    };
    Ok((status, json, sent_at_response))
}

#[tokio::test]
async fn an_upload_with_a_bad_link_is_refused_before_its_body_is_read() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let address = server.base.trim_start_matches("http://").to_owned();
    let length = 100 * MIB;
    let expires = chrono::Utc::now().timestamp() + 600;
    let head = format!(
        "PUT /uploads/manuals/mallory/0f8fad5b-d9cb-469f-a165-70867728950e.pdf?type=application/pdf&length={length}&expires={expires}&sig={} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/pdf\r\nContent-Length: {length}\r\n\r\n",
        "00".repeat(32)
    );
    let (status, body, sent) = race_body(&server, &head, length).await?;
    common::assert_error(status, &body, 403, "forbidden");
    eprintln!(
        "bogus-signature PUT of 100 MiB: {} KiB sent before the 403",
        sent / 1024
    );
    assert!(
        sent < 16 * MIB,
        "{} MiB were sent before the 403",
        sent / MIB
    );

    // A real link, with a declared length other than the one it grants: refused unread too.
    let alice = server.token("alice")?;
    let (status, link) = server
        .post(
            &alice,
            "/api/manuals/upload-url",
            &json!({"file_name": "big.pdf", "content_type": "application/pdf", "size_bytes": 1024}),
        )
        .await?;
    assert_eq!(status, 201, "{link}");
    let url = link["upload_url"].as_str().ok_or("no url")?;
    let path = url.trim_start_matches(&server.base);
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/pdf\r\nContent-Length: {length}\r\n\r\n"
    );
    let (status, body, sent) = race_body(&server, &head, length).await?;
    assert!(status == 403 || status == 413, "{status} {body}");
    assert!(
        sent < 16 * MIB,
        "{} MiB were sent before the refusal",
        sent / MIB
    );
    server.stop()
}

#[tokio::test]
async fn an_idempotency_key_does_not_lift_a_routes_body_limit() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let address = server.base.trim_start_matches("http://").to_owned();
    let alice = server.token("alice")?;
    let length = 64 * MIB;
    for framing in [
        format!("Content-Length: {length}"),
        "Transfer-Encoding: chunked".to_owned(),
    ] {
        let head = format!(
            "POST /api/query HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {alice}\r\nContent-Type: application/json\r\nIdempotency-Key: k-{}\r\n{framing}\r\n\r\n",
            framing.len()
        );
        let (status, body, sent) = race_body(&server, &head, length).await?;
        common::assert_error(status, &body, 413, "payload_too_large");
        eprintln!(
            "{framing} with an Idempotency-Key: {} KiB sent before the 413",
            sent / 1024
        );
        // The query route takes ~14 MB (a minute of audio in base64), not 100 MiB.
        assert!(
            sent < 32 * MIB,
            "{framing}: {} MiB read before the 413",
            sent / MIB
        );
    }
    server.stop()
}

#[tokio::test]
async fn too_many_header_fields_get_the_json_431() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let mut request = server.client.get(server.url("/health"));
    for n in 0..150 {
        request = request.header(format!("x-filler-{n}"), "value");
    }
    let (status, body) = server.send(request).await?;
    common::assert_error(status, &body, 431, "headers_too_large");
    server.stop()
}

/// Reads until the server closes the connection; how long that took.
async fn time_to_close(stream: &mut TcpStream, limit: Duration) -> TestResult<Duration> {
    let started = Instant::now();
    let mut buffer = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit, stream.read(&mut buffer)).await {
            Err(_) => return Err(format!("still open after {limit:?}").into()),
            Ok(Ok(0) | Err(_)) => return Ok(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn idle_and_slow_connections_are_closed_and_the_cap_refuses_the_rest() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = Server::start(
        dir.path(),
        &[
            "--header-read-timeout-seconds",
            "2",
            "--max-connections",
            "8",
        ],
    )?;
    let address = server.base.trim_start_matches("http://").to_owned();

    // Idle: never sends a byte.
    let mut idle = TcpStream::connect(&address).await?;
    let closed = time_to_close(&mut idle, Duration::from_secs(10)).await?;
    assert!(
        closed < Duration::from_secs(5),
        "idle connection closed after {closed:?}"
    );

    // Slow: a header line every 500 ms, never the end of the header.
    let mut slow = TcpStream::connect(&address).await?;
    slow.write_all(format!("GET /health HTTP/1.1\r\nHost: {address}\r\n").as_bytes())
        .await?;
    let started = Instant::now();
    let trickle = async {
        for n in 0..40 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if slow
                .write_all(format!("X-Slow-{n}: 1\r\n").as_bytes())
                .await
                .is_err()
            {
                return started.elapsed();
            }
        }
        started.elapsed()
    };
    let gave_up = trickle.await;
    assert!(
        gave_up < Duration::from_secs(8),
        "slow header kept the connection {gave_up:?}"
    );

    // Kept alive after a request, then idle: closed too.
    let mut kept = TcpStream::connect(&address).await?;
    kept.write_all(format!("GET /health HTTP/1.1\r\nHost: {address}\r\n\r\n").as_bytes())
        .await?;
    let closed = time_to_close(&mut kept, Duration::from_secs(10)).await?;
    assert!(
        closed < Duration::from_secs(5),
        "kept-alive connection closed after {closed:?}"
    );

    // The cap: eight held open, the ninth is closed at once, and service resumes when they go.
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(TcpStream::connect(&address).await?);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut refused = TcpStream::connect(&address).await?;
    let _ = refused
        .write_all(format!("GET /health HTTP/1.1\r\nHost: {address}\r\n\r\n").as_bytes())
        .await;
    let closed = time_to_close(&mut refused, Duration::from_secs(2)).await?;
    assert!(closed < Duration::from_secs(1), "{closed:?}");
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _) = server
        .send(server.client.get(server.url("/health")))
        .await?;
    assert_eq!(status, 200);
    server.stop()
}
