//! Helpers shared by the integration tests: fixtures, a relay over the mock cluster,
//! a Lambda context, and a builder for synthetic MSK events of DMS records.

#![allow(dead_code)]

use cdc_relay::source::{EventWriter, MskEvent, RecordOut};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use cdc_relay::config::Settings;
use cdc_relay::modes::lambda::{BatchResponse, Function};
use cdc_relay::modes::local::{read_topics, ConsumedMessage, EmbeddedKafka};
use cdc_relay::transform::{HashKey, Routes};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{json, Value};

/// Repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Parses an MSK event from text.
pub fn parse_event(text: &str) -> MskEvent {
    MskEvent::parse(text.as_bytes().to_vec()).expect("fixture is an MSK event")
}

/// Loads `events/<name>`.
pub fn load_event(name: &str) -> MskEvent {
    let path = root().join("events").join(name);
    parse_event(&std::fs::read_to_string(&path).expect("fixture readable"))
}

/// The example routes file at the repository root.
/// The example routes, with the published local hash key (what the golden files use).
pub fn example_routes() -> Routes {
    let mut routes = Routes::load(&root().join("routes.toml")).expect("example routes are valid");
    routes
        .set_hash_key(Some(HashKey::local()))
        .expect("a hash key");
    routes
}

/// Settings pointing at `brokers`, with extra `RELAY_*` variables.
pub fn settings(brokers: &str, vars: &[(&str, &str)]) -> Settings {
    let mut all = vec![("RELAY_BROKERS", brokers)];
    all.extend_from_slice(vars);
    Settings::from_vars(all.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        .expect("valid test settings")
}

/// A relay over the mock cluster, with the given routes and variables.
pub fn relay(kafka: &EmbeddedKafka, routes: Routes, vars: &[(&str, &str)]) -> Function {
    Function::with_routes(settings(&kafka.bootstrap_servers(), vars), routes)
}

/// A Lambda context whose deadline is `ms` from now.
pub fn context(ms: u64) -> Context {
    let deadline = SystemTime::now() + Duration::from_millis(ms);
    let mut ctx = Context::default();
    ctx.request_id = "test-request".to_owned();
    ctx.deadline = deadline
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64;
    ctx
}

/// Invokes the Lambda handler with a 60 s deadline.
pub async fn invoke(relay: &Function, event: MskEvent) -> Result<BatchResponse, cdc_relay::Error> {
    relay.handle(LambdaEvent::new(event, context(60_000))).await
}

/// Invokes with a deadline `deadline_ms` from now; asserts the answer came before it.
pub async fn answered_in_time(
    relay: &Function,
    event: MskEvent,
    deadline_ms: u64,
) -> BatchResponse {
    let started = std::time::Instant::now();
    let response = relay
        .handle(LambdaEvent::new(event, context(deadline_ms)))
        .await
        .expect("partial response");
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_millis(deadline_ms),
        "answered after the deadline: {elapsed:?}"
    );
    response
}

/// `(partition, offset)` of each failure, sorted.
pub fn reported(response: &BatchResponse) -> Vec<(String, i64)> {
    let mut out: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| {
            (
                f.item_identifier.partition.clone(),
                f.item_identifier.offset,
            )
        })
        .collect();
    out.sort();
    out
}

/// Every message of `topics` on the cluster.
pub fn consume(kafka: &EmbeddedKafka, topics: &[&str]) -> Vec<ConsumedMessage> {
    read_topics(&kafka.bootstrap_servers(), topics, Duration::from_secs(20)).expect("read back")
}

/// Path of a golden file.
pub fn golden_path(name: &str) -> PathBuf {
    root().join("tests").join("golden").join(name)
}

/// Compares `actual` with the checked-in golden file; `UPDATE_GOLDEN=1` rewrites it.
pub fn assert_golden(name: &str, actual: &str) {
    let path = golden_path(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    assert_eq!(actual, expected, "output differs from {}", path.display());
}

/// Builds MSK events of DMS records, written by the core's event writer.
#[derive(Default)]
pub struct EventBuilder {
    records: Vec<BuiltRecord>,
}

/// A record of an [`EventBuilder`]: topic, partition, offset, key and value (base64).
type BuiltRecord = (String, i64, i64, Option<String>, Option<String>);

impl EventBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a record with an arbitrary (possibly malformed) base64 value.
    pub fn raw(
        mut self,
        topic: &str,
        partition: i64,
        offset: i64,
        key: Option<&str>,
        value_b64: Option<&str>,
    ) -> Self {
        self.records.push((
            topic.to_owned(),
            partition,
            offset,
            key.map(b64),
            value_b64.map(str::to_owned),
        ));
        self
    }

    /// Appends a DMS data record.
    pub fn data(
        self,
        topic: &str,
        partition: i64,
        offset: i64,
        op: &str,
        table: &str,
        data: Value,
    ) -> Self {
        let doc = json!({
            "data": data,
            "metadata": {
                "timestamp": "2024-11-21T14:40:00Z", "record-type": "data", "operation": op,
                "partition-key-type": "schema-table", "schema-name": "public", "table-name": table,
                "transaction-id": offset,
            }
        });
        let value = b64(&doc.to_string());
        self.raw(
            topic,
            partition,
            offset,
            Some(&format!("public.{table}")),
            Some(&value),
        )
    }

    pub fn build(self) -> MskEvent {
        self.build_from(
            Some("arn:aws:kafka:eu-west-1:111122223333:cluster/cdc/abcd-1234-5"),
            None,
        )
    }

    /// The event as a cluster sends it: its ARN (an MSK cluster), else its bootstrap
    /// servers (a self-managed one).
    pub fn build_from(self, arn: Option<&str>, bootstrap_servers: Option<&str>) -> MskEvent {
        let mut event = EventWriter::new(arn, bootstrap_servers);
        for (topic, partition, offset, key, value) in &self.records {
            event.push(
                EventWriter::key(topic, *partition),
                RecordOut {
                    topic,
                    partition: *partition,
                    offset: *offset,
                    timestamp: 1_732_200_000_000_i64,
                    timestamp_type: "CREATE_TIME",
                    key: key.as_deref().map(Into::into),
                    value: value.as_deref().map(Into::into),
                    headers: Vec::new(),
                },
            );
        }
        MskEvent::parse(serde_json::to_vec(&event).expect("an event serialises"))
            .expect("builder makes valid events")
    }
}

/// Base64 of a string.
pub fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}
