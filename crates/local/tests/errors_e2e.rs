//! Every refusal is a JSON error with a request id, and no client input produces a 5xx.

mod common;

use common::{Server, TestResult, assert_error};
use reqwest::Method;
use serde_json::Value;

struct Case {
    method: Method,
    path: &'static str,
    auth: Auth,
    body: Option<&'static str>,
    status: u16,
    code: &'static str,
}

enum Auth {
    None,
    Valid,
    Raw(&'static str),
    Foreign,
}

fn case(
    method: Method,
    path: &'static str,
    auth: Auth,
    body: Option<&'static str>,
    status: u16,
    code: &'static str,
) -> Case {
    Case {
        method,
        path,
        auth,
        body,
        status,
        code,
    }
}

#[tokio::test]
async fn malformed_requests_get_json_errors_never_5xx() -> TestResult {
    use Auth::{Foreign, None, Raw, Valid};
    let dir = tempfile::tempdir()?;
    let other_dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let token = server.token("mallory")?;
    let foreign = common::token(other_dir.path(), "mallory")?;

    let cases = vec![
        // Authentication
        case(
            Method::GET,
            "/api/manuals",
            None,
            Option::None,
            401,
            "unauthorized",
        ),
        case(
            Method::GET,
            "/api/manuals",
            Raw("Bearer"),
            Option::None,
            401,
            "unauthorized",
        ),
        case(
            Method::GET,
            "/api/manuals",
            Raw("Bearer "),
            Option::None,
            401,
            "unauthorized",
        ),
        case(
            Method::GET,
            "/api/manuals",
            Raw("Basic YWxpY2U6cHc="),
            Option::None,
            401,
            "unauthorized",
        ),
        case(
            Method::GET,
            "/api/manuals",
            Raw("Bearer garbage"),
            Option::None,
            401,
            "unauthorized",
        ),
        case(
            Method::GET,
            "/api/manuals",
            Raw("Bearer a.b.c"),
            Option::None,
            401,
            "unauthorized",
        ),
        case(
            Method::GET,
            "/api/manuals",
            Raw("Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9."),
            Option::None,
            401,
            "unauthorized",
        ),
        case(
            Method::GET,
            "/api/manuals",
            Foreign,
            Option::None,
            401,
            "unauthorized",
        ),
        case(
            Method::POST,
            "/api/query",
            None,
            Some(r#"{"question":"hi"}"#),
            401,
            "unauthorized",
        ),
        case(
            Method::POST,
            "/api/manuals/upload",
            Foreign,
            Some("{}"),
            401,
            "unauthorized",
        ),
        case(
            Method::DELETE,
            "/api/manuals/00000000-0000-4000-8000-000000000000",
            None,
            Option::None,
            401,
            "unauthorized",
        ),
        // Routing
        case(Method::GET, "/nope", None, Option::None, 404, "not_found"),
        case(
            Method::GET,
            "/api/nope",
            Valid,
            Option::None,
            404,
            "not_found",
        ),
        case(
            Method::PUT,
            "/api/manuals",
            Valid,
            Option::None,
            405,
            "method_not_allowed",
        ),
        case(
            Method::GET,
            "/api/query",
            Valid,
            Option::None,
            405,
            "method_not_allowed",
        ),
        case(
            Method::POST,
            "/health",
            None,
            Option::None,
            405,
            "method_not_allowed",
        ),
        case(
            Method::PATCH,
            "/api/manuals/00000000-0000-4000-8000-000000000000",
            Valid,
            Option::None,
            405,
            "method_not_allowed",
        ),
        // Ids that are not ours, or not ids at all
        case(
            Method::GET,
            "/api/manuals/not-a-uuid",
            Valid,
            Option::None,
            404,
            "not_found",
        ),
        case(
            Method::GET,
            "/api/manuals/..%2F..%2Fetc%2Fpasswd",
            Valid,
            Option::None,
            404,
            "not_found",
        ),
        case(
            Method::GET,
            "/api/manuals/'%20OR%201=1--",
            Valid,
            Option::None,
            404,
            "not_found",
        ),
        case(
            Method::DELETE,
            "/api/manuals/%3Cscript%3E",
            Valid,
            Option::None,
            404,
            "not_found",
        ),
        case(
            Method::GET,
            "/files/manuals/mallory/x.pdf",
            None,
            Option::None,
            403,
            "forbidden",
        ),
        case(
            Method::GET,
            "/files/manuals/mallory/x.pdf?name=x&expires=99999999999&sig=00",
            None,
            Option::None,
            403,
            "forbidden",
        ),
        // Malformed JSON
        case(
            Method::POST,
            "/api/query",
            Valid,
            Some(""),
            400,
            "invalid_json",
        ),
        case(
            Method::POST,
            "/api/query",
            Valid,
            Some("{"),
            400,
            "invalid_json",
        ),
        case(
            Method::POST,
            "/api/query",
            Valid,
            Some(r#"{"question": "unterminated"#),
            400,
            "invalid_json",
        ),
        case(
            Method::POST,
            "/api/query",
            Valid,
            Some("question=hi"),
            400,
            "invalid_json",
        ),
        case(
            Method::POST,
            "/api/query",
            Valid,
            Some(r#"{"question": "a",}"#),
            400,
            "invalid_json",
        ),
        case(
            Method::POST,
            "/api/query",
            Valid,
            Some("\u{0}\u{1}"),
            400,
            "invalid_json",
        ),
        case(
            Method::POST,
            "/api/manuals/upload",
            Valid,
            Some("[{]"),
            400,
            "invalid_json",
        ),
        // Missing or mistyped fields
        case(
            Method::POST,
            "/api/query",
            Valid,
            Some("{}"),
            400,
            "validation_failed",
        ),
        case(
            Method::POST,
            "/api/query",
            Valid,
            Some("null"),
            400,
            "validation_failed",
        ),
        case(
            Method::POST,
            "/api/query",
            Valid,
            Some("[]"),
            400,
            "validation_failed",
        ),
        case(
            Method::POST,
            "/api/query",
            Valid,
            Some(r#""question""#),
            400,
            "validation_failed",
        ),
        case(
            Method::POST,
            "/api/query",
            Valid,
            Some(r#"{"question": 42}"#),
            400,
            "validation_failed",
        ),
        case(
            Method::POST,
            "/api/query",
            Valid,
            Some(r#"{"question": null}"#),
            400,
            "validation_failed",
        ),
        case(
            Method::POST,
            "/api/query",
            Valid,
            Some(r#"{"question": ["a"]}"#),
            400,
            "validation_failed",
        ),
        case(
            Method::POST,
            "/api/query",
            Valid,
            Some(r#"{"question": "   "}"#),
            400,
            "validation_failed",
        ),
        case(
            Method::POST,
            "/api/query",
            Valid,
            Some(r#"{"question": "ok", "manual_ids": "x"}"#),
            400,
            "validation_failed",
        ),
        case(
            Method::POST,
            "/api/query",
            Valid,
            Some(r#"{"file_data": "UklGRg=="}"#),
            400,
            "validation_failed",
        ),
        case(
            Method::POST,
            "/api/manuals/upload",
            Valid,
            Some("{}"),
            400,
            "validation_failed",
        ),
        case(
            Method::POST,
            "/api/manuals/upload",
            Valid,
            Some(r#"{"file_name": "a.txt"}"#),
            400,
            "validation_failed",
        ),
        case(
            Method::POST,
            "/api/manuals/upload",
            Valid,
            Some(r#"{"file_data": "aGk="}"#),
            400,
            "validation_failed",
        ),
        case(
            Method::POST,
            "/api/manuals/upload",
            Valid,
            Some(r#"{"file_name": 7, "file_data": "aGk="}"#),
            400,
            "validation_failed",
        ),
        case(
            Method::POST,
            "/api/manuals/upload",
            Valid,
            Some(r#"{"file_name": "a.txt", "file_data": true}"#),
            400,
            "validation_failed",
        ),
        case(
            Method::POST,
            "/api/manuals/upload",
            Valid,
            Some(r#"{"file_name": "...", "file_data": "aGk="}"#),
            400,
            "validation_failed",
        ),
        case(
            Method::POST,
            "/api/manuals/upload",
            Valid,
            Some(r#"{"file_name": "a.txt", "file_data": "@@@@"}"#),
            400,
            "validation_failed",
        ),
        case(
            Method::POST,
            "/api/manuals/upload",
            Valid,
            Some(r#"{"file_name": "a.txt", "file_data": ""}"#),
            400,
            "validation_failed",
        ),
        case(
            Method::POST,
            "/api/manuals/upload",
            Valid,
            Some(r#"{"file_name": "a.txt", "fileName": "b.txt", "file_data": "aGk="}"#),
            400,
            "validation_failed",
        ),
        case(
            Method::POST,
            "/api/manuals/upload",
            Valid,
            Some(r#"{"file_name": "a.exe", "file_data": "f0VMRgIBAQAAAAAAAAAAAA=="}"#),
            415,
            "unsupported_media_type",
        ),
        case(
            Method::GET,
            "/api/manuals?limit=-1",
            Valid,
            Option::None,
            400,
            "validation_failed",
        ),
        case(
            Method::GET,
            "/api/manuals?limit=%ZZ",
            Valid,
            Option::None,
            400,
            "validation_failed",
        ),
    ];
    let long_question = format!(r#"{{"question": "{}"}}"#, "why ".repeat(300));

    let mut checked = 0;
    for case in &cases {
        let mut request = server
            .client
            .request(case.method.clone(), server.url(case.path));
        request = match &case.auth {
            Auth::None => request,
            Auth::Valid => request.bearer_auth(&token),
            Auth::Foreign => request.bearer_auth(&foreign),
            Auth::Raw(value) => request.header("authorization", *value),
        };
        if let Some(body) = case.body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        assert!(
            response.headers().get("x-request-id").is_some(),
            "{} {}",
            case.method,
            case.path
        );
        assert_eq!(
            response
                .headers()
                .get("x-content-type-options")
                .map(|v| v.as_bytes()),
            Some(&b"nosniff"[..])
        );
        let text = response.text().await?;
        let body: Value = serde_json::from_str(&text).map_err(|e| {
            format!(
                "{} {} → {status} not JSON ({e}): {text}",
                case.method, case.path
            )
        })?;
        assert!(status < 500, "{} {} → {status}", case.method, case.path);
        assert_eq!(
            (status, body["code"].as_str().unwrap_or_default()),
            (case.status, case.code),
            "{} {} {:?}: {body}",
            case.method,
            case.path,
            case.body
        );
        assert_error(status, &body, case.status, case.code);
        checked += 1;
    }
    let (status, body) = server
        .send(
            server
                .client
                .post(server.url("/api/query"))
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body(long_question),
        )
        .await?;
    assert_error(status, &body, 400, "validation_failed");
    assert_eq!(body["details"]["field"], "question");
    let huge = format!(r#"{{"question": "{}"}}"#, "x".repeat(6_000_000));
    let (status, body) =
        common::send_oversized(&server, &token, "/api/query", huge.as_bytes()).await?;
    assert_error(status, &body, 413, "payload_too_large");
    assert!(checked >= 50);

    // A refused request changed nothing.
    let (status, list) = server.get(&token, "/api/manuals").await?;
    assert_eq!(status, 200);
    assert_eq!(list["count"], 0, "{list}");

    let (status, health) = server
        .send(server.client.get(server.url("/health")))
        .await?;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "healthy");
    assert!(health["version"].is_string());
    let (status, jwks) = server
        .send(server.client.get(server.url("/.well-known/jwks.json")))
        .await?;
    assert_eq!(status, 200);
    assert_eq!(jwks["keys"][0]["alg"], "RS256");
    server.stop()
}

/// Without the embedding runtime or model the server does not start half-working: it exits at
/// once, saying what is missing and how to install it.
#[test]
fn the_server_refuses_to_start_without_its_embedding_model() -> TestResult {
    let cases = [
        ("MANUEL_ONNXRUNTIME", "ONNX Runtime"),
        ("MANUEL_EMBEDDING_MODEL", "embedding model"),
    ];
    for (variable, named) in cases {
        let dir = tempfile::tempdir()?;
        let missing = dir.path().join("not-installed");
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_manuel-local"))
            .args(["--port", "0", "--data-dir"])
            .arg(dir.path().join("data"))
            .env("MANUEL_PDFIUM_LIB", common::pdfium_lib())
            .env("MANUEL_EMBEDDING_MODEL", common::embedding_model())
            .env("MANUEL_ONNXRUNTIME", common::onnxruntime())
            .env(variable, &missing)
            .output()?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{variable}: started anyway");
        assert!(
            stderr.contains(named)
                && stderr.contains("make setup")
                && stderr.contains(&*missing.to_string_lossy()),
            "{variable}: {stderr}"
        );
    }
    Ok(())
}
