//! Severity rules and fingerprints (documented in MONITORING.md).

use std::sync::LazyLock;

use manuel_core::failure::Severity;
use regex::Regex;
use sha2::{Digest, Sha256};

/// - critical: access denied, configuration or data-integrity errors (a whole feature is down
///   or data is at risk), whatever the service;
/// - high: a dependency still unavailable, timing out or throttling after retries (3 or more
///   attempts), or any failure of the quota/usage store (users could be charged wrongly);
/// - medium: other failures of one piece of work (a manual that could not be processed);
/// - low: invalid input and anything unreadable (malformed records).
pub fn severity(service: &str, error_kind: &str, attempts: u32, malformed: bool) -> Severity {
    if malformed {
        return Severity::Low;
    }
    match error_kind {
        "access_denied" | "configuration" | "data_integrity" => Severity::Critical,
        "invalid_input" => Severity::Low,
        "unavailable" | "timeout" | "throttled" if attempts >= 3 => Severity::High,
        _ if service == "usage" => Severity::High,
        _ => Severity::Medium,
    }
}

static PATTERNS: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    [
        // Quoted values first: a quoted URI or id is one value. No placeholder holds a digit,
        // or the number pattern would rewrite it.
        (r#""[^"]*"|'[^']*'"#, "<quoted>"),
        (
            r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
            "<uuid>",
        ),
        (r"s3://[^\s]+", "<object-uri>"),
        (r"[\w.+-]+@[\w-]+\.[\w.-]+", "<email>"),
        (r"\b[0-9a-fA-F]{16,}\b", "<hex>"),
        (r"\d+(\.\d+)?", "<n>"),
    ]
    .into_iter()
    .filter_map(|(pattern, replacement)| Regex::new(pattern).ok().map(|regex| (regex, replacement)))
    .collect()
});

/// The message with what varies between occurrences of one error (ids, numbers, quoted values,
/// addresses) replaced, whitespace collapsed, at most 300 characters.
pub fn normalize_message(message: &str) -> String {
    let mut normalized = message.to_owned();
    for (regex, replacement) in PATTERNS.iter() {
        normalized = regex.replace_all(&normalized, *replacement).into_owned();
    }
    let collapsed: Vec<&str> = normalized.split_whitespace().collect();
    collapsed.join(" ").chars().take(300).collect()
}

/// Service, operation, kind and normalised message, hashed: equal for repeats of one error.
pub fn fingerprint(
    service: &str,
    operation: &str,
    error_kind: &str,
    normalized_message: &str,
) -> String {
    let mut hasher = Sha256::new();
    for part in [service, operation, error_kind, normalized_message] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    hex::encode(&hasher.finalize()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_of_one_error_share_a_fingerprint() {
        let a = normalize_message(
            "manual 0f8fad5b-d9cb-469f-a165-70867728950e: throttled after 3 attempts (took 1200 ms)",
        );
        let b = normalize_message(
            "manual 7c9e6679-7425-40de-944b-e07fc1f90ae7: throttled after 4 attempts  (took 95 ms)",
        );
        assert_eq!(a, b);
        assert_eq!(
            a,
            "manual <uuid>: throttled after <n> attempts (took <n> ms)"
        );
        assert_eq!(
            fingerprint("s3", "get", "unavailable", &a),
            fingerprint("s3", "get", "unavailable", &b)
        );
        assert_ne!(
            fingerprint("s3", "get", "unavailable", &a),
            fingerprint("s3", "put", "unavailable", &a)
        );
        assert_eq!(
            normalize_message("key 's3://b/manuals/u/x.pdf' for bob@example.com"),
            "key <quoted> for <email>"
        );
    }

    #[test]
    fn severity_follows_the_documented_rules() {
        assert_eq!(
            severity("bedrock-ingestion", "access_denied", 1, false),
            Severity::Critical
        );
        assert_eq!(
            severity("s3", "configuration", 0, false),
            Severity::Critical
        );
        assert_eq!(
            severity("bedrock-ingestion", "throttled", 3, false),
            Severity::High
        );
        assert_eq!(
            severity("bedrock-ingestion", "throttled", 1, false),
            Severity::Medium
        );
        assert_eq!(severity("usage", "failed", 1, false), Severity::High);
        assert_eq!(
            severity("process-manual", "failed", 3, false),
            Severity::Medium
        );
        assert_eq!(
            severity("manuals", "invalid_input", 3, false),
            Severity::Low
        );
        assert_eq!(
            severity("anything", "access_denied", 3, true),
            Severity::Low
        );
    }
}
