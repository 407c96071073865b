//! CloudWatch Embedded Metric Format: one JSON document per invocation, written to
//! stdout, which Lambda ships to CloudWatch Logs and CloudWatch turns into metrics
//! (no agent, no API call on the hot path).
//!
//! Spec: <https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>

use serde_json::{json, Map, Value};

use crate::pipeline::BatchOutcome;
use crate::transform::SkipReason;

/// Default namespace (`RELAY_METRICS_NAMESPACE` overrides).
pub const DEFAULT_NAMESPACE: &str = "cdc-relay";

/// What an invocation measured besides the outcome.
#[derive(Debug, Clone, Default)]
pub struct Timings {
    /// Whole invocation, milliseconds.
    pub batch_ms: f64,
    /// Replication lag: now minus the oldest record's timestamp, milliseconds.
    pub max_record_age_ms: Option<f64>,
}

/// The EMF document for one invocation. `dimensions` are name/value pairs (e.g. the
/// function name) that become the metrics' dimension set.
pub fn emf(
    namespace: &str,
    timestamp_ms: i64,
    dimensions: &[(&str, &str)],
    outcome: &BatchOutcome,
    timings: &Timings,
) -> Value {
    let mut values: Vec<(&str, &str, f64)> = vec![
        ("RecordsIn", "Count", outcome.records as f64),
        ("RecordsProduced", "Count", outcome.produced as f64),
        ("RecordsDeadLettered", "Count", outcome.dead_lettered as f64),
        ("RecordsSkipped", "Count", outcome.skipped_total() as f64),
        ("RecordsFailed", "Count", outcome.not_done as f64),
        (
            "ControlRecords",
            "Count",
            outcome.skipped(SkipReason::Control) as f64,
        ),
        ("MessagesProduced", "Count", outcome.messages as f64),
        ("BatchDuration", "Milliseconds", timings.batch_ms),
        ("TransformDuration", "Milliseconds", outcome.transform_ms),
        ("ProduceDuration", "Milliseconds", outcome.produce_ms),
    ];
    if let Some(age) = timings.max_record_age_ms {
        values.push(("MaxRecordAge", "Milliseconds", age));
    }
    let mut doc = Map::new();
    doc.insert(
        "_aws".to_owned(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [dimensions.iter().map(|(name, _)| *name).collect::<Vec<_>>()],
                "Metrics": values.iter().map(|(name, unit, _)| json!({"Name": name, "Unit": unit})).collect::<Vec<_>>(),
            }],
        }),
    );
    for (name, value) in dimensions {
        doc.insert((*name).to_owned(), Value::String((*value).to_owned()));
    }
    for (name, _, value) in values {
        doc.insert(name.to_owned(), json!(value));
    }
    Value::Object(doc)
}
