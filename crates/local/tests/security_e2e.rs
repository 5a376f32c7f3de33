//! The security layers as a client meets them: CORS, security headers, body limits, the IP
//! allowlist, rate limits and HMAC signatures on sensitive routes.

mod common;

use common::{Server, TestResult, assert_error};
use manuel_core::security::sign_request;
use reqwest::Method;
use reqwest::header::HeaderMap;

const SECURITY_HEADERS: [&str; 7] = [
    "strict-transport-security",
    "content-security-policy",
    "x-content-type-options",
    "x-frame-options",
    "referrer-policy",
    "permissions-policy",
    "cross-origin-resource-policy",
];

fn assert_security_headers(headers: &HeaderMap) {
    for name in SECURITY_HEADERS {
        assert!(
            headers.contains_key(name),
            "{name} missing from {headers:?}"
        );
    }
    assert!(headers.contains_key("x-request-id"));
}

#[tokio::test]
async fn cors_and_security_headers_are_on_every_response() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = Server::start_with_env(
        dir.path(),
        &[],
        &[("CORS_ALLOWED_ORIGINS", "https://app.example.com")],
    )?;

    let preflight = server
        .client
        .request(Method::OPTIONS, server.url("/api/query"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await?;
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let headers = preflight.headers();
    assert_security_headers(headers);
    assert_eq!(
        headers
            .get("access-control-allow-origin")
            .map(|v| v.as_bytes()),
        Some(&b"https://app.example.com"[..])
    );
    let methods = headers
        .get("access-control-allow-methods")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        methods.contains("POST") && methods.contains("DELETE"),
        "{methods}"
    );
    let allowed = headers
        .get("access-control-allow-headers")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(allowed.contains("authorization"), "{allowed}");

    let foreign = server
        .client
        .request(Method::OPTIONS, server.url("/api/query"))
        .header("origin", "https://evil.example.com")
        .header("access-control-request-method", "POST")
        .send()
        .await?;
    assert!(
        foreign
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    assert_security_headers(foreign.headers());

    // Errors carry the same headers, and /api/* responses are never cached.
    let unauthorized = server
        .client
        .get(server.url("/api/manuals"))
        .header("origin", "https://app.example.com")
        .send()
        .await?;
    assert_eq!(unauthorized.status().as_u16(), 401);
    assert_security_headers(unauthorized.headers());
    assert_eq!(
        unauthorized
            .headers()
            .get("cache-control")
            .map(|v| v.as_bytes()),
        Some(&b"no-store"[..])
    );
    assert_eq!(
        unauthorized
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.as_bytes()),
        Some(&b"https://app.example.com"[..])
    );
    let missing = server.client.get(server.url("/nowhere")).send().await?;
    assert_eq!(missing.status().as_u16(), 404);
    assert_security_headers(missing.headers());
    server.stop()
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused_while_reading() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = Server::start_with_env(
        dir.path(),
        &["--max-upload-mb", "1"],
        &[("MAX_REQUEST_BODY_BYTES", "2000000")],
    )?;
    let token = server.token("alice")?;
    // Announced too large: refused from the Content-Length alone.
    let (status, body) = common::send_oversized(
        &server,
        &token,
        "/api/manuals/upload",
        &vec![b'{'; 3_000_000],
    )
    .await?;
    assert_error(status, &body, 413, "payload_too_large");
    // Streamed without a length: refused once the limit is crossed, before the rest arrives.
    let response = send_chunked(&server, &token, 40, 100_000).await?;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(
        response.contains("\"code\":\"payload_too_large\""),
        "{response}"
    );
    server.stop()
}

/// Sends `chunks` chunks of `size` bytes with chunked transfer encoding over a raw connection,
/// stopping early if the server answers, and returns what it answered.
async fn send_chunked(
    server: &Server,
    token: &str,
    chunks: usize,
    size: usize,
) -> TestResult<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = server.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    let head = format!(
        "POST /api/manuals/upload HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await?;
    let chunk = format!("{size:x}\r\n{}\r\n", " ".repeat(size));
    for _ in 0..chunks {
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut response),
    )
    .await;
    Ok(String::from_utf8_lossy(&response).into_owned())
}

#[tokio::test]
async fn the_ip_allowlist_refuses_other_addresses_and_trusts_only_configured_proxies() -> TestResult
{
    let dir = tempfile::tempdir()?;
    let server = Server::start_with_env(
        dir.path(),
        &[],
        &[("IP_ALLOWLIST", "192.0.2.0/24,2001:db8::/32")],
    )?;
    let token = server.token("alice")?;
    let (status, body) = server.get(&token, "/api/manuals").await?;
    assert_error(status, &body, 403, "forbidden");
    // X-Forwarded-For from an untrusted peer changes nothing.
    let (status, body) = server
        .send(
            server
                .client
                .get(server.url("/api/manuals"))
                .bearer_auth(&token)
                .header("x-forwarded-for", "192.0.2.10"),
        )
        .await?;
    assert_error(status, &body, 403, "forbidden");
    server.stop()?;

    let server = Server::start_with_env(
        dir.path(),
        &[],
        &[
            ("IP_ALLOWLIST", "192.0.2.0/24"),
            ("TRUSTED_PROXIES", "127.0.0.1/32"),
        ],
    )?;
    let (status, _) = server
        .send(
            server
                .client
                .get(server.url("/api/manuals"))
                .bearer_auth(&token)
                .header("x-forwarded-for", "192.0.2.10"),
        )
        .await?;
    assert_eq!(status, 200);
    let (status, body) = server
        .send(
            server
                .client
                .get(server.url("/api/manuals"))
                .bearer_auth(&token)
                .header("x-forwarded-for", "198.51.100.1"),
        )
        .await?;
    assert_error(status, &body, 403, "forbidden");
    server.stop()
}

#[tokio::test]
async fn users_over_their_rate_limit_get_429_with_retry_after() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server =
        Server::start_with_env(dir.path(), &[], &[("RATE_LIMIT_PER_USER_PER_MINUTE", "3")])?;
    let alice = server.token("alice")?;
    let bob = server.token("bob")?;
    // A window can roll over mid-test; a 429 must still come within two windows' worth.
    let mut limited = None;
    for _ in 0..8 {
        let response = server
            .client
            .get(server.url("/api/manuals"))
            .bearer_auth(&alice)
            .send()
            .await?;
        assert!(response.headers().contains_key("ratelimit-limit"));
        if response.status().as_u16() == 429 {
            limited = Some(response);
            break;
        }
    }
    let response = limited.ok_or("no 429 after 8 requests with a limit of 3")?;
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .ok_or("no Retry-After")?;
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(
        response
            .headers()
            .get("ratelimit-remaining")
            .map(|v| v.as_bytes()),
        Some(&b"0"[..])
    );
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await?;
    assert_error(status, &body, 429, "rate_limited");
    // Another user is not affected.
    let (status, _) = server.get(&bob, "/api/manuals").await?;
    assert_eq!(status, 200);
    server.stop()
}

#[tokio::test]
async fn deletes_need_a_fresh_unused_signature_when_signing_is_on() -> TestResult {
    let key = "a-signing-key-of-at-least-32-characters";
    let dir = tempfile::tempdir()?;
    let server = Server::start_with_env(dir.path(), &[], &[("HMAC_SIGNING_KEY", key)])?;
    let token = server.token("alice")?;
    let (status, uploaded) = server
        .upload(&token, "n.txt", b"Press the red button to start.")
        .await?;
    assert_eq!(status, 201);
    let id = uploaded["manual_id"].as_str().ok_or("id")?;
    let path = format!("/api/manuals/{id}");
    let now = chrono::Utc::now().timestamp().to_string();
    let signature = sign_request(key.as_bytes(), &now, &Method::DELETE, &path, b"");

    let delete = |timestamp: Option<&str>, signature: Option<&str>| {
        let mut request = server.client.delete(server.url(&path)).bearer_auth(&token);
        if let Some(timestamp) = timestamp {
            request = request.header("x-manuel-timestamp", timestamp);
        }
        if let Some(signature) = signature {
            request = request.header("x-manuel-signature", signature);
        }
        request
    };
    let stale = (chrono::Utc::now().timestamp() - 600).to_string();
    let stale_signature = sign_request(key.as_bytes(), &stale, &Method::DELETE, &path, b"");
    let other_path = sign_request(
        key.as_bytes(),
        &now,
        &Method::DELETE,
        "/api/manuals/other",
        b"",
    );
    let wrong_key = sign_request(
        b"another-key-that-is-32-characters-long",
        &now,
        &Method::DELETE,
        &path,
        b"",
    );
    for (why, request) in [
        ("missing", delete(None, None)),
        ("no timestamp", delete(None, Some(&signature))),
        ("garbage", delete(Some(&now), Some("v1=zz"))),
        (
            "wrong scheme",
            delete(Some(&now), Some(signature.trim_start_matches("v1="))),
        ),
        ("wrong key", delete(Some(&now), Some(&wrong_key))),
        ("other path", delete(Some(&now), Some(&other_path))),
        ("stale", delete(Some(&stale), Some(&stale_signature))),
    ] {
        let (status, body) = server.send(request).await?;
        assert_eq!(body["code"], "invalid_signature", "{why}: {body}");
        assert_error(status, &body, 401, "invalid_signature");
    }
    let (status, body) = server.send(delete(Some(&now), Some(&signature))).await?;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.send(delete(Some(&now), Some(&signature))).await?;
    assert_error(status, &body, 401, "invalid_signature");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("already used"),
        "{body}"
    );
    // Reads are not sensitive.
    let (status, _) = server.get(&token, "/api/manuals").await?;
    assert_eq!(status, 200);
    server.stop()
}
