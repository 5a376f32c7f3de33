//! One reading of AWS SDK failures for every adapter: throttling, 5xx and timeouts are
//! [`PortError::Transient`] (the core retry policy may try again), a request we could not even
//! build is our bug ([`PortError::Failed`]), anything else the service refused is
//! [`PortError::Unavailable`]. Every failure is counted under its dependency.
//!
//! The same reading serves failures inside an event stream (Transcribe streaming), where the
//! raw reply is one event-stream message rather than an HTTP response.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_smithy_types::event_stream::RawMessage;
use manuel_core::PortError;
use manuel_core::telemetry::{self, Metric};

/// Error codes AWS services use for "slow down" and "try again".
const TRANSIENT_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "SlowDown",
    "LimitExceededException",
    "InternalServerError",
    "InternalServerException",
    "InternalFailure",
    "InternalFailureException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "ModelNotReadyException",
    "RequestTimeout",
    "RequestTimeoutException",
];

/// What a failure's raw reply says about it: the HTTP status, when there is one.
pub(crate) trait RawReply: std::fmt::Debug {
    fn http_status(&self) -> Option<u16>;
}

impl RawReply for HttpResponse {
    fn http_status(&self) -> Option<u16> {
        Some(self.status().as_u16())
    }
}

/// An exception or a broken frame inside an event stream: the HTTP exchange itself succeeded.
impl RawReply for RawMessage {
    fn http_status(&self) -> Option<u16> {
        None
    }
}

pub(crate) fn sdk_error<E, R>(dependency: &'static str, error: SdkError<E, R>) -> PortError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: RawReply + 'static,
{
    sdk_error_coded(dependency, error, |error| error.code().map(str::to_owned))
}

/// [`sdk_error`] with the service's error code read by `code` (an event-stream exception names
/// its type in a header the SDK turns into the error's variant, not into `code()`).
pub(crate) fn sdk_error_coded<E, R>(
    dependency: &'static str,
    error: SdkError<E, R>,
    code: impl Fn(&E) -> Option<String>,
) -> PortError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: RawReply + 'static,
{
    telemetry::record_dependency(Metric::DependencyErrors, dependency, 1.0);
    // A service's own words ("ThrottlingException: Rate exceeded") say it all; the full context
    // (with the raw response) only for failures that never got that far.
    let message = match &error {
        SdkError::ServiceError(context) => {
            let status = context
                .raw()
                .http_status()
                .map(|status| format!(" (HTTP {status})"))
                .unwrap_or_default();
            match (code(context.err()), context.err().message()) {
                (Some(code), Some(text)) => format!("{code}: {text}{status}"),
                (Some(code), None) => format!("{code}{status}"),
                _ => DisplayErrorContext(&error).to_string(),
            }
        }
        _ => DisplayErrorContext(&error).to_string(),
    };
    let transient = match &error {
        SdkError::ConstructionFailure(_) => {
            return PortError::failed(format!("{dependency} request: {message}"));
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => true,
        SdkError::ResponseError(context) => context
            .raw()
            .http_status()
            .is_none_or(|status| status >= 500),
        SdkError::ServiceError(context) => {
            let status = context.raw().http_status();
            status.is_some_and(|status| status >= 500 || status == 429)
                || code(context.err()).is_some_and(|code| TRANSIENT_CODES.contains(&code.as_str()))
        }
        _ => false,
    };
    if transient {
        PortError::Transient {
            service: dependency,
            message,
        }
    } else {
        PortError::Unavailable {
            service: dependency,
            message,
        }
    }
}
