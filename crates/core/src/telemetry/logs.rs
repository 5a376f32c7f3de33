//! JSON logs, one object per line, with the fields of the enclosing request span.

use sha2::{Digest, Sha256};

use crate::domain::UserId;

/// Logs JSON to stderr, filtered by `RUST_LOG` (or `default_filter`). Safe to call twice: the
/// second call does nothing.
pub fn init_json_logs(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .try_init();
}

/// A stable pseudonym of a user for logs and error reports: enough to correlate, not to identify.
pub fn user_hash(user: &UserId) -> String {
    let digest = Sha256::digest(user.as_str().as_bytes());
    hex::encode(&digest[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_hash_is_stable_and_does_not_contain_the_id() {
        let user = UserId::parse("alice-1234").unwrap();
        assert_eq!(user_hash(&user), user_hash(&user));
        assert_eq!(user_hash(&user).len(), 16);
        assert!(!user_hash(&user).contains("alice"));
    }
}
