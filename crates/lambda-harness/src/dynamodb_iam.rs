//! A proxy in front of moto's DynamoDB that authorises each call against the signing function's
//! role statements with the table (and index) ARNs it touches, which moto itself does not: moto
//! checks DynamoDB actions against the resource "*" only. Transactions and batches are checked
//! per table and per item action, as IAM authorises them
//! (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis-iam.html).
//! A refused call gets DynamoDB's 400 `AccessDeniedException`; everything else is forwarded
//! untouched (the Host header too: moto checks signatures).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::iam::{Check, access_key, allows};
use crate::stack::{ACCOUNT, REGION};

#[derive(Clone)]
struct Shared {
    upstream: String,
    client: reqwest::Client,
    /// Access key id → its role's statements.
    roles: Arc<HashMap<String, Vec<Value>>>,
    denied: Arc<Mutex<Vec<String>>>,
}

pub struct DynamoDbIamProxy {
    pub url: String,
    shared: Shared,
}

fn table_arn(table: &str) -> String {
    format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table}")
}

fn checks_of(operation: &str, body: &Value) -> Vec<Check> {
    let check = |action: &str, resource: String| Check {
        action: format!("dynamodb:{action}"),
        resource,
        context: HashMap::new(),
    };
    let mut checks = Vec::new();
    match operation {
        "BatchGetItem" | "BatchWriteItem" => {
            for table in body["RequestItems"].as_object().into_iter().flatten() {
                checks.push(check(operation, table_arn(table.0)));
            }
        }
        "TransactWriteItems" | "TransactGetItems" => {
            for item in body["TransactItems"].as_array().into_iter().flatten() {
                for (kind, action) in [
                    ("ConditionCheck", "ConditionCheckItem"),
                    ("Put", "PutItem"),
                    ("Update", "UpdateItem"),
                    ("Delete", "DeleteItem"),
                    ("Get", "GetItem"),
                ] {
                    if let Some(table) = item[kind]["TableName"].as_str() {
                        checks.push(check(action, table_arn(table)));
                    }
                }
            }
        }
        _ => {
            let table = body["TableName"].as_str().unwrap_or_default();
            let resource = match body["IndexName"].as_str() {
                Some(index) => format!("{}/index/{index}", table_arn(table)),
                None => table_arn(table),
            };
            checks.push(check(operation, resource));
        }
    }
    checks
}

impl DynamoDbIamProxy {
    pub async fn start(upstream: &str, roles: HashMap<String, Vec<Value>>) -> DynamoDbIamProxy {
        let shared = Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client: reqwest::Client::builder().no_proxy().build().unwrap(),
            roles: Arc::new(roles),
            denied: Arc::default(),
        };
        let app = Router::new().fallback(forward).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        DynamoDbIamProxy { url, shared }
    }

    /// The calls refused so far ("dynamodb:Action on arn").
    pub fn denied(&self) -> Vec<String> {
        self.shared.denied.lock().unwrap().clone()
    }
}

async fn forward(State(shared): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body: Bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let operation = parts
        .headers
        .get("x-amz-target")
        .and_then(|value| value.to_str().ok())
        .and_then(|target| target.strip_prefix("DynamoDB_20120810."))
        .map(str::to_owned);
    if let Some(operation) = operation {
        let key = parts
            .headers
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(access_key)
            .unwrap_or_default();
        // Keys that are not a function's (the test's own admin) are left to moto.
        if let Some(statements) = shared.roles.get(key) {
            let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if let Some(refused) = checks_of(&operation, &request)
                .into_iter()
                .find(|check| !allows(statements, check))
            {
                let what = format!("{} on {}", refused.action, refused.resource);
                shared.denied.lock().unwrap().push(what.clone());
                return (
                    StatusCode::BAD_REQUEST,
                    [("content-type", "application/x-amz-json-1.0")],
                    serde_json::json!({
                        "__type": "com.amazon.coral.service#AccessDeniedException",
                        "message": format!("User is not authorized to perform: {what}"),
                    })
                    .to_string(),
                )
                    .into_response();
            }
        }
    }
    let url = format!(
        "{}{}",
        shared.upstream,
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let upstream = shared
        .client
        .request(parts.method.clone(), url)
        .headers(parts.headers.clone())
        .body(body)
        .send()
        .await
        .unwrap();
    let status = upstream.status();
    let mut headers = HeaderMap::new();
    for (name, value) in upstream.headers() {
        if name != "transfer-encoding" && name != "content-length" {
            headers.insert(
                HeaderName::from_bytes(name.as_str().as_bytes()).unwrap(),
                HeaderValue::from_bytes(value.as_bytes()).unwrap(),
            );
        }
    }
    let bytes = upstream.bytes().await.unwrap();
    (status, headers, bytes).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn batches_and_transactions_are_checked_per_table_and_item_action() {
        let checks = checks_of(
            "TransactWriteItems",
            &json!({"TransactItems": [
                {"ConditionCheck": {"TableName": "a"}},
                {"Update": {"TableName": "b"}}
            ]}),
        );
        let pairs: Vec<(String, String)> =
            checks.into_iter().map(|c| (c.action, c.resource)).collect();
        assert_eq!(
            pairs,
            [
                ("dynamodb:ConditionCheckItem".to_owned(), table_arn("a")),
                ("dynamodb:UpdateItem".to_owned(), table_arn("b")),
            ]
        );
        let query = checks_of(
            "Query",
            &json!({"TableName": "m", "IndexName": "by_created"}),
        );
        assert_eq!(
            query[0].resource,
            format!("{}/index/by_created", table_arn("m"))
        );
        let batch = checks_of("BatchGetItem", &json!({"RequestItems": {"u": {}}}));
        assert_eq!(batch[0].action, "dynamodb:BatchGetItem");
    }
}
