//! IAM policy evaluation for the calls moto cannot authorise (Bedrock): which action and
//! resource ARN a Bedrock REST request is, and whether a function role's statements allow it.
//!
//! What it forgives, on purpose: `NotAction`/`NotResource` statements are ignored (template.yaml
//! has none), and only the condition operators the template uses are evaluated
//! (`StringEquals`, `StringLike`, `ArnEquals`, `ArnLike`); any other operator makes its
//! statement not apply, so an unknown condition can only deny, never allow. As in IAM, an
//! explicit Deny wins, and a condition key the request does not carry fails the condition.

use std::collections::HashMap;

use serde_json::Value;

use crate::stack::{ACCOUNT, REGION};

/// One authorisation IAM makes for a request: an action on a resource, with the request's
/// condition keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub action: String,
    pub resource: String,
    pub context: HashMap<String, String>,
}

/// `*` and `?` wildcards, as IAM matches actions (case-insensitively) and ARNs.
fn glob(pattern: &str, value: &str, ignore_case: bool) -> bool {
    let (pattern, value): (Vec<char>, Vec<char>) = if ignore_case {
        (
            pattern.to_lowercase().chars().collect(),
            value.to_lowercase().chars().collect(),
        )
    } else {
        (pattern.chars().collect(), value.chars().collect())
    };
    // Classic two-pointer wildcard match with backtracking to the last `*`.
    let (mut p, mut v, mut star, mut mark) = (0, 0, None, 0);
    while v < value.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == value[v]) {
            p += 1;
            v += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some(p);
            mark = v;
            p += 1;
        } else if let Some(s) = star {
            p = s + 1;
            mark += 1;
            v = mark;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

fn strings(value: &Value) -> Vec<&str> {
    match value {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn conditions_hold(conditions: Option<&Value>, context: &HashMap<String, String>) -> bool {
    let Some(conditions) = conditions.and_then(Value::as_object) else {
        return true;
    };
    conditions.iter().all(|(operator, keys)| {
        let Some(keys) = keys.as_object() else {
            return false;
        };
        keys.iter().all(|(key, expected)| {
            let Some(actual) = context.get(key) else {
                return false;
            };
            let expected = strings(expected);
            match operator.as_str() {
                "StringEquals" | "ArnEquals" => expected.iter().any(|e| e == actual),
                "StringLike" | "ArnLike" => expected.iter().any(|e| glob(e, actual, false)),
                _ => false,
            }
        })
    })
}

fn applies(statement: &Value, check: &Check) -> bool {
    strings(&statement["Action"])
        .iter()
        .any(|action| glob(action, &check.action, true))
        && strings(&statement["Resource"])
            .iter()
            .any(|resource| glob(resource, &check.resource, false))
        && conditions_hold(statement.get("Condition"), &check.context)
}

/// Whether `statements` (one role's) allow `check`.
pub fn allows(statements: &[Value], check: &Check) -> bool {
    let matching: Vec<&Value> = statements.iter().filter(|s| applies(s, check)).collect();
    !matching.iter().any(|s| s["Effect"] == "Deny")
        && matching.iter().any(|s| s["Effect"] == "Allow")
}

fn check(action: &str, resource: String) -> Check {
    Check {
        action: action.to_owned(),
        resource,
        context: HashMap::new(),
    }
}

/// The authorisations Bedrock makes for a request to `path` (the SDK's REST paths; the model id
/// percent-decoded), or `None` for a path that is not a Bedrock API.
///
/// Converse is authorised as `bedrock:InvokeModel`. Through a cross-region inference profile
/// (`eu.`, `global.`, ... before the model id) Bedrock checks the profile, then the foundation
/// model in the destination region it routes to, with `bedrock:InferenceProfileArn` set:
/// https://docs.aws.amazon.com/bedrock/latest/userguide/inference-profiles-prereq.html
/// The fake routes `eu.` to eu-central-1 and `global.` to the region-less model ARN.
pub fn bedrock_checks(method: &str, path: &str) -> Option<Vec<Check>> {
    let knowledge_base =
        |id: &str| format!("arn:aws:bedrock:{REGION}:{ACCOUNT}:knowledge-base/{id}");
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method, parts.as_slice()) {
        ("POST", ["knowledgebases", kb, "retrieve"]) => {
            Some(vec![check("bedrock:Retrieve", knowledge_base(kb))])
        }
        ("PUT", ["knowledgebases", kb, "datasources", _, "documents"]) => Some(vec![check(
            "bedrock:IngestKnowledgeBaseDocuments",
            knowledge_base(kb),
        )]),
        (
            "POST",
            [
                "knowledgebases",
                kb,
                "datasources",
                _,
                "documents",
                "getDocuments",
            ],
        ) => Some(vec![check(
            "bedrock:GetKnowledgeBaseDocuments",
            knowledge_base(kb),
        )]),
        (
            "POST",
            [
                "knowledgebases",
                kb,
                "datasources",
                _,
                "documents",
                "deleteDocuments",
            ],
        ) => Some(vec![check(
            "bedrock:DeleteKnowledgeBaseDocuments",
            knowledge_base(kb),
        )]),
        (
            "POST",
            [
                "model",
                model,
                operation @ ("converse" | "converse-stream" | "invoke"),
            ],
        ) => {
            // Streaming calls have their own action:
            // https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html
            let action = if *operation == "converse-stream" {
                "bedrock:InvokeModelWithResponseStream"
            } else {
                "bedrock:InvokeModel"
            };
            let model = percent_decode(model);
            let pieces: Vec<&str> = model.splitn(3, '.').collect();
            Some(match pieces.as_slice() {
                [geography, provider, name] => {
                    let profile =
                        format!("arn:aws:bedrock:{REGION}:{ACCOUNT}:inference-profile/{model}");
                    let destination = match *geography {
                        "global" => "",
                        "eu" => "eu-central-1",
                        _ => REGION,
                    };
                    let mut routed = check(
                        action,
                        format!(
                            "arn:aws:bedrock:{destination}::foundation-model/{provider}.{name}"
                        ),
                    );
                    routed
                        .context
                        .insert("bedrock:InferenceProfileArn".to_owned(), profile.clone());
                    vec![check(action, profile), routed]
                }
                _ => vec![check(
                    action,
                    format!("arn:aws:bedrock:{REGION}::foundation-model/{model}"),
                )],
            })
        }
        _ => None,
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The access key id a SigV4 `Authorization` header was signed with.
pub fn access_key(authorization: &str) -> Option<&str> {
    let credential = authorization.split("Credential=").nth(1)?;
    credential.split('/').next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn profile_statements(profile: &str, model: &str) -> Vec<Value> {
        vec![
            json!({"Effect": "Allow", "Action": "bedrock:InvokeModel",
                   "Resource": format!("arn:aws:bedrock:{REGION}:{ACCOUNT}:inference-profile/{profile}")}),
            json!({"Effect": "Allow", "Action": "bedrock:InvokeModel",
                   "Resource": format!("arn:aws:bedrock:*::foundation-model/{model}"),
                   "Condition": {"StringEquals": {"bedrock:InferenceProfileArn":
                       format!("arn:aws:bedrock:{REGION}:{ACCOUNT}:inference-profile/{profile}")}}}),
        ]
    }

    fn allowed(statements: &[Value], method: &str, path: &str) -> bool {
        bedrock_checks(method, path)
            .unwrap()
            .iter()
            .all(|check| allows(statements, check))
    }

    #[test]
    fn a_profile_call_needs_the_profile_and_its_model_through_it() {
        let profile = "eu.anthropic.claude-sonnet-4-5-20250929-v1:0";
        let path = "/model/eu.anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse";
        let both = profile_statements(profile, "anthropic.claude-sonnet-4-5-20250929-v1:0");
        assert!(allowed(&both, "POST", path));
        assert!(
            !allowed(&both[..1], "POST", path),
            "the model grant is needed"
        );
        assert!(
            !allowed(&both[1..], "POST", path),
            "the profile grant is needed"
        );
        let other = profile_statements(profile, "anthropic.claude-3-7-sonnet-20250219-v1:0");
        assert!(!allowed(&other, "POST", path), "another model's grant");
        let elsewhere = profile_statements(
            "eu.anthropic.claude-sonnet-4-20250514-v1:0",
            "anthropic.claude-sonnet-4-5-20250929-v1:0",
        );
        assert!(
            !allowed(&elsewhere, "POST", path),
            "another profile's condition"
        );
    }

    #[test]
    fn a_streamed_answer_needs_invoke_model_with_response_stream() {
        let profile = "eu.anthropic.claude-sonnet-4-5-20250929-v1:0";
        let model = "anthropic.claude-sonnet-4-5-20250929-v1:0";
        let path = "/model/eu.anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse-stream";
        let invoke_only = profile_statements(profile, model);
        assert!(
            !allowed(&invoke_only, "POST", path),
            "InvokeModel does not cover streaming"
        );
        let streaming: Vec<Value> = invoke_only
            .iter()
            .map(|statement| {
                let mut statement = statement.clone();
                statement["Action"] = json!("bedrock:InvokeModelWithResponseStream");
                statement
            })
            .collect();
        assert!(allowed(&streaming, "POST", path));
        assert!(!allowed(
            &streaming,
            "POST",
            &path.replace("converse-stream", "converse")
        ));
    }

    #[test]
    fn knowledge_base_calls_need_their_own_actions_on_that_knowledge_base() {
        let statements = vec![json!({"Effect": "Allow",
            "Action": ["bedrock:Retrieve"],
            "Resource": format!("arn:aws:bedrock:{REGION}:{ACCOUNT}:knowledge-base/KB1")})];
        assert!(allowed(&statements, "POST", "/knowledgebases/KB1/retrieve"));
        assert!(!allowed(
            &statements,
            "POST",
            "/knowledgebases/KB2/retrieve"
        ));
        assert!(!allowed(
            &statements,
            "PUT",
            "/knowledgebases/KB1/datasources/DS/documents"
        ));
        let denied = [
            statements[0].clone(),
            json!({"Effect": "Deny", "Action": "bedrock:*", "Resource": "*"}),
        ];
        assert!(!allowed(&denied, "POST", "/knowledgebases/KB1/retrieve"));
    }

    #[test]
    fn wildcards_match_as_iam_matches() {
        assert!(glob(
            "bedrock:InvokeModel*",
            "bedrock:invokemodelwithresponsestream",
            true
        ));
        assert!(glob(
            "arn:aws:bedrock:*::foundation-model/x",
            "arn:aws:bedrock:::foundation-model/x",
            false
        ));
        assert!(!glob(
            "arn:aws:s3:::bucket/*",
            "arn:aws:s3:::bucket2/key",
            false
        ));
        assert_eq!(
            access_key(
                "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20261206/us-east-1/bedrock/aws4_request, SignedHeaders=host, Signature=abc"
            ),
            Some("AKIAEXAMPLE")
        );
    }
}
