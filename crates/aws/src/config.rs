//! The shared SDK configuration: built once, with timeouts, from the standard environment.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;

/// Loads region, credentials and endpoint overrides (`AWS_ENDPOINT_URL`, or
/// `AWS_ENDPOINT_URL_<SERVICE>`) from the environment, with connect and read timeouts set.
/// The SDK's own retries are off: `manuel_core::resilience` retries per dependency, within the
/// invocation's deadline, so the two never multiply.
pub async fn load() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .read_timeout(Duration::from_secs(5))
                .operation_timeout(Duration::from_secs(10))
                .build(),
        )
        .load()
        .await
}
