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
    pub(crate) fn label(&self, table: &str, routed: bool) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn metric<'a>(doc: &'a Value, name: &str) -> &'a Value {
        &doc[name]
    }

    /// One invocation's document: the namespace and dimension set CloudWatch reads, one
    /// metric definition per value, and the values themselves at the top level.
    #[test]
    fn invocation_document() {
        let outcome = BatchOutcome {
            records: 10,
            produced: 6,
            dead_lettered: 1,
            messages: 9,
            skipped: vec![(SkipReason::Control, 2)],
            not_done: 1,
            transform_ms: 1.5,
            produce_ms: 4.25,
            ..BatchOutcome::default()
        };
        let timings = Timings {
            batch_ms: 7.0,
            max_record_age_ms: Some(1200.0),
        };
        let doc = emf(
            "ns",
            1_700_000_000_000,
            &[("FunctionName", "f")],
            &outcome,
            &timings,
        );
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(doc["_aws"]["Timestamp"], 1_700_000_000_000_i64);
        assert_eq!(directive["Namespace"], "ns");
        assert_eq!(directive["Dimensions"], json!([["FunctionName"]]));
        assert_eq!(doc["FunctionName"], "f");
        let defined: Vec<&str> = directive["Metrics"]
            .as_array()
            .expect("metrics")
            .iter()
            .filter_map(|m| m["Name"].as_str())
            .collect();
        for name in &defined {
            assert!(
                !metric(&doc, name).is_null(),
                "{name} defined without a value"
            );
        }
        assert!(defined.contains(&"MaxRecordAge"));
        for (name, value) in [
            ("RecordsIn", 10.0),
            ("RecordsProduced", 6.0),
            ("RecordsDeadLettered", 1.0),
            ("RecordsSkipped", 2.0),
            ("ControlRecords", 2.0),
            ("RecordsFailed", 1.0),
            ("MessagesProduced", 9.0),
            ("BatchDuration", 7.0),
            ("ProduceDuration", 4.25),
            ("MaxRecordAge", 1200.0),
        ] {
            assert_eq!(metric(&doc, name).as_f64(), Some(value), "{name}");
        }
        // Without a record timestamp, no age is defined.
        let ageless = emf("ns", 0, &[], &outcome, &Timings::default());
        assert!(ageless["MaxRecordAge"].is_null());
        assert!(!ageless["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .expect("metrics")
            .iter()
            .any(|m| m["Name"] == "MaxRecordAge"));
    }

    /// One document per table, its name a dimension beside the function's.
    #[test]
    fn table_documents() {
        let tables = [TableCounts {
            table: Arc::from("public.orders"),
            records: 4,
            produced: 3,
            failed: 1,
            ..TableCounts::default()
        }];
        let docs = emf_tables("ns", 0, &[("FunctionName", "f")], &tables);
        assert_eq!(docs.len(), 1);
        let doc = &docs[0];
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["FunctionName", "Table"]])
        );
        assert_eq!(doc["Table"], "public.orders");
        assert_eq!(doc["RecordsIn"].as_f64(), Some(4.0));
        assert_eq!(doc["RecordsFailed"].as_f64(), Some(1.0));
    }

    /// Table names stay bounded: unrouted tables share one label, routed ones past the
    /// most share another, and counts that share a label are merged.
    #[test]
    fn table_labels_are_bounded() {
        let labels = TableLabels::new(1);
        let counts = |table: &str, records: usize| TableCounts {
            table: Arc::from(table),
            records,
            ..TableCounts::default()
        };
        let folded = labels.fold(
            &[
                counts("a.one", 1),
                counts("a.two", 2),
                counts("a.three", 4),
                counts("x.y", 8),
            ],
            |t| t != "x.y",
        );
        let got: Vec<(&str, usize)> = folded.iter().map(|t| (&*t.table, t.records)).collect();
        assert_eq!(
            got,
            vec![("a.one", 1), (OTHER_TABLES, 6), (UNROUTED_TABLES, 8)]
        );
        // The first name admitted keeps its own label later on.
        assert_eq!(labels.label("a.one", true), "a.one");
        assert_eq!(labels.label("a.four", true), OTHER_TABLES);
    }
}
