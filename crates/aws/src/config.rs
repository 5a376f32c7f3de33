//! The shared SDK configuration, and the timeouts each kind of call gets on top of it.
//!
//! One timeout does not fit every AWS call. A DynamoDB item comes back in milliseconds, while a
//! non-streaming Converse sends its first byte only once the whole answer exists (routinely
//! 5–15 s): a read timeout meant for DynamoDB cuts every long answer off, and a retried timeout
//! bills the model again. So each client is built with the [`Timeouts`] of its calls, and the
//! calls whose length depends on the work (Converse, streaming transcription) get no SDK
//! read/operation timeout at all: their adapters bound each call by the invocation's deadline
//! instead (see `bedrock::converse` and `transcribe`).

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;

/// Connecting to an AWS endpoint in the same region takes milliseconds; two seconds means the
/// network is broken, and a request that never connected was never sent (safe to retry).
const CONNECT: Duration = Duration::from_secs(2);

/// The timeouts of one kind of AWS call. `read` is the wait for the first byte of the response
/// after the request was sent; `operation` bounds the whole call (one attempt: the SDK's own
/// retries are off).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timeouts {
    /// DynamoDB, SNS, SQS, Secrets Manager, Transcribe's job API: small requests answered in
    /// milliseconds (read 3 s, operation 5 s).
    Quick,
    /// S3: objects up to the largest manual (50 MB) are written in one call; a body being read
    /// is not covered by the operation timeout, only its first byte by the read timeout
    /// (read 5 s, operation 30 s).
    Storage,
    /// Knowledge-base retrieval (p50 ~0.6–0.8 s) and the ingestion API (read 10 s,
    /// operation 10 s); the resilience layer retries only within the deadline.
    Retrieval,
    /// Calls whose length is the work itself: Converse (the first byte is the whole answer) and
    /// streaming transcription (as long as the audio). Only the connect timeout; the adapter
    /// stops the call at the invocation's deadline.
    BoundByDeadline,
}

impl Timeouts {
    pub fn config(self) -> TimeoutConfig {
        let builder = TimeoutConfig::builder().connect_timeout(CONNECT);
        let (read, operation) = match self {
            Self::Quick => (Duration::from_secs(3), Duration::from_secs(5)),
            Self::Storage => (Duration::from_secs(5), Duration::from_secs(30)),
            Self::Retrieval => (Duration::from_secs(10), Duration::from_secs(10)),
            Self::BoundByDeadline => return builder.build(),
        };
        builder
            .read_timeout(read)
            .operation_timeout(operation)
            .build()
    }
}

/// Loads region, credentials and endpoint overrides (`AWS_ENDPOINT_URL`, or
/// `AWS_ENDPOINT_URL_<SERVICE>`) from the environment, with the [`Timeouts::Quick`] timeouts;
/// clients of slower calls override them with their own.
/// The SDK's own retries are off: `manuel_core::resilience` retries per dependency, within the
/// invocation's deadline, so the two never multiply.
pub async fn load() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::disabled())
        .timeout_config(Timeouts::Quick.config())
        .load()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_bound_by_the_deadline_have_no_read_or_operation_timeout() {
        let bound = Timeouts::BoundByDeadline.config();
        assert_eq!(bound.connect_timeout(), Some(CONNECT));
        assert_eq!(bound.read_timeout(), None);
        assert_eq!(bound.operation_timeout(), None);
        assert_eq!(bound.operation_attempt_timeout(), None);
        let quick = Timeouts::Quick.config();
        assert_eq!(quick.read_timeout(), Some(Duration::from_secs(3)));
        let storage = Timeouts::Storage.config();
        assert!(storage.operation_timeout() > quick.operation_timeout());
    }
}
