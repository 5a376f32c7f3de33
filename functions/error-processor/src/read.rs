//! What a dead-letter record says: a [`FailureReport`] sent by our own code, a Lambda
//! asynchronous-invocation failure record (on-failure destination), or an event Lambda gave up
//! on (dead-letter config, with the error in the message attributes). Anything else is malformed.

use chrono::{DateTime, Utc};
use manuel_core::failure::{ErrorOccurrence, FailureReport};
use serde_json::Value;

use crate::classify::{fingerprint, normalize_message, severity};

/// The record read as one occurrence; unreadable bodies become a malformed occurrence.
/// `attribute_error` is the `ErrorMessage` attribute Lambda adds to dead-lettered events.
pub fn occurrence(
    body: &str,
    attribute_error: Option<&str>,
    now: DateTime<Utc>,
) -> ErrorOccurrence {
    if let Ok(report) = serde_json::from_str::<FailureReport>(body) {
        return build(&report, false);
    }
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    if let Some(report) = parsed.as_ref().and_then(|value| lambda_failure(value, now)) {
        return build(&report, false);
    }
    if let Some(report) = parsed
        .as_ref()
        .and_then(|value| given_up_event(value, attribute_error, now))
    {
        return build(&report, false);
    }
    let sample: String = body.chars().take(500).collect();
    build(
        &FailureReport {
            service: "unknown".to_owned(),
            operation: "unknown".to_owned(),
            error_kind: "malformed".to_owned(),
            message: format!("unreadable dead-letter record: {sample}"),
            request_id: None,
            user_hash: None,
            attempts: 0,
            time: now,
            payload_ref: None,
        },
        true,
    )
}

fn build(report: &FailureReport, malformed: bool) -> ErrorOccurrence {
    let normalized = normalize_message(&report.message);
    ErrorOccurrence {
        fingerprint: fingerprint(
            &report.service,
            &report.operation,
            &report.error_kind,
            &normalized,
        ),
        severity: severity(
            &report.service,
            &report.error_kind,
            report.attempts,
            malformed,
        ),
        service: report.service.clone(),
        operation: report.operation.clone(),
        error_kind: report.error_kind.clone(),
        normalized_message: normalized,
        sample: report.message.chars().take(1000).collect(),
        request_id: report.request_id.clone(),
        seen_at: report.time,
        malformed,
    }
}

/// `{"requestContext": {"functionArn", "condition", "approximateInvokeCount", "requestId"},
/// "responsePayload": {"errorType", "errorMessage"}, "timestamp"}`.
fn lambda_failure(value: &Value, now: DateTime<Utc>) -> Option<FailureReport> {
    let context = value.get("requestContext")?;
    let function_arn = context.get("functionArn")?.as_str()?;
    let function = function_arn.split(':').nth(6).unwrap_or(function_arn);
    let response = value.get("responsePayload");
    let error_type = response
        .and_then(|payload| payload.get("errorType"))
        .and_then(Value::as_str)
        .unwrap_or("Unhandled");
    let error_message = response
        .and_then(|payload| payload.get("errorMessage"))
        .and_then(Value::as_str)
        .unwrap_or("the function failed without a message");
    let condition = context
        .get("condition")
        .and_then(Value::as_str)
        .unwrap_or("RetriesExhausted");
    Some(FailureReport {
        service: function.to_owned(),
        operation: "invoke".to_owned(),
        error_kind: kind_of(error_type, error_message),
        message: format!("{condition}: {error_type}: {error_message}"),
        request_id: context
            .get("requestId")
            .and_then(Value::as_str)
            .map(str::to_owned),
        user_hash: None,
        attempts: context
            .get("approximateInvokeCount")
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0),
        time: value
            .get("timestamp")
            .and_then(Value::as_str)
            .and_then(|time| DateTime::parse_from_rfc3339(time).ok())
            .map_or(now, |time| time.with_timezone(&Utc)),
        payload_ref: None,
    })
}

/// An S3 or SQS event Lambda stopped retrying; the error, if any, is in the attributes.
fn given_up_event(
    value: &Value,
    attribute_error: Option<&str>,
    now: DateTime<Utc>,
) -> Option<FailureReport> {
    let record = value.get("Records")?.as_array()?.first()?;
    let source = record
        .get("eventSource")
        .or_else(|| record.get("EventSource"))
        .and_then(Value::as_str)?;
    let (service, reference) = match source {
        "aws:s3" => (
            "process-manual",
            record
                .pointer("/s3/object/key")
                .and_then(Value::as_str)
                .map(|key| format!("s3 key {key}")),
        ),
        other => (other.trim_start_matches("aws:"), None),
    };
    let message = attribute_error.unwrap_or("the event was not processed after its retries");
    Some(FailureReport {
        service: service.to_owned(),
        operation: "event".to_owned(),
        error_kind: kind_of("", message),
        message: message.to_owned(),
        request_id: None,
        user_hash: None,
        attempts: 3,
        time: now,
        payload_ref: reference,
    })
}

fn kind_of(error_type: &str, message: &str) -> String {
    let text = format!("{error_type} {message}").to_ascii_lowercase();
    let kind = if text.contains("accessdenied")
        || text.contains("access denied")
        || text.contains("not authorized")
    {
        "access_denied"
    } else if text.contains("throttl")
        || text.contains("too many requests")
        || text.contains("rate exceeded")
    {
        "throttled"
    } else if text.contains("timed out") || text.contains("timeout") {
        "timeout"
    } else if text.contains("unavailable") {
        "unavailable"
    } else {
        "failed"
    };
    kind.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use manuel_core::failure::Severity;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn our_reports_are_read_as_sent() {
        let body = r#"{"service":"bedrock-ingestion","operation":"ingest","error_kind":"throttled",
            "message":"ThrottlingException: Rate exceeded for manual 0f8fad5b-d9cb-469f-a165-70867728950e",
            "request_id":"r-1","user_hash":"ab12","attempts":3,"time":"2026-11-22T09:59:00Z","payload_ref":"s3://b/k"}"#;
        let occurrence = occurrence(body, None, now());
        assert!(!occurrence.malformed);
        assert_eq!(occurrence.severity, Severity::High);
        assert_eq!(occurrence.request_id.as_deref(), Some("r-1"));
        assert_eq!(occurrence.seen_at.to_rfc3339(), "2026-11-22T09:59:00+00:00");
        assert!(occurrence.normalized_message.contains("<uuid>"));
    }

    #[test]
    fn lambda_failure_records_are_understood() {
        let body = r#"{"version":"1.0","timestamp":"2026-11-22T09:00:00.000Z",
            "requestContext":{"requestId":"abc","functionArn":"arn:aws:lambda:eu-west-1:123456789012:function:manuel-process-manual:$LATEST","condition":"RetriesExhausted","approximateInvokeCount":3},
            "requestPayload":{"Records":[]},
            "responsePayload":{"errorType":"Unhandled","errorMessage":"bedrock-ingestion is unavailable: timed out"}}"#;
        let occurrence = occurrence(body, None, now());
        assert_eq!(occurrence.service, "manuel-process-manual");
        assert_eq!(occurrence.error_kind, "timeout");
        assert_eq!(occurrence.severity, Severity::High);
    }

    #[test]
    fn given_up_s3_events_and_garbage_are_told_apart() {
        let body = r#"{"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{"object":{"key":"manuals/u/m.pdf"}}}]}"#;
        let occurrence = occurrence(body, Some("Task timed out after 900.00 seconds"), now());
        assert_eq!(
            (occurrence.service.as_str(), occurrence.error_kind.as_str()),
            ("process-manual", "timeout")
        );
        let garbage = super::occurrence("not json at all", None, now());
        assert!(garbage.malformed);
        assert_eq!(garbage.severity, Severity::Low);
        assert_eq!(garbage.error_kind, "malformed");
    }
}
