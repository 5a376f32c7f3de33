//! S3: manual objects and their Bedrock metadata sidecars (DESIGN.md §4). Objects live at
//! `manuals/<user_id>/<manual_id>.<ext>`; the sidecar `<same key>.metadata.json` carries the
//! attributes retrieval filters on. Downloads and uploads by the client go through pre-signed
//! URLs, so the bytes never pass through a function.

pub use manuel_core::http::content_disposition;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::types::ServerSideEncryption;
use bytes::Bytes;
use manuel_core::PortError;
use manuel_core::ports::{ObjectStore, UploadLink};

/// Appended to an object's key to name its Bedrock metadata sidecar.
pub const METADATA_SIDECAR_SUFFIX: &str = ".metadata.json";

/// Builds the S3 client once, from the shared AWS configuration. `force_path_style` is for
/// emulators (moto) that cannot serve virtual-hosted bucket addresses.
pub fn client(config: &aws_config::SdkConfig, force_path_style: bool) -> Client {
    let s3_config = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(force_path_style)
        .build();
    Client::from_conf(s3_config)
}

/// The sidecar key of an object key.
pub fn metadata_sidecar_key(key: &str) -> String {
    format!("{key}{METADATA_SIDECAR_SUFFIX}")
}

/// A request the SDK could not even build is our mistake; anything after that is the service's.
fn port_error<E>(error: SdkError<E, HttpResponse>) -> PortError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    crate::sdk_error::sdk_error("s3", error)
}

fn unavailable(error: impl std::fmt::Display) -> PortError {
    PortError::Unavailable {
        service: "s3",
        message: error.to_string(),
    }
}

fn presigning(ttl: Duration) -> Result<PresigningConfig, PortError> {
    PresigningConfig::expires_in(ttl)
        .map_err(|error| PortError::failed(format!("pre-signed URL lifetime {ttl:?}: {error}")))
}

pub struct S3ObjectStore {
    client: Client,
    bucket: String,
}

impl S3ObjectStore {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Writes `<key>.metadata.json` = `{"metadataAttributes": {"user_id", "manual_id",
    /// "manual_name"}}`, which Bedrock Knowledge Bases read beside the object at `key`.
    pub async fn put_metadata_sidecar(
        &self,
        key: &str,
        user_id: &str,
        manual_id: &str,
        manual_name: &str,
    ) -> Result<(), PortError> {
        let body = metadata_sidecar_json(user_id, manual_id, manual_name);
        self.put(
            &metadata_sidecar_key(key),
            Bytes::from(body),
            "application/json",
        )
        .await
    }

    /// A pre-signed PUT of `key`. The content type and length are signed headers: the uploader
    /// must send exactly `Content-Type: content_type` and `Content-Length: content_length`.
    pub async fn presigned_put(
        &self,
        key: &str,
        content_type: &str,
        content_length: u64,
        ttl: Duration,
    ) -> Result<String, PortError> {
        let content_length = i64::try_from(content_length)
            .map_err(|_| PortError::failed(format!("content length {content_length} too large")))?;
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .content_length(content_length)
            .presigned(presigning(ttl)?)
            .await
            .map_err(port_error)?;
        Ok(request.uri().to_owned())
    }

    async fn delete_one(&self, key: &str) -> Result<(), PortError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(port_error)?;
        Ok(())
    }
}

#[async_trait]
impl ObjectStore for S3ObjectStore {
    async fn put(&self, key: &str, bytes: Bytes, content_type: &str) -> Result<(), PortError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .server_side_encryption(ServerSideEncryption::Aes256)
            .body(bytes.into())
            .send()
            .await
            .map_err(port_error)?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, PortError> {
        let result = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await;
        let output = match result {
            Ok(output) => output,
            Err(error) if is_missing_object(&error) => return Ok(None),
            Err(error) => return Err(port_error(error)),
        };
        let body = output
            .body
            .collect()
            .await
            .map_err(|error| unavailable(format!("reading {key}: {error}")))?;
        Ok(Some(body.into_bytes()))
    }

    /// Deletes the object and its metadata sidecar; either being missing is fine.
    async fn delete(&self, key: &str) -> Result<(), PortError> {
        let sidecar = metadata_sidecar_key(key);
        tokio::try_join!(self.delete_one(key), self.delete_one(&sidecar))?;
        Ok(())
    }

    /// The bucket's default encryption applies to the object; the link signs only the
    /// content type and length, so the client sends no AWS-specific header.
    async fn upload_link(
        &self,
        key: &str,
        content_type: &str,
        content_length: u64,
        ttl: Duration,
    ) -> Result<UploadLink, PortError> {
        let url = self
            .presigned_put(key, content_type, content_length, ttl)
            .await?;
        Ok(UploadLink {
            url,
            headers: vec![
                ("Content-Type".to_owned(), content_type.to_owned()),
                ("Content-Length".to_owned(), content_length.to_string()),
            ],
        })
    }

    async fn download_link(
        &self,
        key: &str,
        file_name: &str,
        content_type: &str,
        ttl: Duration,
    ) -> Result<String, PortError> {
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .response_content_disposition(content_disposition(file_name))
            .response_content_type(content_type)
            .presigned(presigning(ttl)?)
            .await
            .map_err(port_error)?;
        Ok(request.uri().to_owned())
    }
}

/// NoSuchKey, or any other 404 except a missing bucket (a deployment problem, not a missing object).
fn is_missing_object(error: &SdkError<GetObjectError, HttpResponse>) -> bool {
    let SdkError::ServiceError(context) = error else {
        return false;
    };
    let service_error = context.err();
    service_error.is_no_such_key()
        || (context.raw().status().as_u16() == 404 && service_error.code() != Some("NoSuchBucket"))
}

/// The sidecar body, exactly `{"metadataAttributes": {"user_id": …, "manual_id": …,
/// "manual_name": …}}`.
pub fn metadata_sidecar_json(user_id: &str, manual_id: &str, manual_name: &str) -> String {
    format!(
        "{{\"metadataAttributes\": {{\"user_id\": {}, \"manual_id\": {}, \"manual_name\": {}}}}}",
        json_string(user_id),
        json_string(manual_id),
        json_string(manual_name)
    )
}

/// A JSON string literal (RFC 8259): quotes, backslashes and control characters escaped.
fn json_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Processing in AWS needs no queueing: the object's `ObjectCreated` notification invokes
/// process-manual (template.yaml), so handing a manual over is already done when it is stored.
pub struct ProcessedOnObjectCreated;

#[async_trait]
impl manuel_core::ports::IngestionQueue for ProcessedOnObjectCreated {
    async fn enqueue(
        &self,
        _user: &manuel_core::domain::UserId,
        _manual_id: &str,
    ) -> Result<(), PortError> {
        Ok(())
    }
}
