//! A JSON body extractor whose failures are the API's own errors: malformed JSON is
//! `invalid_json`, a missing or mistyped field is `validation_failed` naming the field.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge(
                        "The request body is larger than this endpoint accepts.".to_owned(),
                    )
                } else {
                    ApiError::InvalidJson("the body could not be read".to_owned())
                }
            })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Parses `bytes` into `T` with the API's error mapping.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::InvalidJson("the body is empty".to_owned()));
    }
    // Syntax is checked on its own first, so a mistyped field is never reported as bad JSON.
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|error| ApiError::InvalidJson(describe_syntax_error(&error)))?;
    if !value.is_object() {
        return Err(ApiError::validation(
            "body",
            "The body must be a JSON object.",
        ));
    }
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        let message = inner.to_string();
        let field = missing_field_name(&message)
            .map(|missing| {
                if path == "." {
                    missing.to_owned()
                } else {
                    format!("{path}.{missing}")
                }
            })
            .unwrap_or(path);
        ApiError::validation(
            field.clone(),
            format!("Field `{field}`: {}", strip_position(&message)),
        )
    })
}

fn describe_syntax_error(error: &serde_json::Error) -> String {
    format!(
        "{} at line {}, column {}",
        syntax_kind(error),
        error.line(),
        error.column()
    )
}

fn syntax_kind(error: &serde_json::Error) -> &'static str {
    match error.classify() {
        serde_json::error::Category::Eof => "unexpected end of input",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "invalid value",
        serde_json::error::Category::Io => "unreadable input",
    }
}

fn missing_field_name(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

fn strip_position(message: &str) -> &str {
    message.split(" at line ").next().unwrap_or(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Question {
        question: String,
        #[serde(default)]
        limit: Option<u32>,
    }

    fn code_and_field(result: Result<Question, ApiError>) -> (String, String) {
        match result {
            Err(ApiError::Validation { field, .. }) => ("validation_failed".into(), field),
            Err(other) => (other.code().to_owned(), String::new()),
            Ok(_) => ("ok".into(), String::new()),
        }
    }

    #[test]
    fn malformed_json_is_invalid_json() {
        for body in [
            &b"{"[..],
            b"{\"question\": }",
            b"nope",
            b"",
            b"   ",
            b"{\"a\":1,}",
        ] {
            assert_eq!(
                code_and_field(parse_json(body)).0,
                "invalid_json",
                "{body:?}"
            );
        }
    }

    #[test]
    fn missing_and_mistyped_fields_are_named() {
        assert_eq!(
            code_and_field(parse_json(b"{}")),
            ("validation_failed".into(), "question".into())
        );
        assert_eq!(
            code_and_field(parse_json(br#"{"question": 5}"#)),
            ("validation_failed".into(), "question".into())
        );
        assert_eq!(
            code_and_field(parse_json(br#"{"question": "q", "limit": "x"}"#)),
            ("validation_failed".into(), "limit".into())
        );
        assert_eq!(
            code_and_field(parse_json(b"[1,2]")),
            ("validation_failed".into(), "body".into())
        );
    }

    #[test]
    fn valid_body_parses() {
        assert_eq!(code_and_field(parse_json(br#"{"question": "q"}"#)).0, "ok");
    }
}
