//! The S3 object store against a moto server (`make test` starts one and sets
//! `MANUEL_TEST_MOTO_URL`). Each test uses its own bucket.
//!
//! What moto 5.2 does not emulate, so these tests check it on the URL instead: it accepts a
//! pre-signed URL whose signature was altered (only an unsigned request is refused), it ignores
//! `response-content-disposition`/`response-content-type`, and it does not enforce the signed
//! `Content-Type`/`Content-Length` of a SigV4 pre-signed PUT.

mod common;

use common::moto;

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::types::ServerSideEncryption;
use bytes::Bytes;
use manuel_aws::s3::{
    S3ObjectStore, content_disposition, metadata_sidecar_json, metadata_sidecar_key,
};
use manuel_core::PortError;
use manuel_core::ports::ObjectStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A client built the way the functions build it (`manuel_aws::s3::client`), aimed at moto.
async fn s3_client(url: &str) -> Client {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(Credentials::new("test", "test", None, None, "moto"))
        .load()
        .await;
    manuel_aws::s3::client(&config, true)
}

/// A store over a fresh bucket, and the raw client for looking behind it.
async fn store(url: &str) -> Result<(S3ObjectStore, Client), Box<dyn std::error::Error>> {
    let client = s3_client(url).await;
    let bucket = format!("manuals-{}", uuid::Uuid::new_v4());
    client.create_bucket().bucket(&bucket).send().await?;
    Ok((S3ObjectStore::new(client.clone(), bucket), client))
}

fn key() -> String {
    format!("manuals/alice/{}.pdf", uuid::Uuid::new_v4())
}

#[tokio::test]
async fn put_then_get_round_trips_bytes_content_type_and_encryption() -> TestResult {
    let Some(url) = moto() else { return Ok(()) };
    let (store, client) = store(&url).await?;
    let key = key();
    let bytes = Bytes::from_static(b"%PDF-1.7\n\x00\xff binary body");
    store.put(&key, bytes.clone(), "application/pdf").await?;

    assert_eq!(store.get(&key).await?, Some(bytes.clone()));
    let head = client
        .head_object()
        .bucket(store.bucket())
        .key(&key)
        .send()
        .await?;
    assert_eq!(head.content_type(), Some("application/pdf"));
    assert_eq!(
        head.server_side_encryption(),
        Some(&ServerSideEncryption::Aes256)
    );
    assert_eq!(head.content_length(), Some(i64::try_from(bytes.len())?));

    // A second put replaces the object.
    store
        .put(&key, Bytes::from_static(b"v2"), "application/pdf")
        .await?;
    assert_eq!(store.get(&key).await?, Some(Bytes::from_static(b"v2")));
    Ok(())
}

#[tokio::test]
async fn get_of_a_missing_key_is_none_and_a_missing_bucket_is_unavailable() -> TestResult {
    let Some(url) = moto() else { return Ok(()) };
    let (store, client) = store(&url).await?;
    assert_eq!(store.get(&key()).await?, None);

    let nowhere = S3ObjectStore::new(client, format!("missing-{}", uuid::Uuid::new_v4()));
    match nowhere.get(&key()).await {
        Err(PortError::Unavailable { service, message }) => {
            assert_eq!(service, "s3");
            assert!(message.contains("NoSuchBucket"), "{message}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn delete_removes_the_object_and_its_sidecar_and_is_idempotent() -> TestResult {
    let Some(url) = moto() else { return Ok(()) };
    let (store, _client) = store(&url).await?;
    let key = key();
    let other = key.replace(".pdf", ".txt");
    store
        .put(&key, Bytes::from_static(b"pdf"), "application/pdf")
        .await?;
    store
        .put_metadata_sidecar(&key, "alice", "m-1", "Dishwasher")
        .await?;
    store
        .put(&other, Bytes::from_static(b"other"), "text/plain")
        .await?;
    assert!(store.get(&metadata_sidecar_key(&key)).await?.is_some());

    store.delete(&key).await?;
    assert_eq!(store.get(&key).await?, None);
    assert_eq!(store.get(&metadata_sidecar_key(&key)).await?, None);
    // Nothing else is touched.
    assert_eq!(store.get(&other).await?, Some(Bytes::from_static(b"other")));

    // Deleting again, or deleting what never existed, is fine.
    store.delete(&key).await?;
    store
        .delete(&format!("manuals/alice/{}.pdf", uuid::Uuid::new_v4()))
        .await?;
    Ok(())
}

#[tokio::test]
async fn the_sidecar_is_exactly_the_bedrock_metadata_document() -> TestResult {
    let Some(url) = moto() else { return Ok(()) };
    let (store, client) = store(&url).await?;
    let key = key();
    let name = "Lave-vaisselle \"Série 6\" \\ notice\n✓";
    store
        .put_metadata_sidecar(&key, "alice", "m-42", name)
        .await?;

    let sidecar_key = format!("{key}.metadata.json");
    let body = store
        .get(&sidecar_key)
        .await?
        .ok_or("the sidecar was not written")?;
    let parsed: BTreeMap<String, BTreeMap<String, String>> =
        manuel_core::json::parse_json(&body).map_err(|error| error.to_string())?;
    let expected = BTreeMap::from([(
        "metadataAttributes".to_owned(),
        BTreeMap::from([
            ("user_id".to_owned(), "alice".to_owned()),
            ("manual_id".to_owned(), "m-42".to_owned()),
            ("manual_name".to_owned(), name.to_owned()),
        ]),
    )]);
    assert_eq!(parsed, expected);

    let head = client
        .head_object()
        .bucket(store.bucket())
        .key(&sidecar_key)
        .send()
        .await?;
    assert_eq!(head.content_type(), Some("application/json"));
    assert_eq!(
        head.server_side_encryption(),
        Some(&ServerSideEncryption::Aes256)
    );
    Ok(())
}

#[tokio::test]
async fn the_download_link_fetches_the_bytes_with_the_file_name() -> TestResult {
    let Some(url) = moto() else { return Ok(()) };
    let (store, _client) = store(&url).await?;
    let key = key();
    let bytes = Bytes::from_static(b"%PDF-1.4 manual bytes");
    store.put(&key, bytes.clone(), "application/pdf").await?;

    let name = "Notice «Série 6».pdf";
    let link = store
        .download_link(&key, name, "application/pdf", Duration::from_secs(300))
        .await?;
    assert!(
        link.starts_with(&format!("{url}/{}/{key}?", store.bucket())),
        "{link}"
    );

    let response = http("GET", &link, &[], b"").await?;
    assert_eq!(response.status, 200);
    assert_eq!(response.body, bytes);

    // What S3 echoes back as Content-Disposition / Content-Type (moto does not echo them).
    let query = query_params(&link);
    assert_eq!(
        query
            .get("response-content-disposition")
            .map(String::as_str),
        Some(content_disposition(name).as_str())
    );
    assert_eq!(
        query
            .get("response-content-disposition")
            .map(String::as_str),
        Some(
            "inline; filename=\"Notice _S_rie 6_.pdf\"; filename*=UTF-8''Notice%20%C2%ABS%C3%A9rie%206%C2%BB.pdf"
        )
    );
    assert_eq!(
        query.get("response-content-type").map(String::as_str),
        Some("application/pdf")
    );
    assert_eq!(query.get("X-Amz-Expires").map(String::as_str), Some("300"));
    assert_eq!(
        query.get("X-Amz-SignedHeaders").map(String::as_str),
        Some("host")
    );
    let signature = query.get("X-Amz-Signature").ok_or("no signature")?;
    assert_eq!(signature.len(), 64);

    // A request without the signature is refused. (moto does not verify signatures, so an
    // altered one still downloads there; real S3 answers 403 SignatureDoesNotMatch.)
    let unsigned = link.split('?').next().ok_or("no path")?;
    assert_eq!(http("GET", unsigned, &[], b"").await?.status, 403);
    Ok(())
}

#[tokio::test]
async fn the_presigned_put_uploads_with_its_content_type_and_length() -> TestResult {
    let Some(url) = moto() else { return Ok(()) };
    let (store, client) = store(&url).await?;
    let key = key();
    let body = b"%PDF-1.7 uploaded by the client";
    let link = store
        .presigned_put(
            &key,
            "application/pdf",
            u64::try_from(body.len())?,
            Duration::from_secs(300),
        )
        .await?;

    // The content type and length are signed: real S3 refuses an upload that differs.
    let query = query_params(&link);
    assert_eq!(
        query.get("X-Amz-SignedHeaders").map(String::as_str),
        Some("content-length;content-type;host")
    );
    assert_eq!(query.get("X-Amz-Expires").map(String::as_str), Some("300"));

    let response = http("PUT", &link, &[("Content-Type", "application/pdf")], body).await?;
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(store.get(&key).await?.as_deref(), Some(&body[..]));
    let head = client
        .head_object()
        .bucket(store.bucket())
        .key(&key)
        .send()
        .await?;
    assert_eq!(head.content_type(), Some("application/pdf"));
    Ok(())
}

#[tokio::test]
async fn presigning_refuses_a_lifetime_over_seven_days() -> TestResult {
    let Some(url) = moto() else { return Ok(()) };
    let (store, _client) = store(&url).await?;
    let too_long = Duration::from_secs(8 * 24 * 3600);
    assert!(matches!(
        store
            .download_link("k", "n.pdf", "application/pdf", too_long)
            .await,
        Err(PortError::Failed(_))
    ));
    assert!(matches!(
        store
            .presigned_put("k", "application/pdf", 1, too_long)
            .await,
        Err(PortError::Failed(_))
    ));
    Ok(())
}

#[test]
fn content_disposition_is_ascii_safe_with_an_rfc5987_copy() {
    assert_eq!(
        content_disposition("Manual.pdf"),
        "inline; filename=\"Manual.pdf\"; filename*=UTF-8''Manual.pdf"
    );
    assert_eq!(
        content_disposition("Ça \"va\".pdf"),
        "inline; filename=\"_a _va_.pdf\"; filename*=UTF-8''%C3%87a%20%22va%22.pdf"
    );
    assert_eq!(
        content_disposition("a\r\nb;c\\d"),
        "inline; filename=\"a__b;c_d\"; filename*=UTF-8''a%0D%0Ab%3Bc%5Cd"
    );
    assert_eq!(
        content_disposition(""),
        "inline; filename=\"download\"; filename*=UTF-8''download"
    );
}

#[test]
fn the_sidecar_json_escapes_its_strings() {
    assert_eq!(
        metadata_sidecar_json("alice", "m1", "My \"big\" \\ manual\n\u{1}é"),
        "{\"metadataAttributes\": {\"user_id\": \"alice\", \"manual_id\": \"m1\", \
         \"manual_name\": \"My \\\"big\\\" \\\\ manual\\n\\u0001é\"}}"
    );
    assert_eq!(
        metadata_sidecar_key("manuals/a/b.pdf"),
        "manuals/a/b.pdf.metadata.json"
    );
}

struct Response {
    status: u16,
    body: Vec<u8>,
}

/// A plain HTTP/1.1 request over a TCP connection (moto is `http://host:port`).
async fn http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response, Box<dyn std::error::Error>> {
    let rest = url.strip_prefix("http://").ok_or("not an http URL")?;
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/"),
    };
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if method != "GET" {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    let mut stream = tokio::net::TcpStream::connect(authority).await?;
    stream.write_all(request.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;

    let end = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = std::str::from_utf8(&raw[..end])?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .ok_or("no status line")?
        .parse()?;
    let chunked = lines.any(|line| {
        line.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let mut body = raw[end + 4..].to_vec();
    if chunked {
        body = dechunk(&body)?;
    }
    Ok(Response { status, body })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|window| window == b"\r\n")
            .ok_or("bad chunk")?;
        let size_text = std::str::from_utf8(&data[..line_end])?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(data.get(..size).ok_or("short chunk")?);
        data = data.get(size + 2..).ok_or("short chunk")?;
    }
}

/// The decoded query parameters of a URL.
fn query_params(url: &str) -> BTreeMap<String, String> {
    let query = url.split_once('?').map(|(_, query)| query).unwrap_or("");
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, value)| (percent_decode(name), percent_decode(value)))
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn delete_prefix_removes_every_object_under_it_and_nothing_else() -> TestResult {
    let Some(url) = moto() else { return Ok(()) };
    let (store, client) = store(&url).await?;
    for name in ["1-a.png", "1-a.png.json", "2-b.png"] {
        store
            .put(
                &format!("pages/alice/m1/{name}"),
                Bytes::from_static(b"x"),
                "image/png",
            )
            .await?;
    }
    store
        .put(
            "pages/alice/m10/1-a.png",
            Bytes::from_static(b"y"),
            "image/png",
        )
        .await?;
    let manual = key();
    store
        .put(
            &manual,
            Bytes::from_static(b"%PDF-1.7\n"),
            "application/pdf",
        )
        .await?;

    assert_eq!(store.delete_prefix("pages/alice/m1/").await?, 3);
    assert_eq!(store.delete_prefix("pages/alice/m1/").await?, 0);
    let left: Vec<String> = client
        .list_objects_v2()
        .bucket(store.bucket())
        .send()
        .await?
        .contents()
        .iter()
        .filter_map(|object| object.key().map(str::to_owned))
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.contains(&"pages/alice/m10/1-a.png".to_owned()));
    assert!(left.contains(&manual));
    Ok(())
}
