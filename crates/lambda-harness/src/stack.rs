//! A test stack on moto: the tables, buckets, queue and topic of template.yaml under the names
//! the template gives them (for a fresh stage), the environment the functions get from it, and,
//! on an IAM-enforcing moto, one IAM user per function whose only policy is that function's role
//! policy from the SAM-transformed template (scripts/role_policies.py); and API Gateway REST
//! events.

use std::collections::HashMap;
use std::path::PathBuf;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use serde_json::{Value, json};

use crate::FakeBedrock;

/// The knowledge base and data source ids the test stack pretends CloudFormation gave.
pub const KNOWLEDGE_BASE_ID: &str = "KBTEST1234";
pub const DATA_SOURCE_ID: &str = "DSTEST1234";
/// moto's default account, in which every test resource lives.
pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-1";

/// The keys of moto's admin user (`MANUEL_TEST_MOTO_ADMIN`, "KEY:SECRET", printed by
/// `scripts/moto.sh start-iam`), or `None` on a moto that does not enforce IAM.
fn admin_keys() -> Option<(String, String)> {
    let keys = std::env::var("MANUEL_TEST_MOTO_ADMIN").ok()?;
    let (key, secret) = keys.split_once(':')?;
    Some((key.to_owned(), secret.to_owned()))
}

/// An SDK configuration for moto at `moto` (the admin user's keys when IAM is enforced, static
/// test credentials otherwise; us-east-1).
pub async fn sdk(moto: &str) -> aws_config::SdkConfig {
    let (key, secret) = admin_keys().unwrap_or_else(|| ("test".to_owned(), "test".to_owned()));
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(moto)
        .region(aws_config::Region::new(REGION))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            key, secret, None, None, "test",
        ))
        .load()
        .await
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The python of the SAM venv (`scripts/template-checks.sh install`), which has SAM's
/// translator: `MANUEL_TEST_SAM_PYTHON` or .tools/sam-venv/bin/python.
fn sam_python() -> PathBuf {
    std::env::var_os("MANUEL_TEST_SAM_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".tools/sam-venv/bin/python"))
}

/// What scripts/role_policies.py says about template.yaml for `stage`: resources (names, ARNs,
/// table keys) and, per function binary, its role's statements and (on an IAM-enforcing moto)
/// the keys of the IAM user holding exactly those statements.
pub fn template_roles(stage: &str, vector_store: &str, moto: Option<&str>) -> Value {
    let python = sam_python();
    assert!(
        python.is_file(),
        "{} is missing: run scripts/template-checks.sh install (make test does)",
        python.display()
    );
    let mut command = std::process::Command::new(&python);
    command
        .arg(workspace().join("scripts/role_policies.py"))
        .arg("--template")
        .arg(workspace().join("template.yaml"))
        .args(["--account", ACCOUNT, "--region", REGION])
        .arg(format!("--param=Stage={stage}"))
        .arg(format!("--param=VectorStore={vector_store}"))
        .arg(format!(
            "--param=DeployerPrincipalArn=arn:aws:iam::{ACCOUNT}:user/deployer"
        ))
        .arg(format!(
            "--attribute=KnowledgeBase.KnowledgeBaseId={KNOWLEDGE_BASE_ID}"
        ))
        .arg(format!(
            "--attribute=ManualsDataSource.DataSourceId={DATA_SOURCE_ID}"
        ));
    if let Some(moto) = moto {
        command.args(["--endpoint", moto]);
        if let Some((key, secret)) = admin_keys() {
            command
                .args(["--moto-url", moto])
                .arg(format!("--moto-admin={key}:{secret}"));
        }
    }
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "scripts/role_policies.py failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn key_schema(spec: &Value) -> Vec<KeySchemaElement> {
    spec.as_array()
        .unwrap()
        .iter()
        .map(|element| {
            KeySchemaElement::builder()
                .attribute_name(element["AttributeName"].as_str().unwrap())
                .key_type(KeyType::from(element["KeyType"].as_str().unwrap()))
                .build()
                .unwrap()
        })
        .collect()
}

/// Creates the table as template.yaml declares it (keys and global secondary indexes).
async fn table(client: &aws_sdk_dynamodb::Client, spec: &Value) -> String {
    let name = spec["name"].as_str().unwrap().to_owned();
    let mut request = client
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .set_key_schema(Some(key_schema(&spec["KeySchema"])));
    for attribute in spec["AttributeDefinitions"].as_array().unwrap() {
        request = request.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(attribute["AttributeName"].as_str().unwrap())
                .attribute_type(ScalarAttributeType::from(
                    attribute["AttributeType"].as_str().unwrap(),
                ))
                .build()
                .unwrap(),
        );
    }
    for index in spec["GlobalSecondaryIndexes"].as_array().unwrap() {
        request = request.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(index["IndexName"].as_str().unwrap())
                .set_key_schema(Some(key_schema(&index["KeySchema"])))
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
    name
}

/// Tables, buckets, queue and topic of one test stack on moto, and the environment the
/// functions get from template.yaml.
pub struct Stack {
    /// What every function gets (no credentials); tests may add or override variables.
    pub env: Vec<(String, String)>,
    /// Per function binary: the keys of its IAM user (IAM-enforcing moto only).
    credentials: HashMap<String, (String, String)>,
    /// Per function: how API Gateway invokes it (`RESPONSE_TRANSFER_MODE` in template.yaml).
    transfer_modes: HashMap<String, String>,
    /// Per function binary: its role's statements from the SAM-transformed template.
    pub statements: HashMap<String, Vec<Value>>,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub bucket: String,
    pub audio_bucket: String,
    pub manuals_table: String,
    pub usage_table: String,
    pub idempotency_table: String,
    pub errors_table: String,
    pub alerts_queue: String,
    pub dead_letters: String,
    pub stage: String,
    /// The DynamoDB calls refused by table (IAM-enforcing moto only).
    pub dynamodb_iam: Option<crate::DynamoDbIamProxy>,
}

impl Stack {
    /// The environment of function `binary` (e.g. `manuel-manuals`; a second function of the
    /// same binary by its logical id, e.g. `QueryStreamFunction`): [`Stack::env`], its transfer
    /// mode from template.yaml and, when moto enforces IAM, the keys of the user that holds
    /// exactly its role's policy.
    pub fn env_of(&self, binary: &str) -> Vec<(String, String)> {
        let mut env = self.env.clone();
        if let Some(mode) = self.transfer_modes.get(binary) {
            env.push(("RESPONSE_TRANSFER_MODE".to_owned(), mode.clone()));
        }
        if let Some((key, secret)) = self.credentials.get(binary) {
            env.retain(|(name, _)| name != "AWS_ACCESS_KEY_ID" && name != "AWS_SECRET_ACCESS_KEY");
            env.push(("AWS_ACCESS_KEY_ID".to_owned(), key.clone()));
            env.push(("AWS_SECRET_ACCESS_KEY".to_owned(), secret.clone()));
        }
        env
    }

    /// Whether moto checks the functions' calls against their roles.
    pub fn iam_enforced(&self) -> bool {
        !self.credentials.is_empty()
    }
}

/// The knowledge base's store in template.yaml when deployed with its defaults.
pub const DEFAULT_VECTOR_STORE: &str = "S3Vectors";

/// A test stack as template.yaml deploys it with its default vector store.
pub async fn stack(moto: &str, bedrock: &FakeBedrock) -> Stack {
    stack_with(moto, bedrock, DEFAULT_VECTOR_STORE).await
}

/// A test stack whose knowledge base is on `vector_store` (`S3Vectors` or
/// `OpenSearchServerless`): the functions are told so, as the template tells them, and the
/// Bedrock fake answers as that store does.
pub async fn stack_with(moto: &str, bedrock: &FakeBedrock, vector_store: &str) -> Stack {
    bedrock.set_vector_store(vector_store);
    let config = sdk(moto).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    let sqs = aws_sdk_sqs::Client::new(&config);
    let sns = aws_sdk_sns::Client::new(&config);
    // Short: the stage is part of bucket names (at most 63 characters).
    let stage = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let roles = template_roles(&stage, vector_store, Some(moto));
    let resources = &roles["resources"];
    let name = |logical_id: &str| resources[logical_id]["name"].as_str().unwrap().to_owned();

    let manuals_table = table(&dynamodb, &resources["ManualsTable"]).await;
    let usage_table = table(&dynamodb, &resources["UsageTable"]).await;
    let limits = table(&dynamodb, &resources["RateLimitsTable"]).await;
    let errors_table = table(&dynamodb, &resources["ErrorsTable"]).await;
    let idempotency_table = table(&dynamodb, &resources["IdempotencyTable"]).await;
    let (bucket, audio_bucket) = (name("ManualsBucket"), name("AudioBucket"));
    for bucket in [&bucket, &audio_bucket] {
        s3.create_bucket().bucket(bucket).send().await.unwrap();
    }
    let dead_letters = sqs
        .create_queue()
        .queue_name(name("DeadLetterQueue"))
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned();
    // Error alerts go to the topic; a queue subscribed to it lets the tests read them.
    let alerts_queue = sqs
        .create_queue()
        .queue_name(format!("alerts-{stage}"))
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
    let topic_arn = sns
        .create_topic()
        .name(name("ErrorAlertsTopic"))
        .send()
        .await
        .unwrap()
        .topic_arn()
        .unwrap()
        .to_owned();
    sns.subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint(queue_arn)
        .send()
        .await
        .unwrap();

    let mut credentials = HashMap::new();
    let mut statements = HashMap::new();
    let mut transfer_modes = HashMap::new();
    for (binary, function) in roles["functions"].as_object().unwrap() {
        if let Some(mode) = function["environment"]["RESPONSE_TRANSFER_MODE"].as_str() {
            transfer_modes.insert(binary.clone(), mode.to_owned());
        }
        statements.insert(
            binary.clone(),
            function["statements"].as_array().unwrap().clone(),
        );
        if let (Some(key), Some(secret)) = (
            function["access_key"].as_str(),
            function["secret_key"].as_str(),
        ) {
            credentials.insert(binary.clone(), (key.to_owned(), secret.to_owned()));
        }
    }

    // moto authorises DynamoDB actions but not which table: this proxy checks the tables and
    // indexes; the Bedrock fake authorises what moto cannot serve at all.
    let mut dynamodb_iam = None;
    if !credentials.is_empty() {
        let roles: HashMap<String, Vec<Value>> = credentials
            .iter()
            .map(|(binary, (key, _))| (key.clone(), statements[binary].clone()))
            .collect();
        bedrock.authorize_with(roles.clone());
        dynamodb_iam = Some(crate::DynamoDbIamProxy::start(moto, roles).await);
    }
    // The model the template gives the query function, which its role is written for.
    let model = roles["functions"]["manuel-query"]["environment"]["BEDROCK_MODEL_ID"]
        .as_str()
        .unwrap()
        .to_owned();

    // What the template tells the functions (checked against the store asked for).
    let told_store = roles["functions"]["manuel-query"]["environment"]["VECTOR_STORE"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(told_store, vector_store, "template.yaml's VECTOR_STORE");
    let mut env: Vec<(String, String)> = [
        ("AWS_ENDPOINT_URL", moto),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", REGION),
        ("S3_FORCE_PATH_STYLE", "true"),
        ("STAGE", "dev"),
        ("MANUALS_TABLE", &manuals_table),
        ("USAGE_TABLE", &usage_table),
        ("RATE_LIMITS_TABLE", &limits),
        ("ERRORS_TABLE", &errors_table),
        ("IDEMPOTENCY_TABLE", &idempotency_table),
        ("MANUALS_BUCKET", &bucket),
        ("AUDIO_BUCKET", &audio_bucket),
        ("KNOWLEDGE_BASE_ID", KNOWLEDGE_BASE_ID),
        ("KNOWLEDGE_BASE_DATA_SOURCE_ID", DATA_SOURCE_ID),
        ("BEDROCK_MODEL_ID", &model),
        ("VECTOR_STORE", &told_store),
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
    if let Some(proxy) = &dynamodb_iam {
        env.push(("AWS_ENDPOINT_URL_DYNAMODB".to_owned(), proxy.url.clone()));
    }
    env.push(("JWKS_URL".to_owned(), format!("{}/jwks.json", bedrock.url)));
    env.extend(bedrock.env());
    Stack {
        env,
        credentials,
        transfer_modes,
        statements,
        dynamodb,
        s3,
        sqs,
        bucket,
        audio_bucket,
        manuals_table,
        usage_table,
        idempotency_table,
        errors_table,
        alerts_queue,
        dead_letters,
        stage,
        dynamodb_iam,
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
