//! The Embedded Metric Format line.

use serde_json::{Map, Value, json};

use super::catalogue::{Dimension, Metric, NAMESPACE};

/// One EMF document: `dimensions` (name → value) apply to every metric in `values`.
pub fn emf_line(
    timestamp_ms: i64,
    dimensions: &[(Dimension, &str)],
    values: &[(Metric, f64)],
) -> String {
    let dimension_names: Vec<&str> = dimensions
        .iter()
        .map(|(dimension, _)| dimension.name())
        .collect();
    let definitions: Vec<Value> = values
        .iter()
        .map(|(metric, _)| json!({"Name": metric.name(), "Unit": metric.unit().name()}))
        .collect();
    let mut document = Map::new();
    document.insert(
        "_aws".to_owned(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [dimension_names],
                "Metrics": definitions,
            }],
        }),
    );
    for (dimension, value) in dimensions {
        document.insert(dimension.name().to_owned(), Value::from(*value));
    }
    for (metric, value) in values {
        document.insert(metric.name().to_owned(), json!(value));
    }
    Value::Object(document).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_names_namespace_dimensions_units_and_values() {
        let line = emf_line(
            1_700_000_000_000,
            &[
                (Dimension::Function, "query"),
                (Dimension::Dependency, "s3"),
            ],
            &[
                (Metric::DependencyErrors, 1.0),
                (Metric::DependencyLatency, 12.5),
            ],
        );
        let document: Value = serde_json::from_str(&line).unwrap();
        let directive = &document["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(document["_aws"]["Timestamp"], 1_700_000_000_000_i64);
        assert_eq!(directive["Namespace"], "Manuel/Application");
        assert_eq!(directive["Dimensions"], json!([["Function", "Dependency"]]));
        assert_eq!(
            directive["Metrics"],
            json!([
                {"Name": "DependencyErrors", "Unit": "Count"},
                {"Name": "DependencyLatency", "Unit": "Milliseconds"}
            ])
        );
        assert_eq!(document["Function"], "query");
        assert_eq!(document["Dependency"], "s3");
        assert_eq!(document["DependencyErrors"], 1.0);
        assert_eq!(document["DependencyLatency"], 12.5);
        assert!(!line.contains('\n'));
    }
}
