//! manuel-aws: adapters over the AWS SDK for the ports of manuel-core, one module per service.
//! Clients are built once at init from the standard AWS environment (`AWS_REGION`, credentials,
//! `AWS_ENDPOINT_URL*` for emulators).

pub mod bedrock;
pub mod cognito;
pub mod config;
pub mod dynamodb;
pub mod gateway;
pub mod lambda;
pub mod s3;
mod sdk_error;
pub mod secrets;
pub mod sns;
pub mod sqs;
pub mod transcribe;
