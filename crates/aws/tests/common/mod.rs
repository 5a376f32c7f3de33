//! What the moto-backed tests share.
#![allow(dead_code)]

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
    ScalarAttributeType,
};

pub type TestError = Box<dyn std::error::Error>;

/// The moto server `make test` started (`MANUEL_TEST_MOTO_URL`), or `None` under a plain
/// `cargo test`, in which case the test says it was skipped.
pub fn moto() -> Option<String> {
    let url = std::env::var("MANUEL_TEST_MOTO_URL")
        .ok()
        .filter(|url| !url.is_empty());
    if url.is_none() {
        eprintln!(
            "MANUEL_TEST_MOTO_URL is not set: skipping this moto test (run it with `make test`)"
        );
    }
    url
}

/// A DynamoDB client for the moto server at `url`.
pub fn dynamodb(url: &str) -> Client {
    Client::from_conf(
        aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(url)
            .credentials_provider(Credentials::new("test", "test", None, None, "moto"))
            .build(),
    )
}

/// A string key element of a table or index.
pub fn key(name: &str, kind: KeyType) -> Result<KeySchemaElement, TestError> {
    Ok(KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()?)
}

/// Creates a pay-per-request table `<prefix>-<uuid>` keyed by the string attributes `hash` and
/// `range`, as template.yaml declares it, with `index` (whose other keys are in `indexed`).
pub async fn table(
    client: &Client,
    prefix: &str,
    hash: &str,
    range: Option<&str>,
    index: Option<(GlobalSecondaryIndex, &[&str])>,
) -> Result<String, TestError> {
    let table = format!("{prefix}-{}", uuid::Uuid::new_v4());
    let (index, indexed) = match index {
        Some((index, indexed)) => (Some(index), indexed),
        None => (None, &[][..]),
    };
    let mut create = client
        .create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key(hash, KeyType::Hash)?)
        .set_global_secondary_indexes(index.map(|index| vec![index]));
    if let Some(range) = range {
        create = create.key_schema(key(range, KeyType::Range)?);
    }
    for name in std::iter::once(&hash).chain(range.as_ref()).chain(indexed) {
        create = create.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(*name)
                .attribute_type(ScalarAttributeType::S)
                .build()?,
        );
    }
    create.send().await?;
    Ok(table)
}
