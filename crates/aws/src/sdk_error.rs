//! One reading of AWS SDK failures for every adapter: throttling, 5xx and timeouts are
//! [`PortError::Transient`] (the core retry policy may try again), a request we could not even
//! build is our bug ([`PortError::Failed`]), anything else the service refused is
//! [`PortError::Unavailable`]. Every failure is counted under its dependency.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
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
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "ModelNotReadyException",
    "RequestTimeout",
    "RequestTimeoutException",
];

pub(crate) fn sdk_error<E>(dependency: &'static str, error: SdkError<E, HttpResponse>) -> PortError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    telemetry::record_dependency(Metric::DependencyErrors, dependency, 1.0);
    // A service's own words ("ThrottlingException: Rate exceeded") say it all; the full context
    // (with the raw response) only for failures that never got that far.
    let message = match &error {
        SdkError::ServiceError(context) => match (context.err().code(), context.err().message()) {
            (Some(code), Some(text)) => format!("{code}: {text} (HTTP {})", context.raw().status()),
            (Some(code), None) => format!("{code} (HTTP {})", context.raw().status()),
            _ => DisplayErrorContext(&error).to_string(),
        },
        _ => DisplayErrorContext(&error).to_string(),
    };
    let transient = match &error {
        SdkError::ConstructionFailure(_) => {
            return PortError::failed(format!("{dependency} request: {message}"));
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => true,
        SdkError::ResponseError(context) => context.raw().status().is_server_error(),
        SdkError::ServiceError(context) => {
            let status = context.raw().status();
            status.is_server_error()
                || status.as_u16() == 429
                || context
                    .err()
                    .code()
                    .is_some_and(|code| TRANSIENT_CODES.contains(&code))
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
