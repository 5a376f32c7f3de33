//! template.yaml against the code: every metric an alarm or a dashboard widget reads is one the
//! code emits, with exactly its dimensions and values the code gives them; every key of every
//! parameters/*.yaml is a template parameter with an allowed value, and gives the functions an
//! environment their config parsers accept; every model id is well formed and not retired.

// The helpers below are test code too: a template that does not parse should fail loudly where
// it breaks, which clippy.toml's allowance only grants inside `#[test]` functions.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use manuel_core::security::SecurityConfig;
use manuel_core::telemetry::{Metric, NAMESPACE};
use manuel_core::usage::Pricing;
use serde_yaml::Value;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn template() -> Value {
    let path = repo_root().join("template.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

fn resources(template: &Value) -> &serde_yaml::Mapping {
    template["Resources"].as_mapping().unwrap()
}

/// A dimension value: a literal, or an intrinsic function the test shows as text.
#[derive(Debug, Clone, PartialEq)]
enum DimValue {
    Literal(String),
    Intrinsic { function: String, argument: String },
}

impl DimValue {
    fn from_yaml(value: &Value) -> DimValue {
        match value {
            Value::String(s) => DimValue::Literal(s.clone()),
            Value::Tagged(tagged) => {
                let function = tagged.tag.to_string().trim_start_matches('!').to_owned();
                let argument = match &tagged.value {
                    Value::String(s) => s.clone(),
                    other => panic!("unexpected argument of !{function}: {other:?}"),
                };
                DimValue::Intrinsic { function, argument }
            }
            other => panic!("unexpected dimension value {other:?}"),
        }
    }
}

#[derive(Debug)]
struct MetricUse {
    place: String,
    namespace: String,
    name: String,
    dimensions: Vec<(String, DimValue)>,
}

fn alarm_uses(template: &Value) -> Vec<MetricUse> {
    let mut uses = Vec::new();
    for (id, resource) in resources(template) {
        if resource["Type"].as_str() != Some("AWS::CloudWatch::Alarm") {
            continue;
        }
        let id = id.as_str().unwrap();
        let properties = &resource["Properties"];
        let mut stats = Vec::new();
        if properties.get("MetricName").is_some() {
            stats.push((format!("alarm {id}"), properties));
        }
        if let Some(metrics) = properties.get("Metrics").and_then(Value::as_sequence) {
            for query in metrics {
                if let Some(metric) = query.get("MetricStat").map(|stat| &stat["Metric"]) {
                    stats.push((
                        format!("alarm {id} ({})", query["Id"].as_str().unwrap()),
                        metric,
                    ));
                } else {
                    assert!(
                        query.get("Expression").is_some(),
                        "alarm {id}: a query is neither a metric nor an expression"
                    );
                }
            }
        }
        assert!(!stats.is_empty(), "alarm {id} reads no metric");
        for (place, metric) in stats {
            let dimensions = metric
                .get("Dimensions")
                .and_then(Value::as_sequence)
                .map(|dims| {
                    dims.iter()
                        .map(|d| {
                            (
                                d["Name"].as_str().unwrap().to_owned(),
                                DimValue::from_yaml(&d["Value"]),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            uses.push(MetricUse {
                place,
                namespace: metric["Namespace"].as_str().unwrap().to_owned(),
                name: metric["MetricName"].as_str().unwrap().to_owned(),
                dimensions,
            });
        }
    }
    uses
}

/// The dashboard body is one `!Sub` JSON string; `${…}` only occurs inside JSON strings, so it
/// parses as it is and a dimension value like `manuel-${Stage}` stays a `Sub` literal.
fn widget_uses(template: &Value) -> Vec<MetricUse> {
    let mut uses = Vec::new();
    let mut dashboards = 0;
    for (id, resource) in resources(template) {
        if resource["Type"].as_str() != Some("AWS::CloudWatch::Dashboard") {
            continue;
        }
        dashboards += 1;
        let id = id.as_str().unwrap();
        let body = match &resource["Properties"]["DashboardBody"] {
            Value::Tagged(tagged) if tagged.tag == "Sub" => tagged.value.as_str().unwrap(),
            Value::String(s) => s.as_str(),
            other => panic!("dashboard {id}: unexpected body {other:?}"),
        };
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        for (index, widget) in body["widgets"].as_array().unwrap().iter().enumerate() {
            let title = widget["properties"]["title"].as_str().unwrap_or("untitled");
            let Some(metrics) = widget["properties"]["metrics"].as_array() else {
                continue;
            };
            for line in metrics {
                let items = line.as_array().unwrap();
                let strings: Vec<&str> = items.iter().filter_map(|v| v.as_str()).collect();
                let place = format!("dashboard {id} widget {index} \"{title}\"");
                if items.iter().all(|v| v.is_object()) {
                    assert!(
                        items[0].get("expression").is_some(),
                        "{place}: an object line must be an expression"
                    );
                    continue;
                }
                assert!(
                    !strings.contains(&"..."),
                    "{place}: spell every metric out; `...` hides what is read"
                );
                assert!(
                    strings.len() >= 2 && strings.len().is_multiple_of(2),
                    "{place}: {line} is not [namespace, name, (dimension, value)*]"
                );
                let dimensions = strings[2..]
                    .chunks(2)
                    .map(|pair| (pair[0].to_owned(), json_dim_value(pair[1])))
                    .collect();
                uses.push(MetricUse {
                    place,
                    namespace: strings[0].to_owned(),
                    name: strings[1].to_owned(),
                    dimensions,
                });
            }
        }
    }
    assert_eq!(dashboards, 1, "one dashboard");
    uses
}

fn json_dim_value(value: &str) -> DimValue {
    if value.contains("${") {
        DimValue::Intrinsic {
            function: "Sub".to_owned(),
            argument: value.to_owned(),
        }
    } else {
        DimValue::Literal(value.to_owned())
    }
}

/// `manuel-<function>-${Stage}` as the template names the Lambda functions.
fn function_names(template: &Value) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    for (id, resource) in resources(template) {
        if resource["Type"].as_str() == Some("AWS::Serverless::Function") {
            let name = match &resource["Properties"]["FunctionName"] {
                Value::Tagged(tagged) => tagged.value.as_str().unwrap().to_owned(),
                other => panic!("{id:?}: FunctionName {other:?}"),
            };
            names.insert(id.as_str().unwrap().to_owned(), name);
        }
    }
    names
}

fn queue_names(template: &Value) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    for (id, resource) in resources(template) {
        if resource["Type"].as_str() == Some("AWS::SQS::Queue") {
            let name = match &resource["Properties"]["QueueName"] {
                Value::Tagged(tagged) => tagged.value.as_str().unwrap().to_owned(),
                other => panic!("{id:?}: QueueName {other:?}"),
            };
            names.insert(id.as_str().unwrap().to_owned(), name);
        }
    }
    names
}

/// Why `used` is wrong, if it is.
fn problem(template: &Value, used: &MetricUse) -> Option<String> {
    let names: Vec<&str> = used.dimensions.iter().map(|(n, _)| n.as_str()).collect();
    match used.namespace.as_str() {
        NAMESPACE => {
            let Some(metric) = Metric::by_name(&used.name) else {
                return Some(format!("{} is not a metric the code emits", used.name));
            };
            let expected: Vec<&str> = metric.dimensions().iter().map(|d| d.name()).collect();
            if names != expected {
                return Some(format!(
                    "{} is emitted with dimensions {expected:?}, not {names:?}",
                    used.name
                ));
            }
            for ((name, value), dimension) in used.dimensions.iter().zip(metric.dimensions()) {
                match value {
                    DimValue::Literal(v) if dimension.values().contains(&v.as_str()) => {}
                    other => {
                        return Some(format!(
                            "{name}={other:?} is not a value the code gives it ({:?})",
                            dimension.values()
                        ));
                    }
                }
            }
            None
        }
        "AWS/ApiGateway" => {
            let api_name = resources(template)["ManuelApi"]["Properties"]["Name"].clone();
            let expected_api = DimValue::from_yaml(&api_name);
            let expected_stage =
                DimValue::from_yaml(&resources(template)["ManuelApi"]["Properties"]["StageName"]);
            let ok = names == ["ApiName", "Stage"]
                && same_sub(&used.dimensions[0].1, &expected_api)
                && used.dimensions[1].1 == expected_stage
                && [
                    "Count",
                    "4XXError",
                    "5XXError",
                    "Latency",
                    "IntegrationLatency",
                ]
                .contains(&used.name.as_str());
            (!ok).then(|| {
                format!(
                    "API Gateway metrics are read by ApiName {expected_api:?} and Stage {expected_stage:?}"
                )
            })
        }
        "AWS/Lambda" => {
            let functions = function_names(template);
            let ok = names == ["FunctionName"]
                && match &used.dimensions[0].1 {
                    DimValue::Intrinsic { function, argument } if function == "Ref" => {
                        functions.contains_key(argument)
                    }
                    DimValue::Intrinsic { argument, .. } => {
                        functions.values().any(|name| name == argument)
                    }
                    DimValue::Literal(_) => false,
                };
            (!ok).then(|| format!("FunctionName must name one of {functions:?}"))
        }
        "AWS/SQS" => {
            let queues = queue_names(template);
            let ok = names == ["QueueName"]
                && match &used.dimensions[0].1 {
                    DimValue::Intrinsic { function, argument } if function == "GetAtt" => argument
                        .strip_suffix(".QueueName")
                        .is_some_and(|id| queues.contains_key(id)),
                    DimValue::Intrinsic { argument, .. } => {
                        queues.values().any(|name| name == argument)
                    }
                    DimValue::Literal(_) => false,
                };
            (!ok).then(|| format!("QueueName must name one of {queues:?}"))
        }
        other => Some(format!("namespace {other} is not read by this template")),
    }
}

fn same_sub(used: &DimValue, expected: &DimValue) -> bool {
    match (used, expected) {
        (DimValue::Intrinsic { argument: a, .. }, DimValue::Intrinsic { argument: b, .. }) => {
            a == b
        }
        (a, b) => a == b,
    }
}

#[test]
fn alarms_and_widgets_read_only_metrics_the_code_emits() {
    let template = template();
    let alarms = alarm_uses(&template);
    let widgets = widget_uses(&template);
    let problems: Vec<String> = alarms
        .iter()
        .chain(&widgets)
        .filter_map(|used| {
            problem(&template, used)
                .map(|why| format!("{}: {}/{}: {why}", used.place, used.namespace, used.name))
        })
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // The alarms the issue asks for exist (so an empty parse cannot pass).
    let alarmed: BTreeSet<(String, String)> = alarms
        .iter()
        .map(|u| {
            let dims: Vec<String> = u
                .dimensions
                .iter()
                .filter_map(|(_, v)| match v {
                    DimValue::Literal(v) => Some(v.clone()),
                    DimValue::Intrinsic { .. } => None,
                })
                .collect();
            (u.name.clone(), dims.join("/"))
        })
        .collect();
    for expected in [
        ("4XXError", "v1"),
        ("5XXError", "v1"),
        ("Latency", "v1"),
        ("Errors", ""),
        ("Throttles", ""),
        ("ApproximateNumberOfMessagesVisible", ""),
        ("QuotaExceeded", "query"),
        ("DependencyErrors", "query/bedrock-retrieve"),
        ("DependencyErrors", "query/bedrock-converse"),
    ] {
        assert!(
            alarmed.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "no alarm on {expected:?}; alarms read {alarmed:?}"
        );
    }
    let ours = widgets.iter().filter(|u| u.namespace == NAMESPACE).count();
    assert!(ours > 20, "the dashboard shows {ours} of our metrics");
}

#[test]
fn every_function_has_error_and_throttle_alarms() {
    let template = template();
    let alarms = alarm_uses(&template);
    // The first-sync function runs once, during a deploy, which fails if it does.
    let deploy_only = ["KnowledgeBaseFirstSyncFunction"];
    for id in function_names(&template)
        .keys()
        .filter(|id| !deploy_only.contains(&id.as_str()))
    {
        for metric in ["Errors", "Throttles"] {
            let found = alarms.iter().any(|u| {
                u.name == metric
                    && u.dimensions.first().map(|(_, v)| v)
                        == Some(&DimValue::Intrinsic {
                            function: "Ref".to_owned(),
                            argument: id.clone(),
                        })
            });
            assert!(found, "no {metric} alarm for {id}");
        }
    }
}

#[test]
fn the_checker_rejects_what_the_code_does_not_emit() {
    let template = template();
    let wrong = [
        ("Requests", vec![("Function", "search")]),
        ("Requests", vec![("Function", "query"), ("Stage", "dev")]),
        ("DependencyErrors", vec![("Function", "query")]),
        (
            "DependencyErrors",
            vec![("Function", "query"), ("Dependency", "openai")],
        ),
        (
            "ErrorsRecorded",
            vec![("Function", "error-processor"), ("Severity", "fatal")],
        ),
        ("ErrorCount", vec![("Function", "query")]),
    ];
    for (name, dims) in wrong {
        let used = MetricUse {
            place: "test".to_owned(),
            namespace: NAMESPACE.to_owned(),
            name: name.to_owned(),
            dimensions: dims
                .into_iter()
                .map(|(n, v)| (n.to_owned(), DimValue::Literal(v.to_owned())))
                .collect(),
        };
        assert!(problem(&template, &used).is_some(), "{used:?} passed");
    }
}

// ---------------------------------------------------------------- parameter files

/// The stage parameter files SAM reads (parameters/<stage>.yaml, see samconfig.toml) and the
/// example of the account's own file.
fn parameter_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_root().join("parameters"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("unexpected scalar {other:?}"),
    }
}

/// Why `value` is not allowed for `parameter`, if it is not.
fn parameter_problem(parameter: &Value, value: &str) -> Option<String> {
    let kind = parameter["Type"].as_str().unwrap();
    if kind == "Number" {
        let Ok(number) = value.parse::<f64>() else {
            return Some(format!("{value:?} is not a number"));
        };
        if let Some(min) = parameter.get("MinValue").map(|v| v.as_f64().unwrap())
            && number < min
        {
            return Some(format!("{value} is below MinValue {min}"));
        }
        if let Some(max) = parameter.get("MaxValue").map(|v| v.as_f64().unwrap())
            && number > max
        {
            return Some(format!("{value} is above MaxValue {max}"));
        }
    }
    if let Some(allowed) = parameter.get("AllowedValues").and_then(Value::as_sequence) {
        let allowed: Vec<String> = allowed.iter().map(scalar).collect();
        if !allowed.iter().any(|a| a == value) {
            return Some(format!("{value:?} is not one of {allowed:?}"));
        }
    }
    if let Some(pattern) = parameter.get("AllowedPattern").and_then(Value::as_str) {
        // CloudFormation matches the whole value.
        let regex = regex::Regex::new(&format!("^(?:{pattern})$")).unwrap();
        if !regex.is_match(value) {
            return Some(format!("{value:?} does not match {pattern}"));
        }
    }
    let length = value.chars().count() as u64;
    if let Some(min) = parameter.get("MinLength").and_then(Value::as_u64)
        && length < min
    {
        return Some(format!("{value:?} is shorter than {min}"));
    }
    if let Some(max) = parameter.get("MaxLength").and_then(Value::as_u64)
        && length > max
    {
        return Some(format!("{value:?} is longer than {max}"));
    }
    None
}

fn read_parameter_file(path: &Path) -> BTreeMap<String, serde_json::Value> {
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn parameter_files_set_only_template_parameters_to_allowed_values() {
    let template = template();
    let parameters = template["Parameters"].as_mapping().unwrap();
    let files = parameter_files();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "account.example.yaml",
            "dev.yaml",
            "production.yaml",
            "staging.yaml"
        ]
    );
    let mut problems = Vec::new();
    for file in &files {
        let file_name = file.file_name().unwrap().to_string_lossy();
        for (key, value) in read_parameter_file(file) {
            let Some(value) = value.as_str() else {
                problems.push(format!("{file_name}: {key}: give every value as a string"));
                continue;
            };
            match parameters.get(key.as_str()) {
                None => problems.push(format!("{file_name}: {key} is not a template parameter")),
                Some(parameter) => {
                    if let Some(why) = parameter_problem(parameter, value) {
                        problems.push(format!("{file_name}: {key}: {why}"));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn parameter_defaults_are_allowed_values() {
    let template = template();
    for (name, parameter) in template["Parameters"].as_mapping().unwrap() {
        if let Some(default) = parameter.get("Default") {
            let default = scalar(default);
            if let Some(why) = parameter_problem(parameter, &default) {
                panic!("{name:?}: default {why}");
            }
        }
    }
}

#[test]
fn the_value_check_refuses_what_cloudformation_refuses() {
    let template = template();
    let parameters = &template["Parameters"];
    for (name, value) in [
        ("Stage", "prod"),
        ("DailyQuotaLimit", "0"),
        ("DailyQuotaLimit", "many"),
        ("BedrockTemperature", "1.5"),
        ("CorsAllowedOrigins", "https://app.example.com/"),
        ("IPAllowlist", "10.0.0.0"),
        ("HMACSigningKey", "short"),
        ("LogRetentionDays", "10"),
    ] {
        assert!(
            parameter_problem(&parameters[name], value).is_some(),
            "{name}={value} was accepted"
        );
    }
}

/// The environment the template gives `function` for `values`: literal values and `!Ref` to a
/// parameter are resolved; anything else (resource names, ARNs) is left out.
fn environment(
    template: &Value,
    function: &str,
    values: &BTreeMap<String, serde_json::Value>,
) -> HashMap<String, String> {
    let parameters = &template["Parameters"];
    let mut env = HashMap::new();
    let globals = &template["Globals"]["Function"]["Environment"]["Variables"];
    let own = &resources(template)[function]["Properties"]["Environment"]["Variables"];
    for variables in [globals, own] {
        let Some(variables) = variables.as_mapping() else {
            continue;
        };
        for (name, value) in variables {
            let resolved = match value {
                Value::Tagged(tagged) if tagged.tag == "Ref" => {
                    let parameter = tagged.value.as_str().unwrap();
                    if parameters.get(parameter).is_none() {
                        continue;
                    }
                    values
                        .get(parameter)
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .or_else(|| parameters[parameter].get("Default").map(scalar))
                        .unwrap()
                }
                Value::String(s) => s.clone(),
                _ => continue,
            };
            env.insert(name.as_str().unwrap().to_owned(), resolved);
        }
    }
    env
}

#[test]
fn every_parameter_file_gives_an_environment_the_functions_accept() {
    let template = template();
    for file in parameter_files() {
        let values = read_parameter_file(&file);
        if !values.contains_key("Stage") {
            continue; // the account's own file, not a stage
        }
        let file_name = file.file_name().unwrap().to_string_lossy().into_owned();
        for function in function_names(&template).keys() {
            let env = environment(&template, function, &values);
            assert_eq!(
                env.get("STAGE").map(String::as_str),
                values["Stage"].as_str()
            );
            if let Err(error) = SecurityConfig::from_vars(&env) {
                panic!("{file_name}: {function} would refuse to start: {error:?}");
            }
            if function == "QueryFunction" {
                assert!(env.contains_key("BEDROCK_MODEL_ID"), "{function}: {env:?}");
                if let Err(error) = Pricing::from_vars(Pricing::free(), &env) {
                    panic!("{file_name}: {function} would refuse to start: {error:?}");
                }
            }
        }
    }
}

// ---------------------------------------------------------------- MONITORING.md

fn monitoring() -> String {
    std::fs::read_to_string(repo_root().join("MONITORING.md")).unwrap()
}

#[test]
fn the_monitoring_catalogue_is_the_code_catalogue() {
    let text = monitoring();
    let section = text
        .split("## Metric catalogue")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .unwrap();
    let documented: BTreeSet<(String, String, String)> = section
        .lines()
        .filter(|line| line.starts_with("| `"))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            (
                cells[0].trim_matches('`').to_owned(),
                cells[1].to_owned(),
                cells[2].to_owned(),
            )
        })
        .collect();
    let emitted: BTreeSet<(String, String, String)> = Metric::ALL
        .iter()
        .map(|metric| {
            let dimensions: Vec<&str> = metric.dimensions().iter().map(|d| d.name()).collect();
            (
                metric.name().to_owned(),
                metric.unit().name().to_owned(),
                dimensions.join(", "),
            )
        })
        .collect();
    assert_eq!(documented, emitted);
}

/// GitHub's heading anchors: lower case, spaces to dashes, other punctuation dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn every_alarm_points_to_a_runbook_entry() {
    let template = template();
    let text = monitoring();
    let anchors: BTreeSet<String> = text
        .lines()
        .filter_map(|line| line.strip_prefix("### "))
        .map(anchor)
        .collect();
    let mut alarms = 0;
    for (id, resource) in resources(&template) {
        if resource["Type"].as_str() != Some("AWS::CloudWatch::Alarm") {
            continue;
        }
        alarms += 1;
        let description = resource["Properties"]["AlarmDescription"].as_str().unwrap();
        let target = description
            .split("MONITORING.md#")
            .nth(1)
            .map(|rest| rest.trim_end_matches('.').to_owned());
        let Some(target) = target else {
            panic!("{id:?}: the description names no runbook entry");
        };
        assert!(
            anchors.contains(&target),
            "{id:?}: no runbook entry #{target} in {anchors:?}"
        );
        let name = match &resource["Properties"]["AlarmName"] {
            Value::Tagged(tagged) => tagged.value.as_str().unwrap().to_owned(),
            other => panic!("{id:?}: AlarmName {other:?}"),
        };
        // Per-function alarms are listed once with `<function>` in place of the name.
        let listed = name.replace("${Stage}", "<stage>");
        let generic = function_names(&template)
            .values()
            .fold(listed.clone(), |acc, function| {
                let short = function
                    .trim_start_matches("manuel-")
                    .trim_end_matches("-${Stage}");
                acc.replace(
                    &format!("manuel-{short}-errors"),
                    "manuel-<function>-errors",
                )
                .replace(
                    &format!("manuel-{short}-throttles"),
                    "manuel-<function>-throttles",
                )
            });
        assert!(
            text.contains(&format!("`{generic}`")),
            "{id:?}: alarm {listed} is not in MONITORING.md's alarm table"
        );
    }
    assert!(alarms >= 20, "{alarms} alarms");
}

// ---------------------------------------------------------------- models

/// The model ids models/retired.json lists (past or announced end of life on Bedrock).
fn retired_models() -> Vec<String> {
    let list: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("models/retired.json")).unwrap(),
    )
    .unwrap();
    list["retired"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["model"].as_str().unwrap().to_owned())
        .collect()
}

/// Why a text or embedding model id cannot be deployed from eu-west-1, if it cannot: malformed,
/// retired, or an inference profile of another geography (us., apac. profiles are only
/// invocable from their own regions).
fn model_problem(id: &str, through_profile: bool, retired: &[String]) -> Option<String> {
    let well_formed = regex::Regex::new(
        r"^(?:(?:eu|global|us|apac|jp|au|ca)\.)?[a-z]+\.[a-z0-9]+(?:-[a-z0-9]+)*(?::[0-9]+)?$",
    )
    .unwrap();
    if !well_formed.is_match(id) {
        return Some(format!(
            "{id:?} is not a Bedrock model or inference profile id"
        ));
    }
    let parts: Vec<&str> = id.split('.').collect();
    let (geography, model) = match parts.as_slice() {
        [geography, provider, model] => (Some(*geography), format!("{provider}.{model}")),
        _ => (None, id.to_owned()),
    };
    if through_profile && !matches!(geography, Some("eu" | "global")) {
        return Some(format!(
            "{id:?}: UseInferenceProfile needs an eu. or global. profile id (the stack runs in eu-west-1)"
        ));
    }
    if !through_profile && geography.is_some() {
        return Some(format!(
            "{id:?} is an inference profile id: set UseInferenceProfile=true"
        ));
    }
    if retired.contains(&model) {
        return Some(format!("{id:?} is retired (models/retired.json)"));
    }
    None
}

#[test]
fn every_model_in_the_template_and_parameter_files_is_well_formed_and_not_retired() {
    let template = template();
    let retired = retired_models();
    let parameters = &template["Parameters"];
    let default = |name: &str| scalar(&parameters[name]["Default"]);
    let mut problems = Vec::new();
    let mut check = |origin: &str, text: &str, profile: &str, embedding: &str| {
        if let Some(why) = model_problem(text, profile == "true", &retired) {
            problems.push(format!("{origin}: TextModelId {why}"));
        }
        if let Some(why) = model_problem(embedding, false, &retired) {
            problems.push(format!("{origin}: EmbeddingModelId {why}"));
        }
    };
    check(
        "template.yaml defaults",
        &default("TextModelId"),
        &default("UseInferenceProfile"),
        &default("EmbeddingModelId"),
    );
    for embedding in parameters["EmbeddingModelId"]["AllowedValues"]
        .as_sequence()
        .unwrap()
    {
        check(
            "template.yaml EmbeddingModelId AllowedValues",
            &default("TextModelId"),
            &default("UseInferenceProfile"),
            &scalar(embedding),
        );
    }
    for file in parameter_files() {
        let values = read_parameter_file(&file);
        let value = |name: &str| {
            values
                .get(name)
                .and_then(|v| v.as_str())
                .map_or_else(|| default(name), str::to_owned)
        };
        check(
            &file.file_name().unwrap().to_string_lossy(),
            &value("TextModelId"),
            &value("UseInferenceProfile"),
            &value("EmbeddingModelId"),
        );
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_model_check_refuses_retired_malformed_and_foreign_models() {
    let retired = retired_models();
    assert!(retired.len() >= 3, "{retired:?}");
    for (id, through_profile) in [
        ("anthropic.claude-3-5-sonnet-20241022-v2:0", false),
        ("eu.anthropic.claude-3-7-sonnet-20250219-v1:0", true),
        ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", true),
        ("eu.anthropic.claude-sonnet-4-5-20250929-v1:0", false),
        ("anthropic.claude-sonnet-4-5-20250929-v1:0", true),
        ("claude-sonnet-4-5", false),
        ("eu.anthropic.claude sonnet", true),
    ] {
        assert!(
            model_problem(id, through_profile, &retired).is_some(),
            "{id} (profile: {through_profile}) passed"
        );
    }
    assert_eq!(
        model_problem(
            "eu.anthropic.claude-sonnet-4-5-20250929-v1:0",
            true,
            &retired
        ),
        None
    );
    assert_eq!(
        model_problem("amazon.titan-embed-text-v2:0", false, &retired),
        None
    );
}
