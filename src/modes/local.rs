//! Running the relay outside Lambda: an embedded Kafka and reading messages back.
//!
//! [`EmbeddedKafka`] is librdkafka's in-process mock cluster (real Kafka protocol on
//! loopback, no process to install); it is `!Send` and must outlive every client that
//! uses it. [`read_ranges`] consumes exactly the given offsets with a plain rdkafka
//! consumer, so what the local `invoke` command prints, and what the tests assert, is
//! what the broker stored, not what the relay meant to send.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value};

use crate::error::Error;
use crate::pipeline::{DeliveryRecord, Pipeline};
use crate::source::{EventOrigin, SourceRecord};
use crate::transform::{header, OutMessage, Routes, Transformed};

/// The event `invoke` runs when given no file: inserts, an update with before-image, a
/// delete and a DDL record over two tables and partitions.
pub const SAMPLE_EVENT: &str = include_str!("../../events/sample.json");

/// librdkafka's in-process mock cluster.
pub struct EmbeddedKafka {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl EmbeddedKafka {
    /// Starts a cluster of `brokers` brokers; topics are created on first use.
    pub fn start(brokers: i32) -> Result<EmbeddedKafka, Error> {
        let cluster = MockCluster::new(brokers)
            .map_err(|e| Error::Producer(format!("cannot start embedded Kafka: {e}")))?;
        Ok(EmbeddedKafka { cluster })
    }

    /// `host:port,...` of the cluster.
    pub fn bootstrap_servers(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    /// The mock cluster, for fault injection (`broker_down`, `request_errors`, ...).
    pub fn cluster(&self) -> &MockCluster<'static, DefaultProducerContext> {
        &self.cluster
    }
}

/// A message as a consumer read it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedMessage {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Headers in stored order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Value bytes; `None` for a tombstone.
    pub value: Option<Vec<u8>>,
}

impl ConsumedMessage {
    /// The value of a header, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// One JSON line: `topic, partition, offset, key, headers, value` (value parsed as
    /// JSON when it is JSON).
    pub fn to_json(&self) -> Value {
        let text = |bytes: &Option<Vec<u8>>| {
            bytes
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
        };
        let headers = headers_json(self.headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())));
        let value = value_json(self.value.as_deref());
        json!({
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "key": text(&self.key),
            "headers": headers,
            "value": value,
        })
    }
}

/// Reads back exactly the acknowledged messages, in the order they were delivered.
pub fn read_back(
    brokers: &str,
    deliveries: &[DeliveryRecord],
    timeout: Duration,
) -> Result<Vec<ConsumedMessage>, Error> {
    let mut ranges: HashMap<(String, i32), (i64, i64)> = HashMap::new();
    for d in deliveries {
        let range = ranges
            .entry((d.topic.to_string(), d.partition))
            .or_insert((d.offset, d.offset));
        range.0 = range.0.min(d.offset);
        range.1 = range.1.max(d.offset);
    }
    let ranges: Vec<_> = ranges
        .into_iter()
        .map(|((t, p), (lo, hi))| (t, p, lo, hi + 1))
        .collect();
    let mut by_position: HashMap<(String, i32, i64), ConsumedMessage> =
        read_ranges(brokers, &ranges, timeout)?
            .into_iter()
            .map(|m| ((m.topic.clone(), m.partition, m.offset), m))
            .collect();
    deliveries
        .iter()
        .map(|d| {
            by_position
                .remove(&(d.topic.to_string(), d.partition, d.offset))
                .ok_or_else(|| {
                    Error::Producer(format!(
                        "message {}/{}@{} not found on read-back",
                        d.topic, d.partition, d.offset
                    ))
                })
        })
        .collect()
}

/// Reads every message of `topics`, all partitions, from the beginning to the high
/// watermark, ordered by topic, partition and offset.
pub fn read_topics(
    brokers: &str,
    topics: &[&str],
    timeout: Duration,
) -> Result<Vec<ConsumedMessage>, Error> {
    let consumer = consumer(brokers)?;
    let mut ranges = Vec::new();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), timeout)
            .map_err(|e| Error::Producer(format!("metadata for {topic}: {e}")))?;
        for t in metadata.topics() {
            for p in t.partitions() {
                let (low, high) =
                    consumer
                        .fetch_watermarks(topic, p.id(), timeout)
                        .map_err(|e| {
                            Error::Producer(format!("watermarks of {topic}/{}: {e}", p.id()))
                        })?;
                if high > low {
                    ranges.push((topic.to_string(), p.id(), low, high));
                }
            }
        }
    }
    let mut messages = read_ranges(brokers, &ranges, timeout)?;
    messages
        .sort_by(|a, b| (&a.topic, a.partition, a.offset).cmp(&(&b.topic, b.partition, b.offset)));
    Ok(messages)
}

fn consumer(brokers: &str) -> Result<BaseConsumer, Error> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "cdc-relay-read-back")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .map_err(|e| Error::Producer(format!("cannot create consumer: {e}")))
}

/// Reads `[start, end)` of each `(topic, partition, start, end)`.
pub(crate) fn read_ranges(
    brokers: &str,
    ranges: &[(String, i32, i64, i64)],
    timeout: Duration,
) -> Result<Vec<ConsumedMessage>, Error> {
    if ranges.is_empty() {
        return Ok(Vec::new());
    }
    let consumer = consumer(brokers)?;
    let mut assignment = TopicPartitionList::new();
    let mut remaining: HashMap<(String, i32), i64> = HashMap::new();
    for (topic, partition, start, end) in ranges {
        assignment
            .add_partition_offset(topic, *partition, Offset::Offset(*start))
            .map_err(|e| Error::Producer(format!("assign {topic}/{partition}: {e}")))?;
        remaining.insert((topic.clone(), *partition), *end);
    }
    consumer
        .assign(&assignment)
        .map_err(|e| Error::Producer(format!("assign: {e}")))?;
    let give_up = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut last_error = None;
    while !remaining.is_empty() {
        if Instant::now() >= give_up {
            return Err(Error::Producer(format!(
                "read-back timed out; still waiting for {remaining:?} (last error: {last_error:?})"
            )));
        }
        let Some(polled) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        // A broker of the cluster being down is reported here too; the partitions read
        // may not need it, so keep reading until the timeout.
        let message = match polled {
            Ok(message) => message,
            Err(e) => {
                last_error = Some(e.to_string());
                continue;
            }
        };
        let position = (message.topic().to_owned(), message.partition());
        let Some(end) = remaining.get(&position).copied() else {
            continue;
        };
        if message.offset() >= end {
            continue;
        }
        out.push(ConsumedMessage {
            topic: position.0.clone(),
            partition: position.1,
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            headers: crate::kafka::headers_of(&message),
            value: message.payload().map(<[u8]>::to_vec),
        });
        if message.offset() + 1 >= end {
            remaining.remove(&position);
        }
    }
    Ok(out)
}

/// What each record of a batch would become, without producing: one JSON object per
/// record, in source order (`cdc-relay check-routes FILE EVENT`).
pub fn dry_run(pipeline: &Pipeline, origin: &EventOrigin, records: &[SourceRecord]) -> Vec<Value> {
    let cluster = origin.cluster();
    records
        .iter()
        .map(|record| {
            let at = json!({"partition": &*record.batch_partition, "offset": record.offset});
            let outcome = match pipeline.process(record, &cluster) {
                Ok(Transformed::Messages(messages)) => {
                    let routes = pipeline.routes();
                    json!({"produces": messages.iter().map(|m| message_json(m, routes)).collect::<Vec<_>>()})
                }
                Ok(Transformed::Skipped(reason)) => json!({"skipped": reason.as_str()}),
                Err(error) => json!({"error": error.to_string(), "stage": error.stage.as_str(), "retryable": error.retryable}),
            };
            json!({"record": at, "outcome": outcome})
        })
        .collect()
}

/// A message as the dry run prints it; `topic_as_written` when the name DMS's schema and
/// table gave was not one Kafka accepts and was made legal.
fn message_json(message: &OutMessage, routes: &Routes) -> Value {
    let headers = headers_json(message.headers.iter());
    let value = value_json(message.value.as_deref());
    let mut out = json!({
        "topic": &*message.topic,
        "key": message.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned()),
        "headers": headers,
        "value": value,
    });
    let written = message
        .header(header::TABLE)
        .and_then(|t| std::str::from_utf8(t).ok())
        .and_then(|table| routes.topic_as_written(table, &message.topic));
    if let (Some(written), Some(fields)) = (written, out.as_object_mut()) {
        fields.insert("topic_as_written".to_owned(), Value::String(written));
    }
    out
}

/// Header name -> value as text (lossy UTF-8), for printing.
fn headers_json<'a>(
    headers: impl Iterator<Item = (&'a str, &'a [u8])>,
) -> serde_json::Map<String, Value> {
    headers
        .map(|(k, v)| {
            (
                k.to_owned(),
                Value::String(String::from_utf8_lossy(v).into_owned()),
            )
        })
        .collect()
}

/// A message value for printing: parsed when it is JSON, else its text; `null` for a tombstone.
fn value_json(value: Option<&[u8]>) -> Value {
    match value {
        None => Value::Null,
        Some(bytes) => serde_json::from_slice(bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned())),
    }
}

/// What a change of routes does to a batch (`cdc-relay check-routes NEW EVENT --against
/// OLD`): one line per record, and totals.
#[derive(Debug, Default)]
pub struct Comparison {
    /// Per record: its outcome before and after, and the messages added, removed and
    /// changed (field by field).
    pub lines: Vec<Value>,
    /// Records whose outcome differs.
    pub changed_records: usize,
    /// Messages only the new routes make.
    pub added: usize,
    /// Messages only the old routes make.
    pub removed: usize,
    /// Messages both make, differently.
    pub changed: usize,
}

/// Compares two [`dry_run`]s of the same records (old routes, new routes). Messages are
/// paired by topic and their order on it; a pair that differs lists each differing
/// field by its path (`value.data.email`), with its old and new value (absent: left out).
pub fn compare_runs(old: &[Value], new: &[Value]) -> Comparison {
    let mut comparison = Comparison::default();
    for (before, after) in old.iter().zip(new) {
        let (was, now) = (&before["outcome"], &after["outcome"]);
        let mut line = serde_json::Map::new();
        line.insert("record".to_owned(), after["record"].clone());
        if was == now {
            line.insert("change".to_owned(), json!("none"));
            comparison.lines.push(Value::Object(line));
            continue;
        }
        comparison.changed_records += 1;
        line.insert("change".to_owned(), json!("changed"));
        line.insert("before".to_owned(), summary(was));
        line.insert("after".to_owned(), summary(now));
        let (old_messages, new_messages) = (by_topic(was), by_topic(now));
        let mut added = Vec::new();
        let mut removed = Vec::new();
        let mut changed = Vec::new();
        for (slot, message) in &old_messages {
            match new_messages.get(slot) {
                None => removed.push(identity(message)),
                Some(other) => {
                    let mut fields = Vec::new();
                    diff(String::new(), Some(message), Some(other), &mut fields);
                    if !fields.is_empty() {
                        let mut entry = identity(other);
                        entry["fields"] = Value::Array(fields);
                        changed.push(entry);
                    }
                }
            }
        }
        for (slot, message) in &new_messages {
            if !old_messages.contains_key(slot) {
                added.push(identity(message));
            }
        }
        comparison.added += added.len();
        comparison.removed += removed.len();
        comparison.changed += changed.len();
        for (name, list) in [("added", added), ("removed", removed), ("changed", changed)] {
            if !list.is_empty() {
                line.insert(name.to_owned(), Value::Array(list));
            }
        }
        comparison.lines.push(Value::Object(line));
    }
    comparison
}

/// An outcome in a word or two: how many messages, or the skip reason, or the error.
fn summary(outcome: &Value) -> Value {
    match outcome.get("produces").and_then(Value::as_array) {
        Some(messages) => json!({"messages": messages.len()}),
        None => outcome.clone(),
    }
}

/// A record's messages keyed by (topic, how many came before on that topic).
fn by_topic(outcome: &Value) -> std::collections::BTreeMap<(String, usize), &Value> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    outcome
        .get("produces")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|message| {
            let topic = message["topic"].as_str().unwrap_or_default().to_owned();
            let n = seen.entry(topic.clone()).or_default();
            *n += 1;
            ((topic, *n - 1), message)
        })
        .collect()
}

fn identity(message: &Value) -> Value {
    json!({"topic": message["topic"], "key": message["key"]})
}

/// Appends `{path, before, after}` for every leaf where `a` and `b` differ.
fn diff(path: String, a: Option<&Value>, b: Option<&Value>, out: &mut Vec<Value>) {
    let at = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match (a, b) {
        (Some(x), Some(y)) if x == y => {}
        (Some(Value::Object(x)), Some(Value::Object(y))) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for key in keys {
                diff(at(key), x.get(key), y.get(key), out);
            }
        }
        (Some(Value::Array(x)), Some(Value::Array(y))) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                diff(at(&i.to_string()), Some(p), Some(q), out);
            }
        }
        _ => {
            let mut field = serde_json::Map::new();
            field.insert("path".to_owned(), json!(path));
            if let Some(x) = a {
                field.insert("before".to_owned(), x.clone());
            }
            if let Some(y) = b {
                field.insert("after".to_owned(), y.clone());
            }
            out.push(Value::Object(field));
        }
    }
}
