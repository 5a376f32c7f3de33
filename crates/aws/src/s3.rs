//! S3: manual objects and their Bedrock metadata sidecars. Objects live at
//! `manuals/<owner>/<manual_id>.<ext>` (`<owner>` a pseudonym: `manuel_core::storage_keys`); the
//! sidecar `<same key>.metadata.json` carries the attributes retrieval filters on, the user id
//! among them. Downloads and uploads by the client go through pre-signed
//! URLs, so the bytes never pass through a function.

pub use manuel_core::http::content_disposition;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::types::{Delete, ObjectIdentifier, ServerSideEncryption};
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
    /// What this bucket's pre-signed links start with, before the key (see
    /// [`S3ObjectStore::recognising_links`]).
    link_prefixes: Vec<String>,
}

impl S3ObjectStore {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
            link_prefixes: Vec::new(),
        }
    }

    /// Lets [`ObjectStore::key_of_link`] recognise this bucket's pre-signed links, as the client
    /// built by [`client`] from `sdk` writes them: virtual-hosted
    /// (`https://<bucket>.s3.<region>.amazonaws.com/<key>`) or path-style
    /// (`https://s3.<region>.amazonaws.com/<bucket>/<key>`, or `<endpoint>/<bucket>/<key>` for
    /// an emulator). Addressing styles:
    /// <https://docs.aws.amazon.com/AmazonS3/latest/userguide/VirtualHosting.html>
    pub fn recognising_links(
        mut self,
        sdk: &aws_config::SdkConfig,
        force_path_style: bool,
    ) -> Self {
        let bucket = &self.bucket;
        let mut prefixes = Vec::new();
        match sdk.endpoint_url().map(|url| url.trim_end_matches('/')) {
            Some(endpoint) => {
                prefixes.push(format!("{endpoint}/{bucket}/"));
                if !force_path_style && let Some((scheme, host)) = endpoint.split_once("://") {
                    prefixes.push(format!("{scheme}://{bucket}.{host}/"));
                }
            }
            None => {
                if let Some(region) = sdk.region() {
                    prefixes.push(format!("https://{bucket}.s3.{region}.amazonaws.com/"));
                    prefixes.push(format!("https://s3.{region}.amazonaws.com/{bucket}/"));
                }
                prefixes.push(format!("https://{bucket}.s3.amazonaws.com/"));
            }
        }
        self.link_prefixes = prefixes;
        self
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

    /// Lists the prefix a page (up to 1,000 keys) at a time and deletes each page with one
    /// `DeleteObjects`.
    async fn delete_prefix(&self, prefix: &str) -> Result<u64, PortError> {
        let mut deleted = 0u64;
        loop {
            // Always the first page: the previous one is gone.
            let listed = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .send()
                .await
                .map_err(port_error)?;
            let keys: Vec<String> = listed
                .contents()
                .iter()
                .filter_map(|object| object.key().map(str::to_owned))
                .collect();
            if keys.is_empty() {
                return Ok(deleted);
            }
            let objects = keys
                .iter()
                .map(|key| ObjectIdentifier::builder().key(key).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(PortError::failed)?;
            let output = self
                .client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(
                    Delete::builder()
                        .set_objects(Some(objects))
                        .quiet(true)
                        .build()
                        .map_err(PortError::failed)?,
                )
                .send()
                .await
                .map_err(port_error)?;
            if let Some(error) = output.errors().first() {
                return Err(unavailable(format!(
                    "deleting {}: {}",
                    error.key().unwrap_or_default(),
                    error.message().unwrap_or_default()
                )));
            }
            deleted += keys.len() as u64;
        }
    }

    fn key_of_link(&self, link: &str) -> Option<String> {
        let without_query = link.split(['?', '#']).next()?;
        let encoded = self
            .link_prefixes
            .iter()
            .find_map(|prefix| without_query.strip_prefix(prefix.as_str()))?;
        let key = percent_encoding::percent_decode_str(encoded)
            .decode_utf8()
            .ok()?
            .into_owned();
        (!key.is_empty()).then_some(key)
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

/// The owner a metadata sidecar names (`metadataAttributes.user_id`).
pub fn sidecar_user_id(sidecar: &[u8]) -> Option<manuel_core::domain::UserId> {
    let sidecar: serde_json::Value = serde_json::from_slice(sidecar).ok()?;
    manuel_core::domain::UserId::parse(sidecar.pointer("/metadataAttributes/user_id")?.as_str()?)
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use aws_sdk_s3::config::{Credentials, Region, SharedCredentialsProvider};

    const BUCKET: &str = "manuel-manuals-123456789012-eu-west-1-dev";

    fn store(endpoint: Option<&str>, force_path_style: bool) -> S3ObjectStore {
        let mut sdk = aws_config::SdkConfig::builder()
            .region(Region::new("eu-west-1"))
            .behavior_version(aws_config::BehaviorVersion::latest())
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "AKIDTEST", "secret", None, None, "test",
            )));
        if let Some(endpoint) = endpoint {
            sdk = sdk.endpoint_url(endpoint);
        }
        let sdk = sdk.build();
        S3ObjectStore::new(client(&sdk, force_path_style), BUCKET)
            .recognising_links(&sdk, force_path_style)
    }

    #[tokio::test]
    async fn the_stores_own_presigned_links_name_their_key_and_nothing_else_does() {
        let key = "manuals/alice/0b8f2f55-6a59-4c0e-9a43-0c7f6f6a1d2e.pdf";
        for (endpoint, path_style) in [
            (None, false),
            (None, true),
            (Some("http://127.0.0.1:5000"), true),
        ] {
            let store = store(endpoint, path_style);
            let link = store
                .download_link(
                    key,
                    "My manual.pdf",
                    "application/pdf",
                    Duration::from_secs(60),
                )
                .await
                .unwrap();
            assert_eq!(store.key_of_link(&link).as_deref(), Some(key), "{link}");
            assert_eq!(
                store.key_of_link(&format!("{link}#page=3")).as_deref(),
                Some(key)
            );
            let other_bucket = link.replace(BUCKET, "someone-elses-bucket");
            assert_eq!(store.key_of_link(&other_bucket), None, "{other_bucket}");
        }
        let store = store(None, false);
        for foreign in [
            "https://evil.example/manuals/alice/x.pdf",
            "manuals/alice/x.pdf",
            "https://manuel-manuals-123456789012-eu-west-1-dev.s3.eu-west-1.amazonaws.com.evil.example/manuals/alice/x.pdf",
            "https://s3.eu-west-1.amazonaws.com/other/manuals/alice/x.pdf",
        ] {
            assert_eq!(store.key_of_link(foreign), None, "{foreign}");
        }
        // Keys come back decoded, as they were stored.
        assert_eq!(
            store
                .key_of_link(&format!(
                    "https://{BUCKET}.s3.eu-west-1.amazonaws.com/pages/alice/m/3-ab%20c.png?X-Amz-Signature=0"
                ))
                .as_deref(),
            Some("pages/alice/m/3-ab c.png")
        );
    }
}
