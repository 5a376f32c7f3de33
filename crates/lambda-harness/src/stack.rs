//! A test stack on moto: the tables, bucket, queues and topic of template.yaml under fresh
//! names, and the environment the functions get from it; and API Gateway REST events.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use serde_json::{Value, json};

use crate::FakeBedrock;

/// An SDK configuration for moto at `moto` (static test credentials, us-east-1).
pub async fn sdk(moto: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(moto)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .load()
        .await
}

fn key(name: &str, kind: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .unwrap()
}

fn attribute(name: &str) -> AttributeDefinition {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .unwrap()
}

async fn table(client: &aws_sdk_dynamodb::Client, name: &str, hash: &str, range: Option<&str>) {
    let mut request = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute(hash))
        .key_schema(key(hash, KeyType::Hash));
    if let Some(range) = range {
        request = request
            .attribute_definitions(attribute(range))
            .key_schema(key(range, KeyType::Range));
    }
    if name.starts_with("manuals") {
        request = request
            .attribute_definitions(attribute("created_sk"))
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name("by_created")
                    .key_schema(key("user_id", KeyType::Hash))
                    .key_schema(key("created_sk", KeyType::Range))
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::All)
                            .build(),
                    )
                    .build()
                    .unwrap(),
            );
    }
    request.send().await.unwrap();
}

/// Tables, bucket, queue and topic of one test stack on moto, and the environment the functions
/// get from template.yaml.
pub struct Stack {
    pub env: Vec<(String, String)>,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub bucket: String,
    pub manuals_table: String,
    pub errors_table: String,
    pub alerts_queue: String,
    pub dead_letters: String,
}

pub async fn stack(moto: &str, bedrock: &FakeBedrock) -> Stack {
    let config = sdk(moto).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    let sqs = aws_sdk_sqs::Client::new(&config);
    let sns = aws_sdk_sns::Client::new(&config);
    let id = uuid::Uuid::new_v4().simple().to_string();
    let idempotency = format!("idempotency-{id}");
    let (manuals, usage, limits, errors, bucket) = (
        format!("manuals-{id}"),
        format!("usage-{id}"),
        format!("limits-{id}"),
        format!("errors-{id}"),
        format!("manuals-{id}"),
    );
    table(&dynamodb, &manuals, "user_id", Some("manual_id")).await;
    table(&dynamodb, &usage, "user_id", Some("sk")).await;
    table(&dynamodb, &limits, "key", None).await;
    table(&dynamodb, &errors, "fingerprint", None).await;
    table(&dynamodb, &idempotency, "key", None).await;
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let queue = sqs
        .create_queue()
        .queue_name(format!("alerts-{id}"))
        .send()
        .await
        .unwrap();
    let alerts_queue = queue.queue_url().unwrap().to_owned();
    let dead_letters = sqs
        .create_queue()
        .queue_name(format!("dlq-{id}"))
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned();
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&alerts_queue)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .cloned()
        })
        .unwrap();
    let topic = sns
        .create_topic()
        .name(format!("alerts-{id}"))
        .send()
        .await
        .unwrap();
    let topic_arn = topic.topic_arn().unwrap().to_owned();
    sns.subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint(queue_arn)
        .send()
        .await
        .unwrap();

    let mut env: Vec<(String, String)> = [
        ("AWS_ENDPOINT_URL", moto),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
        ("S3_FORCE_PATH_STYLE", "true"),
        ("STAGE", "dev"),
        ("MANUALS_TABLE", &manuals),
        ("USAGE_TABLE", &usage),
        ("RATE_LIMITS_TABLE", &limits),
        ("ERRORS_TABLE", &errors),
        ("IDEMPOTENCY_TABLE", &idempotency),
        ("MANUALS_BUCKET", &bucket),
        ("AUDIO_BUCKET", &bucket),
        ("KNOWLEDGE_BASE_ID", "KBTEST1234"),
        ("KNOWLEDGE_BASE_DATA_SOURCE_ID", "DSTEST1234"),
        (
            "BEDROCK_MODEL_ID",
            "eu.anthropic.claude-sonnet-4-20250514-v1:0",
        ),
        (
            "JWT_ISSUER",
            "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_TEST",
        ),
        ("JWT_AUDIENCE", "app-client-id"),
        ("VERIFY_JWT", "false"),
        ("ALERTS_TOPIC_ARN", &topic_arn),
        ("DLQ_URL", &dead_letters),
        ("INGESTION_POLL_MILLISECONDS", "50"),
        ("RECORD_WAIT_SECONDS", "2"),
        ("DAILY_QUOTA_LIMIT", "20"),
    ]
    .iter()
    .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
    .collect();
    env.push(("JWKS_URL".to_owned(), format!("{}/jwks.json", bedrock.url)));
    env.extend(bedrock.env());
    Stack {
        env,
        dynamodb,
        s3,
        sqs,
        bucket,
        manuals_table: manuals,
        errors_table: errors,
        alerts_queue,
        dead_letters,
    }
}

/// An API Gateway REST proxy event (from a recorded one) for `method path` as `user`.
pub fn api_event(method: &str, path: &str, user: &str, body: Option<Value>) -> Value {
    let mut event: Value =
        serde_json::from_str(include_str!("../tests/fixtures/apigw-rest-event.json")).unwrap();
    event["httpMethod"] = json!(method);
    event["path"] = json!(path);
    event["resource"] = json!("/{proxy+}");
    event["requestContext"]["httpMethod"] = json!(method);
    event["requestContext"]["path"] = json!(format!("/Prod{path}"));
    event["requestContext"]["requestId"] = json!(uuid::Uuid::new_v4().to_string());
    event["requestContext"]["authorizer"]["claims"]["sub"] = json!(user);
    if let Some(body) = body {
        event["body"] = json!(body.to_string());
        event["headers"]["Content-Type"] = json!("application/json");
        event["multiValueHeaders"]["Content-Type"] = json!(["application/json"]);
    }
    event
}
