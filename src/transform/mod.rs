//! Routes: [`ChangeEvent`] -> downstream [`OutMessage`]s.
//!
//! A pure function of its inputs ([`Transformer::transform`]): no I/O, no clock, no
//! randomness, so the same source record always yields byte-identical messages, with
//! the same event ids, on every retry. The routes file format lives in [`routes`].
//!
//! What a data change becomes, in order: find the route (first match on
//! `schema.table`), drop operations the route does not emit, compute the key from the
//! source row, select the columns (include/exclude) and coerce them (`types`), work out
//! which changed (`changed`, `changed_only`), mask and rename them, wrap them in the
//! envelope, and emit one message per topic (plus a tombstone when the delete policy asks
//! for one). All names in a route are source column names. A control (DDL) record becomes
//! a schema-change event when `schema_changes_topic` is set.

pub mod coerce;
pub mod routes;

use std::borrow::Cow;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::dms::{Change, ChangeEvent, NumberOrString, Operation, Row};
use crate::error::{RecordError, Stage};
pub use coerce::Coercion;
pub use routes::{
    DeletePolicy, Envelope, Missing, OnPoison, Route, Routes, TopicTemplate, Unrouted,
};

/// The value masked columns carry downstream.
pub const MASK: &str = "***";

/// Separator between the values of a multi-column key.
pub const KEY_SEPARATOR: &str = "|";

/// Header names every downstream message carries.
pub mod header {
    /// Deterministic event id: UUID v5 of the source cluster, topic, partition, offset,
    /// record timestamp and message index (dead letters: of the same, marked as such).
    pub const EVENT_ID: &str = "relay-event-id";
    /// Source topic.
    pub const SOURCE_TOPIC: &str = "relay-source-topic";
    /// Source partition (decimal).
    pub const SOURCE_PARTITION: &str = "relay-source-partition";
    /// Source offset (decimal).
    pub const SOURCE_OFFSET: &str = "relay-source-offset";
    /// `load|insert|update|delete`.
    pub const OPERATION: &str = "relay-op";
    /// `schema.table`.
    pub const TABLE: &str = "relay-table";
    /// On dead letters: why the record is poison.
    pub const ERROR: &str = "relay-error";
    /// On dead letters: the stage that failed (`source`, `dms`, `transform`, `sink`).
    pub const ERROR_STAGE: &str = "relay-error-stage";
    /// On dead letters: the event source ARN (the MSK cluster), when Lambda sent one.
    pub const EVENT_SOURCE_ARN: &str = "relay-event-source-arn";
    /// On dead letters: `redacted` (the route's excluded columns removed and masked
    /// columns masked), `original` (the value exactly as it arrived), or `withheld` (no
    /// value: it is not a DMS record whose columns can be redacted; its size and
    /// SHA-256 are in the headers).
    pub const DEAD_LETTER_VALUE: &str = "relay-dead-letter-value";
    /// On dead letters cut to fit the broker's size limit: `true`.
    pub const TRUNCATED: &str = "relay-truncated";
    /// On cut or withheld dead letters: the size of the whole value, in bytes (decimal).
    pub const ORIGINAL_SIZE: &str = "relay-original-size";
    /// On cut or withheld dead letters: the SHA-256 of the whole value (lower-case hex).
    pub const ORIGINAL_SHA256: &str = "relay-original-sha256";
}

/// Namespace of event ids, so they never collide with other UUID v5 users.
const EVENT_ID_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6364_632d_7265_6c61_7900_0000_0000_0001);

/// The source coordinates of the record being transformed.
#[derive(Debug, Clone, Copy)]
pub struct SourcePosition<'a> {
    /// The source cluster: the event source ARN, else the event's bootstrap servers,
    /// else empty. Part of the event id, so two clusters never share ids.
    pub cluster: &'a str,
    /// The record's Kafka timestamp (epoch ms). Part of the event id, so a recreated
    /// topic, whose offsets start again, does not repeat the ids of the old one.
    pub timestamp_ms: i64,
    /// Source topic.
    pub topic: &'a str,
    /// Source partition.
    pub partition: i64,
    /// Source offset.
    pub offset: i64,
    /// The Kafka key DMS set (its partition key), used when a route names no key columns.
    pub kafka_key: Option<&'a [u8]>,
}

/// One message to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutMessage {
    /// Destination topic.
    pub topic: Arc<str>,
    /// Message key; equal keys go to the same partition, in order. Always set on
    /// routed events; `None` only on a dead letter whose source record had no key.
    pub key: Option<Vec<u8>>,
    /// JSON value; `None` for a tombstone.
    pub value: Option<Vec<u8>>,
    /// Headers, in a fixed order.
    pub headers: Vec<(Cow<'static, str>, Vec<u8>)>,
}

impl OutMessage {
    /// The value of a header, if present.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// Why a record produced nothing by configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// No route matched and `unrouted = "skip"`.
    Unrouted,
    /// The route does not emit this operation.
    Operation,
    /// A delete on a route with `delete = "drop"`.
    DeleteDropped,
    /// A DDL/control record (counted, not produced).
    Control,
    /// A Kafka tombstone on the source topic (DMS never writes one).
    SourceTombstone,
    /// An update that changed no mapped column, on a `changed_only` route.
    Unchanged,
    /// A poison record under `on_poison = "skip"`.
    Poison,
}

impl SkipReason {
    /// Stable name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Unrouted => "unrouted",
            SkipReason::Operation => "operation-filtered",
            SkipReason::DeleteDropped => "delete-dropped",
            SkipReason::Control => "control",
            SkipReason::SourceTombstone => "source-tombstone",
            SkipReason::Unchanged => "unchanged",
            SkipReason::Poison => "poison",
        }
    }
}

/// What a record becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transformed {
    /// Messages to produce (at least one).
    Messages(Vec<OutMessage>),
    /// Nothing, by configuration; counted.
    Skipped(SkipReason),
}

/// Applies the routes file.
#[derive(Debug, Clone)]
pub struct Transformer {
    routes: Routes,
}

/// The value `"schema-change"` of `op` and `relay-op` for DDL events.
pub const SCHEMA_CHANGE: &str = "schema-change";

impl Transformer {
    /// A transformer over validated routes.
    pub fn new(routes: Routes) -> Transformer {
        Transformer { routes }
    }

    /// The routes in use.
    pub fn routes(&self) -> &Routes {
        &self.routes
    }

    /// Transforms one decoded DMS record.
    pub fn transform(
        &self,
        pos: SourcePosition<'_>,
        event: &ChangeEvent,
    ) -> Result<Transformed, RecordError> {
        let qualified = format!("{}.{}", event.schema, event.table);
        match &event.change {
            Change::Data { op, data, before } => {
                self.data_change(pos, event, &qualified, *op, data, before.as_ref())
            }
            Change::Control { operation, control } => {
                self.schema_change(pos, event, &qualified, operation, control.as_ref())
            }
        }
    }

    fn data_change(
        &self,
        pos: SourcePosition<'_>,
        event: &ChangeEvent,
        qualified: &str,
        op: Operation,
        data: &Row,
        before: Option<&Row>,
    ) -> Result<Transformed, RecordError> {
        let Some(route) = self.routes.route_for(qualified) else {
            return match self.routes.unrouted {
                Unrouted::Dlq => Err(RecordError::permanent(
                    Stage::Transform,
                    format!("no route matches {qualified} and unrouted = \"dlq\""),
                )),
                _ => Ok(Transformed::Skipped(SkipReason::Unrouted)),
            };
        };
        if !route.operations.contains(&op) {
            return Ok(Transformed::Skipped(SkipReason::Operation));
        }
        let (emit_event, emit_tombstone) = match (op, route.delete) {
            (Operation::Delete, DeletePolicy::Drop) => {
                return Ok(Transformed::Skipped(SkipReason::DeleteDropped))
            }
            (Operation::Delete, DeletePolicy::Tombstone) => (false, true),
            (Operation::Delete, DeletePolicy::EventAndTombstone) => (true, true),
            _ => (true, false),
        };
        let key = entity_key(route, pos, qualified, data, before)?;
        let column_error = |column: &str, reason: &str| {
            RecordError::permanent(
                Stage::Transform,
                format!("{qualified} column {column:?}: {reason}"),
            )
        };
        let mut selected = select(route, data).map_err(|(c, r)| column_error(&c, &r))?;
        let selected_before = match before {
            Some(b) => Some(select(route, b).map_err(|(c, r)| column_error(&c, &r))?),
            None => None,
        };
        let changed = match (&selected_before, op) {
            (Some(old), Operation::Update) => Some(changed_columns(&selected, old)),
            _ => None,
        };
        if route.changed_only && changed.as_ref().is_some_and(Vec::is_empty) {
            return Ok(Transformed::Skipped(SkipReason::Unchanged));
        }
        if route.missing == Missing::Null {
            if let Some(include) = &route.include {
                let mut absent: Vec<&String> = include
                    .iter()
                    .filter(|c| !selected.contains_key(*c))
                    .collect();
                absent.sort();
                selected.extend(absent.into_iter().map(|c| (c.clone(), Value::Null)));
            }
        }
        let mapped_data = finish(route, selected);
        let mapped_before = selected_before.map(|b| finish(route, b));
        let changed: Option<Vec<String>> = changed.map(|cols| {
            cols.into_iter()
                .map(|c| route.rename.get(&c).cloned().unwrap_or(c))
                .collect()
        });

        let per_topic = usize::from(emit_event) + usize::from(emit_tombstone);
        let mut messages = Vec::with_capacity(route.topics.len() * per_topic);
        for template in &route.topics {
            let topic = template.render(&event.schema, &event.table);
            if emit_event {
                let id = event_id(pos, messages.len());
                let value = match self.routes.envelope {
                    Envelope::Relay => serialize(&RelayEnvelope {
                        id: &id,
                        op: op.as_str(),
                        source: SourceInfo::new(pos, event),
                        key: key.object.as_ref(),
                        data: &mapped_data,
                        before: mapped_before.as_ref(),
                        changed: changed.as_deref(),
                    }),
                    Envelope::Flat => serialize(&FlatEnvelope {
                        row: &mapped_data,
                        op: op.as_str(),
                        table: qualified,
                        source_ts: event
                            .metadata
                            .commit_timestamp
                            .as_deref()
                            .or(event.metadata.timestamp.as_deref()),
                    }),
                }?;
                messages.push(message(
                    topic.clone(),
                    &key.bytes,
                    Some(value),
                    &id,
                    pos,
                    op.as_str(),
                    qualified,
                ));
            }
            if emit_tombstone {
                let id = event_id(pos, messages.len());
                messages.push(message(
                    topic,
                    &key.bytes,
                    None,
                    &id,
                    pos,
                    op.as_str(),
                    qualified,
                ));
            }
        }
        Ok(Transformed::Messages(messages))
    }

    fn schema_change(
        &self,
        pos: SourcePosition<'_>,
        event: &ChangeEvent,
        qualified: &str,
        operation: &str,
        control: Option<&Value>,
    ) -> Result<Transformed, RecordError> {
        let Some(template) = &self.routes.schema_changes_topic else {
            return Ok(Transformed::Skipped(SkipReason::Control));
        };
        let table_def = control.and_then(|c| c.get("table-def"));
        let id = event_id(pos, 0);
        let value = serialize(&SchemaChangeEvent {
            id: &id,
            op: SCHEMA_CHANGE,
            operation,
            schema: &event.schema,
            table: &event.table,
            columns: table_def.and_then(|d| d.get("columns")),
            primary_key: table_def.and_then(|d| d.get("primary-key")),
            source: SourceInfo::new(pos, event),
        })?;
        let topic = template.render(&event.schema, &event.table);
        Ok(Transformed::Messages(vec![message(
            topic,
            qualified.as_bytes(),
            Some(value),
            &id,
            pos,
            operation,
            qualified,
        )]))
    }
}

fn serialize<T: Serialize>(value: &T) -> Result<Vec<u8>, RecordError> {
    serde_json::to_vec(value).map_err(|e| {
        RecordError::permanent(Stage::Transform, format!("cannot serialise event: {e}"))
    })
}

/// Deterministic id of the `index`-th message made from a source record: the same on
/// every retry of the record, different for any other record of any cluster.
pub fn event_id(pos: SourcePosition<'_>, index: usize) -> String {
    id_of(pos, &index.to_string())
}

/// Deterministic id of the dead letter of a source record.
pub fn dead_letter_id(pos: SourcePosition<'_>) -> String {
    id_of(pos, "dead-letter")
}

fn id_of(pos: SourcePosition<'_>, what: &str) -> String {
    let name = format!(
        "{}\u{0}{}\u{0}{}\u{0}{}\u{0}{}\u{0}{}",
        pos.cluster, pos.topic, pos.partition, pos.offset, pos.timestamp_ms, what
    );
    uuid::Uuid::new_v5(&EVENT_ID_NAMESPACE, name.as_bytes()).to_string()
}

fn message(
    topic: Arc<str>,
    key: &[u8],
    value: Option<Vec<u8>>,
    id: &str,
    pos: SourcePosition<'_>,
    op: &str,
    qualified: &str,
) -> OutMessage {
    OutMessage {
        topic,
        key: Some(key.to_vec()),
        value,
        headers: vec![
            (header::EVENT_ID.into(), id.as_bytes().to_vec()),
            (header::SOURCE_TOPIC.into(), pos.topic.as_bytes().to_vec()),
            (
                header::SOURCE_PARTITION.into(),
                pos.partition.to_string().into_bytes(),
            ),
            (
                header::SOURCE_OFFSET.into(),
                pos.offset.to_string().into_bytes(),
            ),
            (header::OPERATION.into(), op.as_bytes().to_vec()),
            (header::TABLE.into(), qualified.as_bytes().to_vec()),
        ],
    }
}

/// The downstream key: the route's key columns (looked up in the row, then in the
/// before-image), joined by [`KEY_SEPARATOR`]; else DMS's Kafka key; else `schema.table`.
fn entity_key(
    route: &Route,
    pos: SourcePosition<'_>,
    qualified: &str,
    data: &Row,
    before: Option<&Row>,
) -> Result<EntityKey, RecordError> {
    let Some(columns) = &route.key else {
        let bytes = pos
            .kafka_key
            .map_or_else(|| qualified.as_bytes().to_vec(), <[u8]>::to_vec);
        return Ok(EntityKey {
            bytes,
            object: None,
        });
    };
    let mut bytes = Vec::new();
    let mut object = Map::new();
    for (i, column) in columns.iter().enumerate() {
        let value = data
            .get(column)
            .filter(|v| !v.is_null())
            .or_else(|| before.and_then(|b| b.get(column)).filter(|v| !v.is_null()))
            .ok_or_else(|| {
                RecordError::permanent(
                    Stage::Transform,
                    format!(
                        "key column {column:?} is missing or null in {qualified} (route {:?})",
                        route.table
                    ),
                )
            })?;
        if i > 0 {
            bytes.extend_from_slice(KEY_SEPARATOR.as_bytes());
        }
        match value {
            Value::String(s) => bytes.extend_from_slice(s.as_bytes()),
            other => bytes.extend_from_slice(other.to_string().as_bytes()),
        }
        let name = route.rename.get(column).unwrap_or(column);
        object.insert(name.clone(), value.clone());
    }
    Ok(EntityKey {
        bytes,
        object: Some(object),
    })
}

/// The downstream key of a change.
struct EntityKey {
    /// The Kafka message key.
    bytes: Vec<u8>,
    /// The envelope's `key` object, for column keys.
    object: Option<Map<String, Value>>,
}

/// Include/exclude, then coercion: the surviving columns under their source names.
/// A failed coercion names the column and the reason, never the value.
fn select(route: &Route, row: &Row) -> Result<Row, (String, String)> {
    let mut out = Map::new();
    for (column, value) in row {
        if route
            .include
            .as_ref()
            .is_some_and(|inc| !inc.contains(column))
            || route.exclude.contains(column)
        {
            continue;
        }
        let value = match route.types.get(column) {
            Some(coercion) => coercion.apply(value).map_err(|reason| {
                (
                    column.clone(),
                    format!("does not coerce to {}: {reason}", coercion.as_str()),
                )
            })?,
            None => value.clone(),
        };
        out.insert(column.clone(), value);
    }
    Ok(out)
}

/// Columns (source names, sorted) whose value differs between the selected row and
/// before-image. A column the before-image lacks counts as changed: PostgreSQL sends only
/// key columns unless REPLICA IDENTITY FULL, and guessing "unchanged" would drop updates.
fn changed_columns(data: &Row, before: &Row) -> Vec<String> {
    let mut changed: Vec<String> = data
        .iter()
        .filter(|(column, value)| before.get(*column) != Some(value))
        .map(|(column, _)| column)
        .chain(before.keys().filter(|column| !data.contains_key(*column)))
        .cloned()
        .collect();
    changed.sort();
    changed.dedup();
    changed
}

/// Mask, then rename.
fn finish(route: &Route, selected: Row) -> Row {
    let mut out = Map::new();
    for (column, value) in selected {
        let value = if route.mask.contains(&column) && !value.is_null() {
            Value::String(MASK.to_owned())
        } else {
            value
        };
        let name = route.rename.get(&column).cloned().unwrap_or(column);
        out.insert(name, value);
    }
    out
}

/// The downstream event (`envelope = "relay"`).
#[derive(Serialize)]
struct RelayEnvelope<'a> {
    id: &'a str,
    op: &'a str,
    source: SourceInfo<'a>,
    key: Option<&'a Map<String, Value>>,
    data: &'a Row,
    before: Option<&'a Row>,
    #[serde(skip_serializing_if = "Option::is_none")]
    changed: Option<&'a [String]>,
}

/// The downstream event (`envelope = "flat"`): the row plus three fields.
#[derive(Serialize)]
struct FlatEnvelope<'a> {
    #[serde(flatten)]
    row: &'a Row,
    #[serde(rename = "__op")]
    op: &'a str,
    #[serde(rename = "__table")]
    table: &'a str,
    #[serde(rename = "__source_ts")]
    source_ts: Option<&'a str>,
}

/// A DDL/control record, as a schema-change event.
#[derive(Serialize)]
struct SchemaChangeEvent<'a> {
    id: &'a str,
    op: &'a str,
    operation: &'a str,
    schema: &'a str,
    table: &'a str,
    columns: Option<&'a Value>,
    primary_key: Option<&'a Value>,
    source: SourceInfo<'a>,
}

#[derive(Serialize)]
struct SourceInfo<'a> {
    schema: &'a str,
    table: &'a str,
    topic: &'a str,
    partition: i64,
    offset: i64,
    transaction_id: Option<&'a NumberOrString>,
    commit_timestamp: Option<&'a str>,
    timestamp: Option<&'a str>,
}

impl<'a> SourceInfo<'a> {
    fn new(pos: SourcePosition<'a>, event: &'a ChangeEvent) -> SourceInfo<'a> {
        SourceInfo {
            schema: &event.schema,
            table: &event.table,
            topic: pos.topic,
            partition: pos.partition,
            offset: pos.offset,
            transaction_id: event.metadata.transaction_id.as_ref(),
            commit_timestamp: event.metadata.commit_timestamp.as_deref(),
            timestamp: event.metadata.timestamp.as_deref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dms::Decoder;

    const ROUTES: &str = r#"
[defaults]
topic = "cdc.{schema}.{table}"
[[route]]
table = "public.orders"
topics = ["orders.changes", "orders.cache"]
key = ["user_id"]
exclude = ["note"]
mask = ["email"]
rename = { amount = "total" }
delete = "event+tombstone"
[[route]]
table = "public.audit"
topic = "audit"
operations = ["insert"]
"#;

    fn transformer() -> Transformer {
        Transformer::new(Routes::parse(ROUTES, "test").expect("valid routes"))
    }

    fn pos(offset: i64) -> SourcePosition<'static> {
        SourcePosition {
            cluster: "arn:aws:kafka:eu-west-1:111122223333:cluster/cdc/abcd-1234-5",
            timestamp_ms: 1_732_200_000_000,
            topic: "dms",
            partition: 0,
            offset,
            kafka_key: Some(b"public.orders"),
        }
    }

    fn change(table: &str, op: &str, data: &str) -> ChangeEvent {
        let doc = format!(
            r#"{{"data":{data},"metadata":{{"timestamp":"2024-01-01T00:00:00Z","record-type":"data","operation":"{op}","schema-name":"public","table-name":"{table}","transaction-id":9}}}}"#
        );
        Decoder::default()
            .decode(doc.as_bytes())
            .expect("valid DMS record")
    }

    fn messages(t: Transformed) -> Vec<OutMessage> {
        match t {
            Transformed::Messages(m) => m,
            other => panic!("expected messages, got {other:?}"),
        }
    }

    /// A routed insert fans out, keyed by the key column, mapped, with headers.
    #[test]
    fn routed_insert_is_mapped_and_fanned_out() {
        let ev = change(
            "orders",
            "insert",
            r#"{"id":1,"user_id":7,"email":"a@b","note":"x","amount":"9.50"}"#,
        );
        let out = messages(transformer().transform(pos(5), &ev).expect("ok"));
        assert_eq!(out.len(), 2);
        assert_eq!(
            (&*out[0].topic, &*out[1].topic),
            ("orders.changes", "orders.cache")
        );
        assert_eq!(out[0].key.as_deref(), Some(&b"7"[..]));
        let value: Value =
            serde_json::from_slice(out[0].value.as_deref().expect("value")).expect("json");
        assert_eq!(
            value["data"],
            serde_json::json!({"id":1,"user_id":7,"email":"***","total":"9.50"})
        );
        assert_eq!(value["key"], serde_json::json!({"user_id":7}));
        assert_eq!(value["op"], "insert");
        assert_eq!(value["source"]["offset"], 5);
        assert_eq!(value["source"]["transaction_id"], 9);
        assert_eq!(value["before"], Value::Null);
        assert_eq!(out[0].header(header::TABLE), Some(&b"public.orders"[..]));
        assert_eq!(out[0].header(header::SOURCE_OFFSET), Some(&b"5"[..]));
        assert_ne!(
            out[0].header(header::EVENT_ID),
            out[1].header(header::EVENT_ID)
        );
        assert_eq!(
            value["id"].as_str().map(str::as_bytes),
            out[0].header(header::EVENT_ID)
        );
    }

    /// The same input always yields the same messages and ids.
    #[test]
    fn deterministic() {
        let ev = change("orders", "update", r#"{"id":1,"user_id":7}"#);
        let t = transformer();
        assert_eq!(
            t.transform(pos(3), &ev).expect("ok"),
            t.transform(pos(3), &ev).expect("ok")
        );
        assert_ne!(
            t.transform(pos(3), &ev).expect("ok"),
            t.transform(pos(4), &ev).expect("ok")
        );
    }

    /// Event ids cover the source cluster and the record's timestamp: the same offset of
    /// the same topic in another cluster, or in a recreated topic, gets another id.
    #[test]
    fn event_ids_cover_cluster_and_timestamp() {
        let ev = change("orders", "insert", r#"{"id":1,"user_id":7}"#);
        let t = transformer();
        let id = |pos: SourcePosition<'_>| {
            messages(t.transform(pos, &ev).expect("ok"))[0]
                .header(header::EVENT_ID)
                .map(<[u8]>::to_vec)
        };
        let base = id(pos(3));
        assert_eq!(base, id(pos(3)), "retries keep the id");
        let other_cluster = SourcePosition {
            cluster: "arn:aws:kafka:us-east-1:444455556666:cluster/cdc/ffff-0000-1",
            ..pos(3)
        };
        assert_ne!(base, id(other_cluster));
        let recreated = SourcePosition {
            timestamp_ms: 1_800_000_000_000,
            ..pos(3)
        };
        assert_ne!(base, id(recreated));
        assert_ne!(
            dead_letter_id(pos(3)).into_bytes(),
            base.unwrap_or_default(),
            "a dead letter's id differs from its record's messages"
        );
    }

    /// Delete policy `event+tombstone` emits the event, then a null-valued tombstone.
    #[test]
    fn delete_event_and_tombstone() {
        let ev = change("orders", "delete", r#"{"id":1,"user_id":7}"#);
        let out = messages(transformer().transform(pos(1), &ev).expect("ok"));
        assert_eq!(out.len(), 4);
        assert!(out[0].value.is_some() && out[1].value.is_none());
        assert_eq!(out[1].key.as_deref(), Some(&b"7"[..]));
    }

    /// A missing key column is a permanent transform error naming the column.
    #[test]
    fn missing_key_column_is_an_error() {
        let ev = change("orders", "insert", r#"{"id":1}"#);
        let err = transformer().transform(pos(1), &ev).expect_err("must fail");
        assert_eq!(err.stage, Stage::Transform);
        assert!(err.message.contains("user_id"));
    }

    /// Unmatched tables use the default topic and DMS's key; filtered operations skip.
    #[test]
    fn default_route_and_operation_filter() {
        let ev = change("users", "insert", r#"{"id":1}"#);
        let out = messages(transformer().transform(pos(1), &ev).expect("ok"));
        assert_eq!(&*out[0].topic, "cdc.public.users");
        assert_eq!(out[0].key.as_deref(), Some(&b"public.orders"[..]));
        let ev = change("audit", "update", r#"{"id":1}"#);
        assert_eq!(
            transformer().transform(pos(1), &ev).expect("ok"),
            Transformed::Skipped(SkipReason::Operation)
        );
    }
}
