//! DynamoDB adapters for the tables of template.yaml, with conditional writes where the
//! semantics need them.

mod errors;
mod idempotency;
mod limits;
mod manuals;
mod usage;

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use manuel_core::PortError;

pub use errors::DynamoErrors;
pub use idempotency::DynamoIdempotency;
pub use limits::DynamoLimits;
pub use manuals::DynamoManuals;
pub use usage::DynamoUsageStore;

pub(crate) type Item = HashMap<String, AttributeValue>;

/// An SDK failure of a DynamoDB call (see [`crate::sdk_error`]).
pub(crate) fn sdk_error<E>(
    error: aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> PortError
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    crate::sdk_error::sdk_error("dynamodb", error)
}

/// Whether a conditional write took effect: `Ok(false)` when its condition did not hold
/// (`ConditionalCheckFailedException`, an expected answer, not a failure of DynamoDB).
pub(crate) fn applied<T, E>(
    result: Result<
        T,
        aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
    >,
) -> Result<bool, PortError>
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    match result {
        Ok(_) => Ok(true),
        Err(aws_sdk_dynamodb::error::SdkError::ServiceError(service))
            if service.err().code() == Some("ConditionalCheckFailedException") =>
        {
            Ok(false)
        }
        Err(error) => Err(sdk_error(error)),
    }
}

pub(crate) fn unavailable(error: impl std::fmt::Display) -> PortError {
    PortError::Unavailable {
        service: "dynamodb",
        message: error.to_string(),
    }
}

pub(crate) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(crate) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(crate) fn get_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|value| value.as_s().ok())
        .map(String::as_str)
}

pub(crate) fn get_n<T: std::str::FromStr>(item: &Item, name: &str) -> Option<T> {
    item.get(name)
        .and_then(|value| value.as_n().ok())
        .and_then(|value| value.parse().ok())
}
