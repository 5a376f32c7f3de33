//! A hostile corpus: forged tokens, malformed and truncated JSON, wrong types, huge and nested
//! bodies, bad base64, hostile ids, injection payloads and oversized headers. Every reply is
//! JSON with the expected status and code, carries the security headers, and is never a 5xx.

mod common;

use common::{Server, TestResult};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{Value, json};

struct Probe {
    label: String,
    method: Method,
    path: String,
    token: Option<String>,
    body: Option<String>,
    headers: Vec<(String, String)>,
    status: u16,
    code: &'static str,
}

fn probe(
    label: impl Into<String>,
    method: Method,
    path: impl Into<String>,
    token: Option<&str>,
    body: Option<String>,
    status: u16,
    code: &'static str,
) -> Probe {
    Probe {
        label: label.into(),
        method,
        path: path.into(),
        token: token.map(str::to_owned),
        body,
        headers: Vec::new(),
        status,
        code,
    }
}

fn forge(server: &Server, header: Header, claims: &Value) -> TestResult<String> {
    let pem = std::fs::read(server.data_dir.join("keys/jwt-signing-key.pem"))?;
    let key = EncodingKey::from_rsa_pem(&pem)?;
    Ok(jsonwebtoken::encode(&header, claims, &key)?)
}

fn kid_of(server: &Server, token: &str) -> TestResult<String> {
    let _ = server;
    Ok(jsonwebtoken::decode_header(token)?.kid.ok_or("no kid")?)
}

#[tokio::test]
async fn a_hostile_corpus_gets_json_4xx_with_security_headers() -> TestResult {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let token = server.token("mallory")?;
    let kid = kid_of(&server, &token)?;
    let now = chrono::Utc::now().timestamp();
    let claims = |overrides: Value| {
        let mut base = json!({"sub": "mallory", "iss": "manuel-local", "aud": "manuel-app", "token_use": "id", "iat": now, "exp": now + 600});
        if let (Some(map), Some(extra)) = (base.as_object_mut(), overrides.as_object()) {
            for (key, value) in extra {
                if value.is_null() {
                    map.remove(key);
                } else {
                    map.insert(key.clone(), value.clone());
                }
            }
        }
        base
    };
    let rs256 = |kid: &str| {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.to_owned());
        header
    };
    let mut probes: Vec<Probe> = Vec::new();

    // Forged tokens.
    let public_n = {
        let jwks: Value = reqwest::get(server.url("/.well-known/jwks.json"))
            .await?
            .json()
            .await?;
        jwks["keys"][0]["n"].as_str().unwrap_or_default().to_owned()
    };
    let mut hs256 = Header::new(Algorithm::HS256);
    hs256.kid = Some(kid.clone());
    let forged: Vec<(&str, String)> = vec![
        (
            "wrong issuer",
            forge(
                &server,
                rs256(&kid),
                &claims(json!({"iss": "https://evil"})),
            )?,
        ),
        (
            "wrong audience",
            forge(&server, rs256(&kid), &claims(json!({"aud": "other-app"})))?,
        ),
        (
            "no audience",
            forge(&server, rs256(&kid), &claims(json!({"aud": null})))?,
        ),
        (
            "access token, wrong client",
            forge(
                &server,
                rs256(&kid),
                &claims(json!({"token_use": "access", "aud": null, "client_id": "x"})),
            )?,
        ),
        (
            "refresh token_use",
            forge(
                &server,
                rs256(&kid),
                &claims(json!({"token_use": "refresh"})),
            )?,
        ),
        (
            "expired",
            forge(&server, rs256(&kid), &claims(json!({"exp": now - 3600})))?,
        ),
        (
            "future nbf",
            forge(&server, rs256(&kid), &claims(json!({"nbf": now + 3600})))?,
        ),
        (
            "no exp",
            forge(&server, rs256(&kid), &claims(json!({"exp": null})))?,
        ),
        (
            "no sub",
            forge(&server, rs256(&kid), &claims(json!({"sub": null})))?,
        ),
        (
            "traversal sub",
            forge(&server, rs256(&kid), &claims(json!({"sub": "../alice"})))?,
        ),
        (
            "unknown kid",
            forge(&server, rs256("not-a-kid"), &claims(json!({})))?,
        ),
        (
            "no kid",
            forge(&server, Header::new(Algorithm::RS256), &claims(json!({})))?,
        ),
        (
            "HS256 with the public key",
            jsonwebtoken::encode(
                &hs256,
                &claims(json!({})),
                &EncodingKey::from_secret(public_n.as_bytes()),
            )?,
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"none","kid":"{kid}"}}"#)),
                URL_SAFE_NO_PAD.encode(claims(json!({})).to_string())
            ),
        ),
        (
            "signature stripped",
            token
                .rsplit_once('.')
                .map(|(head, _)| format!("{head}."))
                .unwrap_or_default(),
        ),
        ("signature of another token", {
            let other = server.token("alice")?;
            let (head, _) = token.rsplit_once('.').ok_or("token")?;
            let (_, sig) = other.rsplit_once('.').ok_or("token")?;
            format!("{head}.{sig}")
        }),
        ("garbage", "not.a.token".to_owned()),
        ("empty segments", "..".to_owned()),
        ("symbols", "%%%%~~~~".to_owned()),
    ];
    for (label, forged) in &forged {
        for (method, path, body) in [
            (Method::GET, "/api/manuals", None),
            (
                Method::POST,
                "/api/query",
                Some(r#"{"question": "How do I reset it?"}"#.to_owned()),
            ),
        ] {
            probes.push(probe(
                format!("token: {label}"),
                method,
                path,
                Some(forged),
                body,
                401,
                "unauthorized",
            ));
        }
    }

    // Every truncation of a valid body is malformed JSON.
    let valid = r#"{"question": "How do I reset the router?", "manual_ids": ["a"]}"#;
    for end in (1..valid.len()).step_by(2) {
        probes.push(probe(
            format!("truncated at {end}"),
            Method::POST,
            "/api/query",
            Some(&token),
            Some(valid[..end].to_owned()),
            400,
            "invalid_json",
        ));
    }
    for (label, body) in [
        ("trailing garbage", r#"{"question": "a"} x"#),
        ("single quotes", "{'question': 'a'}"),
        ("bare word", "question"),
        ("nan", r#"{"question": NaN}"#),
        ("comment", r#"{"question": "a" /* hi */}"#),
        ("bad escape", r#"{"question": "\x41"}"#),
        ("lone surrogate", r#"{"question": "\ud800"}"#),
        (
            "nested too deep",
            &format!("{}{}", "[".repeat(5000), "]".repeat(5000)),
        ),
    ] {
        probes.push(probe(
            format!("malformed: {label}"),
            Method::POST,
            "/api/query",
            Some(&token),
            Some(body.to_owned()),
            400,
            "invalid_json",
        ));
    }

    // Wrong types and shapes.
    for (label, body) in [
        ("question number", json!({"question": 1})),
        ("question bool", json!({"question": true})),
        ("question object", json!({"question": {"a": 1}})),
        ("question array", json!({"question": ["a"]})),
        ("question empty", json!({"question": ""})),
        ("question too long", json!({"question": "why ".repeat(400)})),
        (
            "manual_ids string",
            json!({"question": "a b", "manual_ids": "x"}),
        ),
        (
            "manual_ids numbers",
            json!({"question": "a b", "manual_ids": [1, 2]}),
        ),
        (
            "manual_ids too many",
            json!({"question": "a b", "manual_ids": vec!["x"; 51]}),
        ),
        (
            "nested object",
            json!({"question": "a", "x": {"y": {"z": [1, 2, {"w": null}]}}})
                .get("x")
                .cloned()
                .unwrap_or_default(),
        ),
        ("array body", json!([{"question": "a"}])),
        ("string body", json!("question")),
        ("null body", Value::Null),
    ] {
        probes.push(probe(
            format!("types: {label}"),
            Method::POST,
            "/api/query",
            Some(&token),
            Some(body.to_string()),
            400,
            "validation_failed",
        ));
    }
    for (label, body) in [
        ("no file_data", json!({"file_name": "a.txt"})),
        ("no file_name", json!({"file_data": "aGk="})),
        (
            "file_data number",
            json!({"file_name": "a.txt", "file_data": 5}),
        ),
        (
            "file_name array",
            json!({"file_name": ["a"], "file_data": "aGk="}),
        ),
        (
            "bad base64 chars",
            json!({"file_name": "a.txt", "file_data": "!!!!"}),
        ),
        (
            "bad base64 length",
            json!({"file_name": "a.txt", "file_data": "aGk"})
                .as_object()
                .map(|_| json!({"file_name": "a.txt", "file_data": "a"}))
                .unwrap_or_default(),
        ),
        (
            "base64 with spaces inside symbols",
            json!({"file_name": "a.txt", "file_data": "a G k = *"}),
        ),
        ("empty file", json!({"file_name": "a.txt", "file_data": ""})),
        (
            "name only dots",
            json!({"file_name": "....", "file_data": "aGk="}),
        ),
        ("name empty", json!({"file_name": "", "file_data": "aGk="})),
        (
            "both name spellings",
            json!({"file_name": "a.txt", "fileName": "b.txt", "file_data": "aGk="}),
        ),
    ] {
        probes.push(probe(
            format!("upload: {label}"),
            Method::POST,
            "/api/manuals/upload",
            Some(&token),
            Some(body.to_string()),
            400,
            "validation_failed",
        ));
    }

    // Hostile ids and paths: never found, never an error.
    for id in [
        "..%2F..%2Fetc%2Fpasswd",
        "..",
        "%2e%2e",
        "1%20OR%201%3D1",
        "'%20OR%20'1'%3D'1",
        "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        "%00",
        "{{7*7}}",
        "${jndi:ldap:x}",
        "00000000-0000-0000-0000-000000000000",
        "ffffffff-ffff-ffff-ffff-ffffffffffff",
        &"a".repeat(3000),
    ] {
        probes.push(probe(
            format!("id {id:.30}"),
            Method::GET,
            format!("/api/manuals/{id}"),
            Some(&token),
            None,
            404,
            "not_found",
        ));
        probes.push(probe(
            format!("delete id {id:.30}"),
            Method::DELETE,
            format!("/api/manuals/{id}"),
            Some(&token),
            None,
            404,
            "not_found",
        ));
    }
    probes.push(probe(
        "file link without signature",
        Method::GET,
        "/files/manuals/mallory/../../keys/jwt-signing-key.pem",
        None,
        None,
        403,
        "forbidden",
    ));
    probes.push(probe(
        "file link traversal",
        Method::GET,
        "/files/..%2F..%2Fkeys%2Fjwt-signing-key.pem?name=x&expires=1&sig=00",
        None,
        None,
        403,
        "forbidden",
    ));

    // Injection payloads in free text and names.
    for payload in [
        "' OR '1'='1",
        "' OR 1=1 --",
        "admin'--",
        "1; DROP TABLE manuals",
        "x' UNION SELECT password FROM users --",
        "'; EXEC xp_cmdshell('dir') --",
        "1' AND SLEEP(5) --",
        "'; WAITFOR DELAY '0:0:5' --",
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(1)>",
        "<svg onload=alert(1)>",
        "javascript:alert(document.cookie)",
        "<iframe src=//evil></iframe>",
        "%3Cscript%3Ealert(1)%3C/script%3E",
        "../../../../etc/passwd",
        "..\\..\\..\\windows\\win.ini",
        "{{7*7}}",
        "${7*7}",
        "<%= system('id') %>",
        "{% for x in range(10) %}",
    ] {
        probes.push(probe(
            format!("question: {payload}"),
            Method::POST,
            "/api/query",
            Some(&token),
            Some(json!({ "question": payload }).to_string()),
            400,
            "validation_failed",
        ));
    }
    for name in [
        "../../etc/passwd",
        "<script>alert(1)</script>.pdf",
        "{{7*7}}.pdf",
        "x' OR '1'='1.pdf",
    ] {
        probes.push(probe(
            format!("file name: {name}"),
            Method::POST,
            "/api/manuals/upload",
            Some(&token),
            Some(json!({ "file_name": name, "file_data": "aGVsbG8gd29ybGQ=" }).to_string()),
            400,
            "validation_failed",
        ));
    }

    // Oversized headers.
    let mut big_auth = probe(
        "huge authorization header",
        Method::GET,
        "/api/manuals",
        None,
        None,
        401,
        "unauthorized",
    );
    big_auth.headers.push((
        "authorization".to_owned(),
        format!("Bearer {}", "a".repeat(32 * 1024)),
    ));
    probes.push(big_auth);
    let mut big_other = probe(
        "huge custom header",
        Method::GET,
        "/api/manuals",
        Some(&token),
        None,
        200,
        "",
    );
    big_other
        .headers
        .push(("x-padding".to_owned(), "p".repeat(16 * 1024)));
    probes.push(big_other);

    assert!(probes.len() >= 150, "only {} probes", probes.len());
    let mut failures = Vec::new();
    for probe in &probes {
        let mut request = server
            .client
            .request(probe.method.clone(), server.url(&probe.path));
        if let Some(token) = &probe.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in &probe.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        if let Some(body) = &probe.body {
            request = request
                .header("content-type", "application/json")
                .body(body.clone());
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let has_headers = [
            "x-request-id",
            "strict-transport-security",
            "content-security-policy",
            "x-content-type-options",
        ]
        .iter()
        .all(|name| response.headers().contains_key(*name));
        let text = response.text().await?;
        let body: Option<Value> = serde_json::from_str(&text).ok();
        let code = body
            .as_ref()
            .and_then(|b| b["code"].as_str())
            .unwrap_or_default()
            .to_owned();
        let request_id = body
            .as_ref()
            .and_then(|b| b["request_id"].as_str())
            .is_some_and(|id| !id.is_empty());
        let ok = status == probe.status
            && status < 500
            && has_headers
            && body.is_some()
            && (probe.code.is_empty() || (code == probe.code && request_id));
        if !ok {
            failures.push(format!(
                "{} {} [{}] → {status} {code} (want {} {}) {:.200}",
                probe.method,
                probe.path.chars().take(60).collect::<String>(),
                probe.label,
                probe.status,
                probe.code,
                text
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} probes failed:\n{}",
        failures.len(),
        probes.len(),
        failures.join("\n")
    );
    server.stop()
}
