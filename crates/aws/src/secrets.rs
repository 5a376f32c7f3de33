//! Secrets read once at init from AWS Secrets Manager, so they never sit in a function's
//! environment (where anyone who may read the function's configuration sees them).

use aws_sdk_secretsmanager::Client;
use manuel_core::PortError;

/// The `SecretString` of the secret `secret_id` (its ARN or name), current version.
pub async fn secret_string(client: &Client, secret_id: &str) -> Result<String, PortError> {
    let output = client
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|error| crate::sdk_error::sdk_error("secretsmanager", error))?;
    output
        .secret_string()
        .map(str::to_owned)
        .ok_or_else(|| PortError::failed(format!("the secret {secret_id} holds no string")))
}
