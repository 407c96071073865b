//! CloudWatch Embedded Metric Format: one JSON document per invocation, written to
//! stdout, which Lambda ships to CloudWatch Logs and CloudWatch turns into metrics
//! (no agent, no API call on the hot path).
//!
//! Spec: <https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>

use serde_json::{json, Map, Value};

use crate::pipeline::{BatchOutcome, TableCounts};
use crate::transform::SkipReason;

/// What an invocation measured besides the outcome.
#[derive(Debug, Clone, Default)]
pub struct Timings {
    /// Whole invocation, milliseconds.
    pub batch_ms: f64,
    /// Replication lag: now minus the oldest record's timestamp, milliseconds.
    pub max_record_age_ms: Option<f64>,
}

/// Dimension value of tables no route names (`RELAY_METRICS_PER_TABLE`).
pub const UNROUTED_TABLES: &str = "_unrouted";
/// Dimension value of routed tables past `RELAY_METRICS_MAX_TABLES`.
pub const OTHER_TABLES: &str = "_other";

/// The EMF document for one invocation. `dimensions` are name/value pairs (e.g. the
/// function name) that become the metrics' dimension set.
pub fn emf(
    namespace: &str,
    timestamp_ms: i64,
    dimensions: &[(&str, &str)],
    outcome: &BatchOutcome,
    timings: &Timings,
) -> Value {
    let mut values: Vec<(&'static str, &'static str, f64)> = vec![
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
        (
            "RecordsFiltered",
            "Count",
            outcome.skipped(SkipReason::Filter) as f64,
        ),
        (
            "DmsTableRecords",
            "Count",
            outcome.skipped(SkipReason::DmsTable) as f64,
        ),
        ("MessagesProduced", "Count", outcome.messages as f64),
        ("BatchDuration", "Milliseconds", timings.batch_ms),
        ("TransformDuration", "Milliseconds", outcome.transform_ms),
        ("ProduceDuration", "Milliseconds", outcome.produce_ms),
    ];
    if let Some(age) = timings.max_record_age_ms {
        values.push(("MaxRecordAge", "Milliseconds", age));
    }
    document(namespace, timestamp_ms, dimensions, &values)
}

/// One EMF document per table (dimensions `dimensions` + `Table`): records in,
/// produced, dead-lettered, skipped and failed. `tables` should already be folded to
/// a bounded set of names (see [`TableLabels`]).
pub fn emf_tables(
    namespace: &str,
    timestamp_ms: i64,
    dimensions: &[(&str, &str)],
    tables: &[TableCounts],
) -> Vec<Value> {
    tables
        .iter()
        .map(|t| {
            let mut dims: Vec<(&str, &str)> = dimensions.to_vec();
            dims.push(("Table", &t.table));
            let values = [
                ("RecordsIn", "Count", t.records as f64),
                ("RecordsProduced", "Count", t.produced as f64),
                ("RecordsDeadLettered", "Count", t.dead_lettered as f64),
                ("RecordsSkipped", "Count", t.skipped as f64),
                ("RecordsFailed", "Count", t.failed as f64),
            ];
            document(namespace, timestamp_ms, &dims, &values)
        })
        .collect()
}

/// Keeps the `Table` dimension's cardinality bounded for the life of an execution
/// environment: tables no route names become [`UNROUTED_TABLES`]; routed tables get
/// their own name until `max` names are in use, later ones become [`OTHER_TABLES`].
#[derive(Debug)]
pub struct TableLabels {
    max: usize,
    admitted: std::sync::Mutex<Vec<String>>,
}

impl TableLabels {
    /// At most `max` distinct table names.
    pub fn new(max: usize) -> TableLabels {
        TableLabels {
            max,
            admitted: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The dimension value for `table`; `routed` says a route names it.
    pub fn label(&self, table: &str, routed: bool) -> String {
        if !routed {
            return UNROUTED_TABLES.to_owned();
        }
        let Ok(mut admitted) = self.admitted.lock() else {
            return OTHER_TABLES.to_owned();
        };
        if admitted.iter().any(|t| t == table) {
            return table.to_owned();
        }
        if admitted.len() < self.max {
            admitted.push(table.to_owned());
            return table.to_owned();
        }
        OTHER_TABLES.to_owned()
    }

    /// Relabels per-table counts and merges those that now share a label.
    pub fn fold(&self, tables: &[TableCounts], routed: impl Fn(&str) -> bool) -> Vec<TableCounts> {
        let mut folded: Vec<TableCounts> = Vec::new();
        for t in tables {
            let label = if t.table.as_ref() == crate::pipeline::UNDECODED_TABLE {
                t.table.to_string()
            } else {
                self.label(&t.table, routed(&t.table))
            };
            match folded.iter_mut().find(|f| *f.table == *label) {
                Some(f) => {
                    f.records += t.records;
                    f.produced += t.produced;
                    f.dead_lettered += t.dead_lettered;
                    f.skipped += t.skipped;
                    f.failed += t.failed;
                }
                None => folded.push(TableCounts {
                    table: label.into(),
                    ..t.clone()
                }),
            }
        }
        folded
    }
}

fn document(
    namespace: &str,
    timestamp_ms: i64,
    dimensions: &[(&str, &str)],
    values: &[(&str, &str, f64)],
) -> Value {
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
        doc.insert((*name).to_owned(), json!(value));
    }
    Value::Object(doc)
}
