//! Routes: [`ChangeEvent`] -> downstream [`OutMessage`]s.
//!
//! A pure function of its inputs ([`Transformer::transform`]): no I/O, no clock, no
//! randomness, so the same source record always yields byte-identical messages, with
//! the same event ids, on every retry. The routes file format lives in [`routes`].
//!
//! What a data change becomes, in order: skip DMS's own `awsdms_*` tables, find the
//! route (first match on `schema.table`), drop operations the route does not emit and
//! changes its `filter` does not match ([`filter`]), compute the key from the source row,
//! select the columns (include/exclude) and coerce them (`types`), work out which changed
//! and which cannot be known (`changed`, `unknown`, `changed_only`), truncate, hash and
//! mask them ([`personal`]), rename them, wrap them in the envelope, and emit one message
//! per topic (plus a tombstone when the delete policy asks for one). All names in a route
//! are source column names, compared regardless of ASCII case on an `ignore_case` route.
//! A control (DDL) record becomes a schema-change event when `schema_changes_topic` is
//! set. [`schema`] publishes what the events of each topic look like.
//!
//! Values stay the raw JSON text the decoder borrowed: a column no coercion or mask
//! touches leaves byte for byte as DMS wrote it. Only coerced columns are parsed, and
//! only values that differ as text are parsed to compare them. The envelope is
//! serialised once per record; each further topic gets a copy with its own id.

mod cloudevents;
pub mod coerce;
pub(crate) mod debezium;
pub mod filter;
mod outbox;
pub mod personal;
pub mod routes;
pub mod schema;
mod shape;
pub mod tabledef;
mod write;

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use sha1::{Digest, Sha1};

use crate::dms::{Change, ChangeEvent, Metadata, Operation, Row};
use crate::error::{RecordError, Stage};
use crate::source::SourcePosition;
pub use coerce::Coercion;
use coerce::Kind;
pub use personal::HashKey;
use routes::ColumnPlan;
pub use routes::{
    ContentMode, DeletePolicy, DmsTables, Envelope, Missing, OnPoison, OnUpdate, Outbox,
    OutboxField, Placement, Route, Routes, TopicTemplate, Unrouted,
};

/// The value masked columns carry downstream.
pub const MASK: &str = "***";

/// Separator between the values of a multi-column key. In such a key, a `|` or `\`
/// inside a value is escaped with a `\`, so two entities never share a key
/// (`a|b` + `c` against `a` + `b|c`).
pub const KEY_SEPARATOR: &str = "|";

/// Appends one value of a key: escaped when the key has more than one column (see
/// [`KEY_SEPARATOR`]); a value holding neither character is appended as it is.
fn push_key_part(bytes: &mut Vec<u8>, part: &[u8], composite: bool) {
    if !composite || !part.iter().any(|b| matches!(b, b'|' | b'\\')) {
        bytes.extend_from_slice(part);
        return;
    }
    for &b in part {
        if matches!(b, b'|' | b'\\') {
            bytes.push(b'\\');
        }
        bytes.push(b);
    }
}

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
    /// With DMS's `IncludeTransactionDetails`: the source transaction id (a number as
    /// written, a string's content).
    pub const TRANSACTION_ID: &str = "relay-transaction-id";
    /// With DMS's `IncludeTransactionDetails`: the record's position in its transaction.
    pub const TRANSACTION_RECORD_ID: &str = "relay-transaction-record-id";
    /// With `IncludeTransactionDetails`: the previous transaction's id.
    pub const PREV_TRANSACTION_ID: &str = "relay-prev-transaction-id";
    /// With `IncludeTransactionDetails`: the commit time at the source.
    pub const COMMIT_TIMESTAMP: &str = "relay-commit-timestamp";
    /// With `IncludeTransactionDetails`: the source log position.
    pub const STREAM_POSITION: &str = "relay-stream-position";
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
    /// On dead letters whose value was redacted or withheld: `withheld` when the
    /// record's key is replaced by its pseudonym under the hash key, else by the dead
    /// letter's id (DMS's partition key may hold the columns the route takes out).
    pub const DEAD_LETTER_KEY: &str = "relay-dead-letter-key";
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
    pub headers: MessageHeaders,
}

impl OutMessage {
    /// The value of a header, if present.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.get(name)
    }
}

/// A message's headers in order: their names, and their values' bytes kept end to end
/// in one buffer, so a message's headers take two allocations however many it has.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct MessageHeaders {
    /// Each header's name and the range of its value in `bytes`.
    entries: Vec<(Cow<'static, str>, std::ops::Range<usize>)>,
    bytes: Vec<u8>,
}

impl MessageHeaders {
    /// Room for `headers` headers whose values take `bytes` bytes in all.
    pub fn with_capacity(headers: usize, bytes: usize) -> MessageHeaders {
        MessageHeaders {
            entries: Vec::with_capacity(headers),
            bytes: Vec::with_capacity(bytes),
        }
    }

    /// Appends a header.
    pub fn push(&mut self, name: impl Into<Cow<'static, str>>, value: &[u8]) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(value);
        self.entries.push((name.into(), start..self.bytes.len()));
    }

    /// The headers in order, as names and values.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &[u8])> + '_ {
        self.entries.iter().map(|(name, range)| {
            (
                name.as_ref(),
                self.bytes.get(range.clone()).unwrap_or_default(),
            )
        })
    }

    /// The value of the first header named `name`, if any.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// How many headers there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl fmt::Debug for MessageHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<N: Into<Cow<'static, str>>, V: AsRef<[u8]>> Extend<(N, V)> for MessageHeaders {
    fn extend<I: IntoIterator<Item = (N, V)>>(&mut self, headers: I) {
        for (name, value) in headers {
            self.push(name, value.as_ref());
        }
    }
}

impl<N: Into<Cow<'static, str>>, V: AsRef<[u8]>> FromIterator<(N, V)> for MessageHeaders {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(headers: I) -> MessageHeaders {
        let mut out = MessageHeaders::default();
        out.extend(headers);
        out
    }
}

/// The longest `schema.table` written on the stack (longer ones are allocated).
const QUALIFIED_ON_STACK: usize = 128;

/// `schema.table` written into `room`, if it fits.
fn qualify<'r>(room: &'r mut [u8], schema: &str, table: &str) -> Option<&'r str> {
    let length = schema.len() + 1 + table.len();
    let out = room.get_mut(..length)?;
    let (head, tail) = out.split_at_mut(schema.len());
    head.copy_from_slice(schema.as_bytes());
    let (dot, rest) = tail.split_first_mut()?;
    *dot = b'.';
    rest.copy_from_slice(table.as_bytes());
    // Two texts and a dot: always UTF-8.
    std::str::from_utf8(out).ok()
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
    /// A change the route's `filter` does not match.
    Filter,
    /// A change of one of DMS's own tables (`awsdms_*`), under `dms_tables = "skip"`.
    DmsTable,
    /// An update of an outbox table, under `on_update = "warn"`.
    OutboxUpdate,
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
            SkipReason::Filter => "filter",
            SkipReason::DmsTable => "dms-table",
            SkipReason::OutboxUpdate => "outbox-update",
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

/// Where the id sits in a relay envelope: `{"id":"` is 7 bytes, a UUID 36.
const ENVELOPE_ID: std::ops::Range<usize> = 7..43;

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
        event: &ChangeEvent<'_>,
    ) -> Result<Transformed, RecordError> {
        // `schema.table`, on the stack unless it is long.
        let mut room = [0u8; QUALIFIED_ON_STACK];
        let long;
        let qualified = match qualify(&mut room, &event.schema, &event.table) {
            Some(qualified) => qualified,
            None => {
                long = format!("{}.{}", event.schema, event.table);
                long.as_str()
            }
        };
        // DMS's own tables are skipped unless a route names one exactly.
        if self.routes.dms_tables == DmsTables::Skip
            && is_dms_table(&event.table)
            && !self.routes.names_exactly(qualified)
        {
            return Ok(Transformed::Skipped(SkipReason::DmsTable));
        }
        match &event.change {
            Change::Data { op, data, before } => {
                self.data_change(pos, event, qualified, *op, data, before.as_ref())
            }
            Change::Control { operation, control } => {
                self.schema_change(pos, event, qualified, operation, *control)
            }
        }
    }

    fn data_change(
        &self,
        pos: SourcePosition<'_>,
        event: &ChangeEvent<'_>,
        qualified: &str,
        op: Operation,
        data: &Row<'_>,
        before: Option<&Row<'_>>,
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
        if let Some(filter) = &route.filter {
            let fields = ChangeFields {
                route,
                op,
                data,
                before,
                metadata: &event.metadata,
            };
            if !filter.matches(&fields) {
                return Ok(Transformed::Skipped(SkipReason::Filter));
            }
        }
        if let Some(outbox) = &route.outbox {
            let headers = Headers::new(pos, op.as_str(), qualified, &event.metadata);
            return outbox::messages(route, outbox, event, qualified, op, data, &headers);
        }
        let (emit_event, emit_tombstone) = match (op, route.delete) {
            (Operation::Delete, DeletePolicy::Drop) => {
                return Ok(Transformed::Skipped(SkipReason::DeleteDropped))
            }
            (Operation::Delete, DeletePolicy::Tombstone) => (false, true),
            (Operation::Delete, DeletePolicy::EventAndTombstone) => (true, true),
            _ => (true, false),
        };
        let hash_key = self.routes.hash_key();
        let key = entity_key(route, hash_key, pos, qualified, data, before)?;
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
        let changes = match (&selected_before, op) {
            (Some(old), Operation::Update) => Some(changed_columns(&selected, old)),
            _ => None,
        };
        if route.changed_only && changes.as_ref().is_some_and(Changes::is_empty) {
            return Ok(Transformed::Skipped(SkipReason::Unchanged));
        }
        if route.missing == Missing::Null {
            if let Some(include) = &route.include {
                let mut absent: Vec<&str> = include
                    .iter()
                    .map(String::as_str)
                    .filter(|c| {
                        if route.ignore_case {
                            !selected.iter().any(|s| route.same_column(c, s.source))
                        } else {
                            selected.binary_search_by(|s| s.source.cmp(c)).is_err()
                        }
                    })
                    .collect();
                absent.sort_unstable();
                for column in absent {
                    let name = route.output_name(column);
                    selected.push(Cell {
                        source: column,
                        name,
                        plan: route.plan(column),
                        value: Json::Raw(null()),
                    });
                }
            }
        }
        let mapped_data = finish(hash_key, selected)?;
        let mapped_before = match selected_before {
            Some(b) => Some(finish(hash_key, b)?),
            None => None,
        };
        fn output_names<'r>(route: &'r Route, cols: Vec<&'r str>) -> Vec<&'r str> {
            if route.rename.is_empty() && !route.ignore_case {
                return cols; // sorted already
            }
            let mut names: Vec<&str> = cols.into_iter().map(|c| route.output_name(c)).collect();
            names.sort_unstable();
            names
        }
        let (changed, unknown) = match changes {
            Some(c) => (
                Some(output_names(route, c.changed)),
                Some(output_names(route, c.unknown)),
            ),
            None => (None, None),
        };

        let debezium_key;
        let key_bytes: &[u8] = if self.routes.envelope == Envelope::Debezium {
            debezium_key = debezium::key(
                route,
                self.routes.connect_schemas,
                event,
                qualified,
                &key.bytes,
                key.object.as_deref(),
            )?;
            &debezium_key
        } else {
            &key.bytes
        };
        let per_topic = usize::from(emit_event) + usize::from(emit_tombstone);
        let mut messages = Vec::with_capacity(route.topics.len() * per_topic);
        let headers = Headers::new(pos, op.as_str(), qualified, &event.metadata);
        // Serialised once: further topics copy it and, in the relay envelope, patch the id.
        let mut first_value: Option<usize> = None;
        let ids = EventIds::new(pos);
        for template in &route.topics {
            let topic = template.render(&event.schema, &event.table);
            if emit_event {
                let id = ids.id(messages.len());
                // A CloudEvent names its id twice (attribute, data): made for each topic.
                let copyable =
                    first_value.filter(|_| self.routes.envelope != Envelope::CloudEvents);
                let bytes = match copyable.and_then(|i| messages.get(i)) {
                    Some(OutMessage {
                        value: Some(first), ..
                    }) => {
                        let mut copy = first.clone();
                        if self.routes.envelope == Envelope::Relay {
                            copy[ENVELOPE_ID].copy_from_slice(id.as_bytes());
                        }
                        copy
                    }
                    _ => {
                        first_value = Some(messages.len());
                        match self.routes.envelope {
                            Envelope::Relay | Envelope::CloudEvents => Ok(RelayEnvelope {
                                id: id.as_str(),
                                op: op.as_str(),
                                source: SourceInfo::new(pos, event),
                                key: key.object.as_deref(),
                                data: &mapped_data,
                                before: mapped_before.as_deref(),
                                changed: changed.as_deref(),
                                unknown: unknown.as_deref(),
                            }
                            .write()),
                            Envelope::Flat => FlatEnvelope {
                                row: &mapped_data,
                                op: op.as_str(),
                                table: qualified,
                                source_ts: event
                                    .metadata
                                    .commit_timestamp
                                    .as_deref()
                                    .or(event.metadata.timestamp.as_deref()),
                            }
                            .write(),
                            Envelope::Debezium => debezium::Event {
                                route,
                                schemas: self.routes.connect_schemas,
                                pos,
                                event,
                                op,
                                data: &mapped_data,
                                before: mapped_before.as_deref(),
                            }
                            .value(qualified),
                        }?
                    }
                };
                let message = match self.routes.envelope {
                    Envelope::CloudEvents => {
                        let attributes = cloudevents::Attributes::new(
                            pos,
                            event,
                            op,
                            key_bytes,
                            route.key.is_some(),
                            id.as_str(),
                        );
                        match self.routes.content_mode {
                            ContentMode::Structured => {
                                let value = attributes.structured(&bytes)?;
                                let mut message =
                                    headers.message(topic.clone(), key_bytes, Some(value), &id);
                                message
                                    .headers
                                    .push("content-type", cloudevents::STRUCTURED.as_bytes());
                                message
                            }
                            ContentMode::Binary => {
                                let mut message =
                                    headers.message(topic.clone(), key_bytes, Some(bytes), &id);
                                message.headers.extend(attributes.headers());
                                message
                            }
                        }
                    }
                    _ => headers.message(topic.clone(), key_bytes, Some(bytes), &id),
                };
                messages.push(message);
            }
            if emit_tombstone {
                let id = ids.id(messages.len());
                messages.push(headers.message(topic, key_bytes, None, &id));
            }
        }
        spare_cells(Some(mapped_data));
        spare_cells(mapped_before);
        spare_cells(key.object);
        give_back_key(key.bytes);
        Ok(Transformed::Messages(messages))
    }

    fn schema_change(
        &self,
        pos: SourcePosition<'_>,
        event: &ChangeEvent<'_>,
        qualified: &str,
        operation: &str,
        control: Option<&RawValue>,
    ) -> Result<Transformed, RecordError> {
        let Some(template) = &self.routes.schema_changes_topic else {
            return Ok(Transformed::Skipped(SkipReason::Control));
        };
        // The table definition's columns and primary key as DMS wrote them (its column
        // order, a default's every digit); left out when they cannot be read.
        let table_def = control
            .and_then(|c| serde_json::from_str::<ControlDetails<'_>>(c.get()).ok())
            .and_then(|c| c.table_def)
            .and_then(|d| serde_json::from_str::<TableDef<'_>>(d.get()).ok());
        fn readable(value: Option<&RawValue>) -> Option<&RawValue> {
            value.filter(|v| crate::json::check_unicode_escapes(v.get()).is_ok())
        }
        let id = EventIds::new(pos).id(0);
        let value = serialize(&SchemaChangeEvent {
            id: id.as_str(),
            op: SCHEMA_CHANGE,
            operation,
            schema: &event.schema,
            table: &event.table,
            columns: readable(table_def.as_ref().and_then(|d| d.columns)),
            primary_key: readable(table_def.as_ref().and_then(|d| d.primary_key)),
            source: SourceInfo::new(pos, event),
        })?;
        let topic = template.render(&event.schema, &event.table);
        let headers = Headers::new(pos, operation, qualified, &event.metadata);
        Ok(Transformed::Messages(vec![headers.message(
            topic,
            qualified.as_bytes(),
            Some(value),
            &id,
        )]))
    }
}

fn serialize<T: Serialize>(value: &T) -> Result<Vec<u8>, RecordError> {
    let mut out = Vec::with_capacity(512);
    serde_json::to_writer(&mut out, value).map_err(|e| {
        RecordError::permanent(Stage::Transform, format!("cannot serialise event: {e}"))
    })?;
    Ok(out)
}

/// Deterministic id of the `index`-th message made from a source record: the same on
/// every retry of the record, different for any other record of any cluster.
pub fn event_id(pos: SourcePosition<'_>, index: usize) -> String {
    EventIds::new(pos).id(index).as_str().to_owned()
}

/// Deterministic id of the dead letter of a source record.
pub fn dead_letter_id(pos: SourcePosition<'_>) -> String {
    EventIds::new(pos).named(b"dead-letter").as_str().to_owned()
}

/// The ids of the messages made from one record: UUID v5 (SHA-1) of the source cluster,
/// topic, partition, offset and timestamp, NUL-separated, then what the message is (its
/// index, or `dead-letter`). The common prefix is hashed once per record, and the part
/// every record of a partition shares (namespace, cluster, topic, partition: a full
/// SHA-1 block and more with an MSK cluster's ARN) once per partition and thread.
struct EventIds {
    prefix: Sha1,
}

/// A partition's shared prefix: cluster, topic, partition and the SHA-1 state after
/// hashing them behind the namespace.
type PartitionPrefix = (String, String, i64, Sha1);

thread_local! {
    /// The last partition's prefix on this thread: a batch's records come partition by
    /// partition, so one entry serves nearly every record.
    static PARTITION_PREFIX: std::cell::RefCell<Option<PartitionPrefix>> =
        const { std::cell::RefCell::new(None) };
}

/// A formatted id on the stack: 36 ASCII bytes.
pub struct EventId([u8; 36]);

impl EventId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits and hyphens are ever written here.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl EventIds {
    fn new(pos: SourcePosition<'_>) -> EventIds {
        let mut number = itoa::Buffer::new();
        let shared = |number: &mut itoa::Buffer| {
            let mut prefix = Sha1::new();
            prefix.update(EVENT_ID_NAMESPACE.as_bytes());
            prefix.update(pos.cluster.as_bytes());
            prefix.update(b"\0");
            prefix.update(pos.topic.as_bytes());
            prefix.update(b"\0");
            prefix.update(number.format(pos.partition).as_bytes());
            prefix.update(b"\0");
            prefix
        };
        let mut prefix = PARTITION_PREFIX
            .try_with(|last| {
                let mut last = last.borrow_mut();
                match &mut *last {
                    Some((cluster, topic, partition, state))
                        if *partition == pos.partition
                            && cluster == pos.cluster
                            && topic == pos.topic =>
                    {
                        state.clone()
                    }
                    // Another partition: the entry's strings are reused.
                    Some((cluster, topic, partition, state)) => {
                        // The new state first: the entry never pairs a new key with
                        // an old state, even should hashing panic.
                        let fresh = shared(&mut number);
                        cluster.clear();
                        cluster.push_str(pos.cluster);
                        topic.clear();
                        topic.push_str(pos.topic);
                        *partition = pos.partition;
                        *state = fresh;
                        state.clone()
                    }
                    None => {
                        let state = shared(&mut number);
                        *last = Some((
                            pos.cluster.to_owned(),
                            pos.topic.to_owned(),
                            pos.partition,
                            state.clone(),
                        ));
                        state
                    }
                }
            })
            // A thread being torn down has no cache: hash it all.
            .unwrap_or_else(|_| shared(&mut number));
        prefix.update(number.format(pos.offset).as_bytes());
        prefix.update(b"\0");
        prefix.update(number.format(pos.timestamp_ms).as_bytes());
        prefix.update(b"\0");
        EventIds { prefix }
    }

    fn id(&self, index: usize) -> EventId {
        self.named(itoa::Buffer::new().format(index).as_bytes())
    }

    fn named(&self, what: &[u8]) -> EventId {
        let mut hash = self.prefix.clone();
        hash.update(what);
        let digest = hash.finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        let uuid = uuid::Builder::from_sha1_bytes(bytes).into_uuid();
        let mut text = [0u8; 36];
        uuid.hyphenated().encode_lower(&mut text);
        EventId(text)
    }
}

/// The headers every message of one record shares.
struct Headers<'a> {
    pos: SourcePosition<'a>,
    op: &'a str,
    qualified: &'a str,
    /// The transaction headers DMS's metadata gives (only those it sent).
    transaction: Vec<(&'static str, Vec<u8>)>,
}

impl<'a> Headers<'a> {
    fn new(
        pos: SourcePosition<'a>,
        op: &'a str,
        qualified: &'a str,
        metadata: &Metadata<'_>,
    ) -> Headers<'a> {
        let mut transaction = Vec::new();
        // Only with DMS's IncludeTransactionDetails: the plain transaction id is in the
        // envelope already, and every message would carry it.
        let details = metadata.transaction_record_id.is_some()
            || metadata.prev_transaction_id.is_some()
            || metadata.commit_timestamp.is_some()
            || metadata.stream_position.is_some();
        if details {
            let fields = [
                (
                    header::TRANSACTION_ID,
                    metadata.transaction_id.map(scalar_text),
                ),
                (
                    header::TRANSACTION_RECORD_ID,
                    metadata.transaction_record_id.map(scalar_text),
                ),
                (
                    header::PREV_TRANSACTION_ID,
                    metadata.prev_transaction_id.map(scalar_text),
                ),
                (
                    header::COMMIT_TIMESTAMP,
                    metadata.commit_timestamp.as_deref().map(Cow::Borrowed),
                ),
                (
                    header::STREAM_POSITION,
                    metadata.stream_position.as_deref().map(Cow::Borrowed),
                ),
            ];
            transaction.extend(
                fields
                    .into_iter()
                    .filter_map(|(name, value)| Some((name, value?.as_bytes().to_vec()))),
            );
        }
        Headers {
            pos,
            op,
            qualified,
            transaction,
        }
    }

    fn message(
        &self,
        topic: Arc<str>,
        key: &[u8],
        value: Option<Vec<u8>>,
        id: &EventId,
    ) -> OutMessage {
        let mut number = itoa::Buffer::new();
        let transaction: usize = self.transaction.iter().map(|(_, v)| v.len()).sum();
        // Room for two more (content type, trace context) without growing.
        let mut headers = MessageHeaders::with_capacity(
            8 + self.transaction.len(),
            id.as_bytes().len()
                + self.pos.topic.len()
                + 40
                + self.op.len()
                + self.qualified.len()
                + transaction
                + 96,
        );
        headers.push(header::EVENT_ID, id.as_bytes());
        headers.push(header::SOURCE_TOPIC, self.pos.topic.as_bytes());
        headers.push(
            header::SOURCE_PARTITION,
            number.format(self.pos.partition).as_bytes(),
        );
        headers.push(
            header::SOURCE_OFFSET,
            number.format(self.pos.offset).as_bytes(),
        );
        headers.push(header::OPERATION, self.op.as_bytes());
        headers.push(header::TABLE, self.qualified.as_bytes());
        for (name, value) in &self.transaction {
            headers.push(*name, value);
        }
        OutMessage {
            topic,
            key: Some(key.to_vec()),
            value,
            headers,
        }
    }
}

/// A number's text as written, or a string's content (for headers).
fn scalar_text(value: &RawValue) -> Cow<'_, str> {
    match Kind::of(value.get()) {
        Kind::String => coerce::string_of(value).unwrap_or(Cow::Borrowed(value.get())),
        _ => Cow::Borrowed(value.get()),
    }
}

/// Whether `table` is one of DMS's own tables (`awsdms_apply_exceptions`,
/// `awsdms_status`, ...; upper-case from Oracle).
pub fn is_dms_table(table: &str) -> bool {
    table
        .get(..7)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case("awsdms_"))
}

/// A value in the output: the input's raw JSON text, or text a coercion or mask made.
#[derive(Debug)]
enum Json<'a> {
    Raw(&'a RawValue),
    Owned(Box<RawValue>),
}

impl Json<'_> {
    fn raw(&self) -> &RawValue {
        match self {
            Json::Raw(r) => r,
            Json::Owned(b) => b,
        }
    }
}

impl Serialize for Json<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.raw().serialize(serializer)
    }
}

fn null() -> &'static RawValue {
    static NULL: std::sync::OnceLock<Box<RawValue>> = std::sync::OnceLock::new();
    NULL.get_or_init(|| to_raw("null".to_owned()))
}

fn masked() -> &'static RawValue {
    static MASKED: std::sync::OnceLock<Box<RawValue>> = std::sync::OnceLock::new();
    MASKED.get_or_init(|| to_raw(format!("\"{MASK}\"")))
}

/// JSON text the relay wrote itself (a coercion's output, a constant) as a raw value.
fn to_raw(text: String) -> Box<RawValue> {
    // Coercions only return valid JSON text; an invalid one must never reach output.
    RawValue::from_string(text).unwrap_or_else(|_| null().to_owned())
}

/// One surviving column: its source name, its downstream name and its value.
#[derive(Debug)]
struct Cell<'r, 'a> {
    source: &'r str,
    name: &'r str,
    /// What the route does with the column, looked up once.
    plan: &'r ColumnPlan,
    value: Json<'a>,
}

/// Cell lists a record's transform left on this thread, empty, kept for the next: a
/// record's kept columns, its before-image's and its key's take a list each, allocated
/// once per thread instead of once per record.
type SpareCells = Vec<Cell<'static, 'static>>;

/// At most this many lists kept per thread...
const SPARE_CELL_LISTS: usize = 4;
/// ...and none longer than this many cells: a thread keeps at most 4 x 256 cells of
/// 64 bytes (64 KiB).
const SPARE_CELLS_MAX: usize = 256;

thread_local! {
    static SPARE_CELLS: std::cell::RefCell<Vec<SpareCells>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// An empty list of cells of one lifetime as a list of another: no cell moves, and the
/// standard library's in-place collection keeps the allocation (one layout).
fn relabel_cells<'r, 'a, 's, 'b>(mut cells: Vec<Cell<'r, 'a>>) -> Vec<Cell<'s, 'b>> {
    cells.clear();
    #[expect(
        clippy::unnecessary_filter_map,
        reason = "the map's output type is what changes; `filter` keeps the input's"
    )]
    cells.into_iter().filter_map(|_| None).collect()
}

/// An empty list with room for `capacity` cells: a spare one of this thread's if any.
fn cells<'r, 'a>(capacity: usize) -> Vec<Cell<'r, 'a>> {
    let spare = SPARE_CELLS
        .try_with(|spare| spare.try_borrow_mut().ok().and_then(|mut s| s.pop()))
        .ok()
        .flatten();
    match spare {
        Some(spare) => {
            let mut list = relabel_cells(spare);
            list.reserve(capacity);
            list
        }
        None => Vec::with_capacity(capacity),
    }
}

/// Keeps a list that is done with for [`cells`] (its cells dropped), if there is room.
fn spare_cells(list: Option<Vec<Cell<'_, '_>>>) {
    let Some(list) = list.filter(|l| l.capacity() > 0 && l.capacity() <= SPARE_CELLS_MAX) else {
        return;
    };
    let list = relabel_cells(list);
    // A thread being torn down keeps nothing.
    let _ = SPARE_CELLS.try_with(|spare| {
        if let Ok(mut spare) = spare.try_borrow_mut() {
            if spare.len() < SPARE_CELL_LISTS {
                spare.push(list);
            }
        }
    });
}

thread_local! {
    /// The buffer a record's entity key is made in, between records (each message
    /// takes a copy of the key).
    static SPARE_KEY: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// The thread's key buffer, empty.
fn spare_key() -> Vec<u8> {
    let mut key = SPARE_KEY
        .try_with(std::cell::Cell::take)
        .unwrap_or_default();
    key.clear();
    key
}

/// Keeps a key buffer that is done with for [`spare_key`], unless it grew large.
fn give_back_key(key: Vec<u8>) {
    if key.capacity() <= KEY_KEPT_MAX {
        // A thread being torn down keeps nothing.
        let _ = SPARE_KEY.try_with(|spare| spare.set(key));
    }
}

/// The longest key buffer kept (a key is a few columns' values).
const KEY_KEPT_MAX: usize = 4096;

/// Room for what an envelope writes around its objects (ids, source, timestamps): most
/// envelopes are written without growing their buffer.
const ENVELOPE_AROUND: usize = 384;

/// The length of [`write_object`]'s output when no name needs escaping.
fn object_len(cells: &[Cell<'_, '_>]) -> usize {
    2 + cells
        .iter()
        .map(|c| c.name.len() + c.value.raw().get().len() + 4)
        .sum::<usize>()
}

/// The `"name":value` fields of cells, in their order, comma-separated.
fn write_cells(out: &mut Vec<u8>, cells: &[Cell<'_, '_>]) {
    for (i, cell) in cells.iter().enumerate() {
        write::field(out, i == 0, cell.name);
        write::raw(out, cell.value.raw());
    }
}

/// A JSON object of cells, in their order.
fn write_object(out: &mut Vec<u8>, cells: &[Cell<'_, '_>]) {
    out.push(b'{');
    write_cells(out, cells);
    out.push(b'}');
}

/// The downstream key: the route's key columns (looked up in the row, then in the
/// before-image), joined by [`KEY_SEPARATOR`]; else DMS's Kafka key; else `schema.table`.
fn entity_key<'r, 'a>(
    route: &'r Route,
    hash_key: Option<&HashKey>,
    pos: SourcePosition<'_>,
    qualified: &str,
    data: &'r Row<'a>,
    before: Option<&'r Row<'a>>,
) -> Result<EntityKey<'r, 'a>, RecordError> {
    let mut bytes = spare_key();
    let Some(columns) = &route.key else {
        bytes.extend_from_slice(pos.kafka_key.unwrap_or(qualified.as_bytes()));
        return Ok(EntityKey {
            bytes,
            object: None,
        });
    };
    let present = |row: Option<&'r Row<'a>>, column: &str| {
        row.and_then(|r| source_column(route, r, column))
            .filter(|(_, v)| Kind::of(v.get()) != Kind::Null)
    };
    let mut object = cells(columns.len());
    for (i, column) in columns.iter().enumerate() {
        let (source, value) = present(Some(data), column)
            .or_else(|| present(before, column))
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
        // A hashed key column keys by its pseudonym (the same token as in `data`): one
        // entity, one key, no personal data.
        let plan = route.plan(column);
        let value = if !route.hash.is_empty() && plan.hash {
            hashed_key(route, hash_key, qualified, column, value)?
        } else {
            Json::Raw(value)
        };
        let composite = columns.len() > 1;
        match Kind::of(value.raw().get()) {
            Kind::String => match coerce::string_of(value.raw()) {
                Ok(s) => push_key_part(&mut bytes, s.as_bytes(), composite),
                Err(_) => push_key_part(&mut bytes, value.raw().get().as_bytes(), composite),
            },
            Kind::Number | Kind::Bool => {
                push_key_part(&mut bytes, value.raw().get().as_bytes(), composite)
            }
            // An object or array key: one text per value (members sorted, numbers as
            // written, never through a float: two entities never share a key).
            Kind::Object | Kind::Array | Kind::Null => {
                match crate::json::canonical_text(value.raw().get()) {
                    Some(text) => push_key_part(&mut bytes, text.as_bytes(), composite),
                    None => push_key_part(&mut bytes, value.raw().get().as_bytes(), composite),
                }
            }
        }
        // The source's spelling (`EMPLOYEE_ID` on an `ignore_case` route), as in `data`.
        let name = route.output_name(source);
        object.push(Cell {
            source,
            name,
            plan,
            value,
        });
    }
    sort_cells(&mut object);
    Ok(EntityKey {
        bytes,
        object: Some(object),
    })
}

/// A hashed key column's pseudonym, made exactly as [`finish`] makes it in `data`:
/// coercion, truncation, then the keyed hash.
fn hashed_key<'a>(
    route: &Route,
    hash_key: Option<&HashKey>,
    qualified: &str,
    column: &str,
    value: &'a RawValue,
) -> Result<Json<'a>, RecordError> {
    let key = hash_key.ok_or_else(no_hash_key)?;
    let plan = route.plan(column);
    let problem = |reason: String| {
        RecordError::permanent(
            Stage::Transform,
            format!("{qualified} key column {column:?}: {reason}"),
        )
    };
    let mut prepared = Json::Raw(value);
    if let Some(coercion) = plan.coerce {
        let text = coercion.apply(value).map_err(|reason| {
            problem(format!(
                "does not coerce to {}: {reason}",
                coercion.as_str()
            ))
        })?;
        prepared = Json::Owned(to_raw(text.into_owned()));
    }
    if let Some(cut) = plan
        .truncate
        .and_then(|max| personal::truncated(prepared.raw(), max))
    {
        prepared = Json::Owned(to_raw(cut));
    }
    let token = key
        .pseudonym(prepared.raw())
        .ok_or_else(|| problem("is null once coerced".to_owned()))?;
    Ok(Json::Owned(token))
}

/// The value of the route's column `column` in `row` (regardless of ASCII case on an
/// `ignore_case` route; the last occurrence when repeated).
fn column_value<'a>(route: &Route, row: &Row<'a>, column: &str) -> Option<&'a RawValue> {
    source_column(route, row, column).map(|(_, value)| value)
}

/// [`column_value`], with the column's name as the source spells it.
fn source_column<'r, 'a>(
    route: &Route,
    row: &'r Row<'a>,
    column: &str,
) -> Option<(&'r str, &'a RawValue)> {
    row.columns
        .iter()
        .rev()
        .find(|c| route.same_column(column, &c.name))
        .map(|c| (&*c.name, c.value))
}

/// The change as a route's `filter` reads it: `op`, `data`, `before` and `metadata`
/// (DMS's field names), by the route's column names.
struct ChangeFields<'c, 'a> {
    route: &'c Route,
    op: Operation,
    data: &'c Row<'a>,
    before: Option<&'c Row<'a>>,
    metadata: &'c Metadata<'a>,
}

impl<'a> filter::Fields for ChangeFields<'_, 'a> {
    fn get(&self, key: &str, name: Option<&str>) -> Option<Cow<'_, RawValue>> {
        let text = |value: &str| {
            serde_json::to_string(value)
                .ok()
                .map(to_raw)
                .map(Cow::Owned)
        };
        let raw = |value: Option<&'a RawValue>| value.map(Cow::Borrowed);
        match (key, name) {
            ("op", None) => Some(Cow::Borrowed(op_json(self.op))),
            ("data", Some(column)) => {
                column_value(self.route, self.data, column).map(Cow::Borrowed)
            }
            ("before", Some(column)) => self
                .before
                .and_then(|row| column_value(self.route, row, column))
                .map(Cow::Borrowed),
            ("metadata", Some(field)) => {
                // The names are METADATA_FIELDS; the routes refuse any other.
                let m = self.metadata;
                match field {
                    "timestamp" => m.timestamp.as_deref().and_then(text),
                    "record-type" => m.record_type.as_deref().and_then(text),
                    "operation" => m.operation.as_deref().and_then(text),
                    "partition-key-type" => m.partition_key_type.as_deref().and_then(text),
                    "schema-name" => m.schema_name.as_deref().and_then(text),
                    "table-name" => m.table_name.as_deref().and_then(text),
                    "commit-timestamp" => m.commit_timestamp.as_deref().and_then(text),
                    "stream-position" => m.stream_position.as_deref().and_then(text),
                    "partition-key-value" => raw(m.partition_key_value),
                    "transaction-id" => raw(m.transaction_id),
                    "transaction-record-id" => raw(m.transaction_record_id),
                    "prev-transaction-id" => raw(m.prev_transaction_id),
                    "prev-transaction-record-id" => raw(m.prev_transaction_record_id),
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

/// The DMS metadata fields a filter can read (`metadata.table-name`, ...).
pub const METADATA_FIELDS: [&str; 13] = [
    "timestamp",
    "record-type",
    "operation",
    "partition-key-type",
    "partition-key-value",
    "schema-name",
    "table-name",
    "transaction-id",
    "commit-timestamp",
    "stream-position",
    "transaction-record-id",
    "prev-transaction-id",
    "prev-transaction-record-id",
];

/// An operation's name as a JSON string, made once.
fn op_json(op: Operation) -> &'static RawValue {
    static OPS: std::sync::OnceLock<Vec<(Operation, Box<RawValue>)>> = std::sync::OnceLock::new();
    OPS.get_or_init(|| {
        Operation::ALL
            .iter()
            .map(|op| (*op, to_raw(format!("\"{}\"", op.as_str()))))
            .collect()
    })
    .iter()
    .find(|(candidate, _)| *candidate == op)
    .map_or_else(null, |(_, json)| json)
}

/// A `hash` column with no key: the routes were never given theirs. Not the record's
/// fault, so retryable (never dead-lettered); the relay checks the key at init.
fn no_hash_key() -> RecordError {
    RecordError::retryable(
        Stage::Transform,
        "a route hashes columns but the relay has no hash key (RELAY_HASH_KEY)",
    )
}

/// The downstream key of a change.
struct EntityKey<'r, 'a> {
    /// The Kafka message key.
    bytes: Vec<u8>,
    /// The envelope's `key` object, for column keys.
    object: Option<Vec<Cell<'r, 'a>>>,
}

/// Include/exclude, then coercion: the surviving columns, sorted by source name (a
/// repeated column: its last occurrence). A failed coercion names the column and the
/// reason, never the value.
fn select<'r, 'a>(
    route: &'r Route,
    row: &'r Row<'a>,
) -> Result<Vec<Cell<'r, 'a>>, (String, String)> {
    // Of a repeated column the last occurrence is kept, as a JSON reader would, before
    // any coercion sees it.
    let mut out = cells(row.columns.len());
    shape::kept(route, row, |index, slot| {
        // Every index is one of the row's: the shape is the row's own.
        if let Some(column) = row.columns.get(index) {
            let plan = route.plan_at(slot);
            out.push(Cell {
                source: &column.name,
                name: plan.name.as_deref().unwrap_or(&column.name),
                plan,
                value: Json::Raw(column.value),
            });
        }
    });
    for cell in &mut out {
        let (Some(coercion), Json::Raw(raw)) = (cell.plan.coerce, &cell.value) else {
            continue;
        };
        let raw: &'a RawValue = raw;
        cell.value = match coercion.apply(raw) {
            Ok(Cow::Borrowed(text)) if text == raw.get() => Json::Raw(raw),
            Ok(text) => Json::Owned(to_raw(text.into_owned())),
            Err(reason) => {
                return Err((
                    cell.source.to_owned(),
                    format!("does not coerce to {}: {reason}", coercion.as_str()),
                ))
            }
        };
    }
    Ok(out)
}

/// Sorts cells by downstream name, keeping the last of equal names.
fn sort_cells(cells: &mut Vec<Cell<'_, '_>>) {
    // Nearly always: in order already, each name once.
    if cells.is_sorted_by(|a, b| a.name < b.name) {
        return;
    }
    if !cells.is_sorted_by(|a, b| a.name <= b.name) {
        cells.sort_by(|a, b| a.name.cmp(b.name));
    }
    dedup_keep_last(cells, |c| c.name);
}

/// Keeps the last of each run of equal names (linear: a row may repeat a column many times).
fn dedup_keep_last<'r, T>(items: &mut Vec<T>, name: impl Fn(&T) -> &'r str) {
    items.reverse();
    items.dedup_by(|later, earlier| name(later) == name(earlier));
    items.reverse();
}

/// Whether two values are the same: the same text, or (for objects, arrays and strings
/// with escapes, whose text can differ for one value) the same canonical text. Numbers
/// are compared as written, never through a float, at any depth.
fn same_value(a: &RawValue, b: &RawValue) -> bool {
    let (a, b) = (a.get(), b.get());
    if a == b {
        return true;
    }
    let parse_worth =
        |t: &str| matches!(Kind::of(t), Kind::Object | Kind::Array) || t.contains('\\');
    if !(parse_worth(a) || parse_worth(b)) {
        return false;
    }
    match (
        crate::json::canonical_text(a),
        crate::json::canonical_text(b),
    ) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// What an update changed, by source column name.
struct Changes<'r> {
    /// Columns whose value differs between the row and the before-image (a column the
    /// row lacks but the before-image has counts: DMS omits null columns).
    changed: Vec<&'r str>,
    /// Columns of the row the before-image lacks: whether they changed is not known
    /// (PostgreSQL sends only key columns unless REPLICA IDENTITY FULL, Oracle only the
    /// changed ones, and DMS omits nulls without `IncludeNullAndEmpty`).
    unknown: Vec<&'r str>,
}

impl Changes<'_> {
    /// Nothing is known to have changed, and nothing is unknown.
    fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.unknown.is_empty()
    }
}

/// Compares the selected row with the selected before-image (both sorted by source name,
/// each name once): one pass over both, so both lists come out sorted.
fn changed_columns<'r>(data: &[Cell<'r, '_>], before: &[Cell<'r, '_>]) -> Changes<'r> {
    use std::cmp::Ordering;
    let mut changed = Vec::new();
    let mut unknown = Vec::new();
    let (mut now, mut old) = (data.iter().peekable(), before.iter().peekable());
    loop {
        match (now.peek(), old.peek()) {
            (Some(cell), Some(was)) => match cell.source.cmp(was.source) {
                Ordering::Less => {
                    unknown.push(cell.source);
                    now.next();
                }
                Ordering::Greater => {
                    changed.push(was.source);
                    old.next();
                }
                Ordering::Equal => {
                    if !same_value(was.value.raw(), cell.value.raw()) {
                        changed.push(cell.source);
                    }
                    now.next();
                    old.next();
                }
            },
            (Some(cell), None) => {
                unknown.push(cell.source);
                now.next();
            }
            (None, Some(was)) => {
                changed.push(was.source);
                old.next();
            }
            (None, None) => break,
        }
    }
    Changes { changed, unknown }
}

/// Truncate, hash, mask, then order by downstream name.
fn finish<'r, 'a>(
    hash_key: Option<&HashKey>,
    mut cells: Vec<Cell<'r, 'a>>,
) -> Result<Vec<Cell<'r, 'a>>, RecordError> {
    for cell in &mut cells {
        let plan = cell.plan;
        if let Some(max) = plan.truncate {
            if let Some(cut) = personal::truncated(cell.value.raw(), max) {
                cell.value = Json::Owned(to_raw(cut));
            }
        }
        if plan.hash {
            let key = hash_key.ok_or_else(no_hash_key)?;
            if let Some(token) = key.pseudonym(cell.value.raw()) {
                cell.value = Json::Owned(token);
            }
        }
        if plan.mask && Kind::of(cell.value.raw().get()) != Kind::Null {
            cell.value = Json::Raw(masked());
        }
    }
    sort_row_cells(&mut cells)?;
    Ok(cells)
}

/// [`sort_cells`] for a row written downstream, where two source columns written under
/// one name (a rename onto a column the row also has, which a route without `include`
/// cannot see at init) would lose one of them without a word: a record error instead.
fn sort_row_cells(cells: &mut Vec<Cell<'_, '_>>) -> Result<(), RecordError> {
    // Nearly always: in order already, each name once (one pass instead of three).
    if cells.is_sorted_by(|a, b| a.name < b.name) {
        return Ok(());
    }
    if !cells.is_sorted_by(|a, b| a.name <= b.name) {
        cells.sort_by(|a, b| a.name.cmp(b.name));
    }
    for pair in cells.windows(2) {
        if let [a, b] = pair {
            if a.name == b.name && a.source != b.source {
                return Err(RecordError::permanent(
                    Stage::Transform,
                    format!(
                        "columns {:?} and {:?} would both be written as {:?} (a rename onto \
                         a column the row also has: rename or exclude that one too)",
                        a.source, b.source, a.name
                    ),
                ));
            }
        }
    }
    dedup_keep_last(cells, |c| c.name);
    Ok(())
}

/// The downstream event (`envelope = "relay"`). `id` must stay first: further topics
/// patch it in place ([`ENVELOPE_ID`]).
struct RelayEnvelope<'a> {
    id: &'a str,
    op: &'a str,
    source: SourceInfo<'a>,
    key: Option<&'a [Cell<'a, 'a>]>,
    data: &'a [Cell<'a, 'a>],
    before: Option<&'a [Cell<'a, 'a>]>,
    /// Left out when `None`.
    changed: Option<&'a [&'a str]>,
    /// Left out when `None`.
    unknown: Option<&'a [&'a str]>,
}

impl RelayEnvelope<'_> {
    /// The event's JSON, written by hand ([`write`]).
    fn write(&self) -> Vec<u8> {
        let cells = [Some(self.data), self.key, self.before];
        let mut out = Vec::with_capacity(
            ENVELOPE_AROUND + cells.iter().flatten().map(|c| object_len(c)).sum::<usize>(),
        );
        write::literal(&mut out, "{\"id\":");
        write::string(&mut out, self.id);
        write::literal(&mut out, ",\"op\":");
        write::string(&mut out, self.op);
        write::literal(&mut out, ",\"source\":");
        self.source.write(&mut out);
        let object = |out: &mut Vec<u8>, cells: Option<&[Cell<'_, '_>]>| match cells {
            Some(cells) => write_object(out, cells),
            None => out.extend_from_slice(b"null"),
        };
        write::literal(&mut out, ",\"key\":");
        object(&mut out, self.key);
        write::literal(&mut out, ",\"data\":");
        write_object(&mut out, self.data);
        write::literal(&mut out, ",\"before\":");
        object(&mut out, self.before);
        for (field, names) in [
            (",\"changed\":", self.changed),
            (",\"unknown\":", self.unknown),
        ] {
            if let Some(names) = names {
                write::literal(&mut out, field);
                write::strings(&mut out, names);
            }
        }
        out.push(b'}');
        out
    }
}

/// The downstream event (`envelope = "flat"`): the row plus three fields.
struct FlatEnvelope<'c, 'r, 'a> {
    row: &'c [Cell<'r, 'a>],
    op: &'c str,
    table: &'c str,
    source_ts: Option<&'c str>,
}

/// The fields the flat envelope adds to the row.
pub(crate) const FLAT_FIELDS: [&str; 3] = ["__op", "__table", "__source_ts"];

impl FlatEnvelope<'_, '_, '_> {
    /// The event's JSON, written by hand ([`write`]). A column written under one of the
    /// envelope's own names is a record error: the object would hold the name twice,
    /// and a reader would keep one of the two values.
    fn write(&self) -> Result<Vec<u8>, RecordError> {
        if let Some(cell) = self.row.iter().find(|c| FLAT_FIELDS.contains(&c.name)) {
            return Err(RecordError::permanent(
                Stage::Transform,
                format!(
                    "column {:?} would be written as {:?}, a field of the flat envelope: rename or exclude it",
                    cell.source, cell.name
                ),
            ));
        }
        let mut out = Vec::with_capacity(ENVELOPE_AROUND + object_len(self.row));
        out.push(b'{');
        write_cells(&mut out, self.row);
        if self.row.is_empty() {
            write::literal(&mut out, "\"__op\":");
        } else {
            write::literal(&mut out, ",\"__op\":");
        }
        write::string(&mut out, self.op);
        write::literal(&mut out, ",\"__table\":");
        write::string(&mut out, self.table);
        write::literal(&mut out, ",\"__source_ts\":");
        write::string_or_null(&mut out, self.source_ts);
        out.push(b'}');
        Ok(out)
    }
}

/// A DDL/control record, as a schema-change event.
#[derive(Serialize)]
struct SchemaChangeEvent<'a> {
    id: &'a str,
    op: &'a str,
    operation: &'a str,
    schema: &'a str,
    table: &'a str,
    columns: Option<&'a RawValue>,
    primary_key: Option<&'a RawValue>,
    source: SourceInfo<'a>,
}

/// A control record's `control` (DMS's `IncludeControlDetails`).
#[derive(serde::Deserialize)]
struct ControlDetails<'a> {
    #[serde(rename = "table-def", borrow)]
    table_def: Option<&'a RawValue>,
}

/// `control.table-def`: what a schema-change event carries of it.
#[derive(serde::Deserialize)]
struct TableDef<'a> {
    #[serde(borrow)]
    columns: Option<&'a RawValue>,
    #[serde(rename = "primary-key", borrow)]
    primary_key: Option<&'a RawValue>,
}

#[derive(Serialize)]
struct SourceInfo<'a> {
    schema: &'a str,
    table: &'a str,
    topic: &'a str,
    partition: i64,
    offset: i64,
    transaction_id: Option<&'a RawValue>,
    commit_timestamp: Option<&'a str>,
    timestamp: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    transaction_record_id: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prev_transaction_id: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prev_transaction_record_id: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_position: Option<&'a str>,
}

impl SourceInfo<'_> {
    /// The same JSON its `Serialize` writes, by hand ([`write`]).
    fn write(&self, out: &mut Vec<u8>) {
        write::literal(out, "{\"schema\":");
        write::string(out, self.schema);
        write::literal(out, ",\"table\":");
        write::string(out, self.table);
        write::literal(out, ",\"topic\":");
        write::string(out, self.topic);
        write::literal(out, ",\"partition\":");
        write::int(out, self.partition);
        write::literal(out, ",\"offset\":");
        write::int(out, self.offset);
        write::literal(out, ",\"transaction_id\":");
        write::raw_or_null(out, self.transaction_id);
        write::literal(out, ",\"commit_timestamp\":");
        write::string_or_null(out, self.commit_timestamp);
        write::literal(out, ",\"timestamp\":");
        write::string_or_null(out, self.timestamp);
        for (field, value) in [
            (",\"transaction_record_id\":", self.transaction_record_id),
            (",\"prev_transaction_id\":", self.prev_transaction_id),
            (
                ",\"prev_transaction_record_id\":",
                self.prev_transaction_record_id,
            ),
        ] {
            if let Some(value) = value {
                write::literal(out, field);
                write::raw(out, value);
            }
        }
        if let Some(position) = self.stream_position {
            write::literal(out, ",\"stream_position\":");
            write::string(out, position);
        }
        out.push(b'}');
    }
}

impl<'a> SourceInfo<'a> {
    fn new(pos: SourcePosition<'a>, event: &'a ChangeEvent<'_>) -> SourceInfo<'a> {
        SourceInfo {
            schema: &event.schema,
            table: &event.table,
            topic: pos.topic,
            partition: pos.partition,
            offset: pos.offset,
            transaction_id: event.metadata.transaction_id,
            commit_timestamp: event.metadata.commit_timestamp.as_deref(),
            timestamp: event.metadata.timestamp.as_deref(),
            transaction_record_id: event.metadata.transaction_record_id,
            prev_transaction_id: event.metadata.prev_transaction_id,
            prev_transaction_record_id: event.metadata.prev_transaction_record_id,
            stream_position: event.metadata.stream_position.as_deref(),
        }
    }
}

/// Test help: the transform of one DMS record (`doc`) under `routes`, read at a fixed
/// source position of `cluster`.
#[cfg(test)]
pub(crate) fn transform_doc(
    routes: &str,
    cluster: &str,
    doc: &str,
) -> Result<Transformed, RecordError> {
    let transformer = Transformer::new(Routes::parse(routes, "test").expect("valid routes"));
    let event = crate::dms::Decoder::default()
        .decode(doc.as_bytes())
        .expect("DMS record");
    let pos = SourcePosition {
        cluster,
        timestamp_ms: 1_732_200_000_000,
        topic: "dms",
        partition: 2,
        offset: 7,
        kafka_key: Some(b"public.orders"),
    };
    transformer.transform(pos, &event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// Headers keep their order and their bytes, whatever their number and length;
    /// `get` finds the first of a name.
    #[test]
    fn message_headers_keep_order_and_bytes() {
        let long = vec![0xC3; 300];
        let mut headers = MessageHeaders::with_capacity(1, 4);
        headers.push("a", b"1");
        headers.push(String::from("b"), &long);
        headers.push("a", b"");
        headers.extend([("c", b"3".to_vec())]);
        let listed: Vec<(&str, &[u8])> = headers.iter().collect();
        assert_eq!(
            listed,
            vec![
                ("a", &b"1"[..]),
                ("b", &long[..]),
                ("a", &b""[..]),
                ("c", &b"3"[..])
            ]
        );
        assert_eq!(headers.get("a"), Some(&b"1"[..]));
        assert_eq!(headers.get("z"), None);
        assert_eq!(headers.len(), 4);
        let again: MessageHeaders = listed.iter().map(|(n, v)| (n.to_string(), *v)).collect();
        assert_eq!(again, headers);
    }
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

    fn change(table: &str, op: &str, data: &str) -> ChangeEvent<'static> {
        let doc: &'static str = Box::leak(format!(
            r#"{{"data":{data},"metadata":{{"timestamp":"2024-01-01T00:00:00Z","record-type":"data","operation":"{op}","schema-name":"public","table-name":"{table}","transaction-id":9}}}}"#
        ).into_boxed_str());
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

    fn update_doc(table: &str, data: &str, before: &str) -> String {
        format!(
            r#"{{"data":{data},"before-image":{before},"metadata":{{"record-type":"data","operation":"update","schema-name":"public","table-name":"{table}"}}}}"#
        )
    }

    /// `schema.table` is the same whether it fits the stack buffer or not: at, under and
    /// over its length, in the table header and the route it picks.
    #[test]
    fn a_long_schema_table_name_is_qualified_as_a_short_one_is() {
        let routes = "[[route]]\ntable = \"*\"\ntopic = \"t\"\n";
        for length in [
            QUALIFIED_ON_STACK - 1,
            QUALIFIED_ON_STACK,
            QUALIFIED_ON_STACK + 1,
        ] {
            let schema = "s".repeat(length - 2);
            let doc = format!(
                r#"{{"data":{{"id":1}},"metadata":{{"record-type":"data","operation":"insert","schema-name":"{schema}","table-name":"é"}}}}"#
            );
            // "é" is two bytes: the name is `length` + 1 bytes long.
            let expected = format!("{schema}.é");
            let mut room = [0u8; QUALIFIED_ON_STACK];
            assert_eq!(
                qualify(&mut room, &schema, "é").is_some(),
                expected.len() <= QUALIFIED_ON_STACK
            );
            let out = messages(transform_doc(routes, "c", &doc).expect("transformed"));
            assert_eq!(
                out[0].header(header::TABLE),
                Some(expected.as_bytes()),
                "{} bytes",
                expected.len()
            );
        }
    }

    /// The cell lists of a record's transform (its kept columns, its before-image's, its
    /// key's) are kept on the thread and taken by the next record's, which comes out as
    /// it does on a thread that kept none: nothing of the first record is left in them.
    #[test]
    fn cell_lists_are_reused_without_what_they_held() {
        fn values(doc: &str) -> Vec<OutMessage> {
            let event = Decoder::default()
                .decode(doc.as_bytes())
                .expect("DMS record");
            messages(
                transformer()
                    .transform(pos(1), &event)
                    .expect("transformed"),
            )
        }
        fn spares() -> Vec<usize> {
            let mut lists: Vec<usize> =
                SPARE_CELLS.with(|s| s.borrow().iter().map(|l| l.as_ptr() as usize).collect());
            lists.sort_unstable();
            lists
        }
        SPARE_CELLS.with(|s| s.borrow_mut().clear());
        let first = update_doc(
            "orders",
            r#"{"id":1,"user_id":7,"status":"PAID","email":"a@b.c","amount":3,"note":"x","a":1,"b":2}"#,
            r#"{"id":1,"user_id":7,"status":"NEW","email":"a@b.c","amount":3}"#,
        );
        values(&first);
        let kept = spares();
        assert_eq!(
            kept.len(),
            3,
            "the row's, the before-image's and the key's lists"
        );
        let key_buffer = || {
            SPARE_KEY.with(|k| {
                let key = k.take();
                let at = (key.capacity() > 0).then_some(key.as_ptr() as usize);
                k.set(key);
                at
            })
        };
        let key_kept = key_buffer();
        assert!(key_kept.is_some(), "the key's buffer is kept");
        let second = update_doc(
            "orders",
            r#"{"id":2,"user_id":8,"status":"SENT"}"#,
            r#"{"id":2,"user_id":8,"status":"PAID"}"#,
        );
        let reused = values(&second);
        assert_eq!(spares(), kept, "the same three lists, taken and given back");
        assert_eq!(key_buffer(), key_kept, "the same key buffer");
        let fresh = std::thread::spawn(move || values(&second))
            .join()
            .expect("no panic");
        assert_eq!(reused, fresh);
    }

    /// A change inside a JSON column is seen whatever the size of its numbers (no
    /// float in between), and only a change is: spacing, member order and escapes
    /// are not one.
    #[test]
    fn changes_inside_json_columns_are_compared_as_written() {
        let routes = "[[route]]\ntable = \"public.acc\"\ntopic = \"acc\"\nchanged_only = true\ntypes = { doc = \"json\" }\n";
        let json_column = |inner: &str| serde_json::to_string(inner).expect("a string");
        for (now, was) in [
            (
                r#"{"v":12345678901234567890123}"#,
                r#"{"v":12345678901234567890124}"#,
            ),
            (r#"{"v":[0.10000000000000000001]}"#, r#"{"v":[0.1]}"#),
            (r#"{"v":1.50}"#, r#"{"v":1.5}"#),
        ] {
            let doc = update_doc(
                "acc",
                &format!(r#"{{"id":1,"doc":{}}}"#, json_column(now)),
                &format!(r#"{{"id":1,"doc":{}}}"#, json_column(was)),
            );
            let out = messages(transform_doc(routes, "c", &doc).expect("transformed"));
            let value: Value =
                serde_json::from_slice(out[0].value.as_deref().expect("a value")).expect("JSON");
            assert_eq!(
                value["changed"],
                serde_json::json!(["doc"]),
                "{now} after {was}"
            );
        }
        let doc = update_doc(
            "acc",
            &format!(
                r#"{{"id":1,"doc":{}}}"#,
                json_column(r#"{"b":"\u0041","a":[1, 2]}"#)
            ),
            &format!(
                r#"{{"id":1,"doc":{}}}"#,
                json_column(r#"{"a":[1,2],"b":"A"}"#)
            ),
        );
        assert_eq!(
            transform_doc(routes, "c", &doc).expect("transformed"),
            Transformed::Skipped(SkipReason::Unchanged)
        );
        // However deep a value nests, comparing it neither overflows the stack nor
        // misses the change (past serde_json's depth it counts as changed).
        let deep = |leaf: u8| format!("{}{leaf}{}", "[".repeat(100_000), "]".repeat(100_000));
        let doc = update_doc(
            "acc",
            &format!(r#"{{"id":1,"tree":{}}}"#, deep(1)),
            &format!(r#"{{"id":1,"tree":{}}}"#, deep(2)),
        );
        let out = messages(transform_doc(routes, "c", &doc).expect("transformed"));
        // The event nests deeper than serde_json reads: its text is searched instead.
        let event = String::from_utf8_lossy(out[0].value.as_deref().expect("a value"));
        assert!(event.contains(r#""changed":["tree"]"#));
    }

    /// An object or array key column keys by one text per value: every digit kept (two
    /// entities never share a key), spacing and member order aside.
    #[test]
    fn object_key_columns_keep_every_digit() {
        let routes = "[[route]]\ntable = \"public.refs\"\ntopic = \"refs\"\nkey = [\"ref\"]\n";
        let key = |reference: &str| {
            let doc = format!(
                r#"{{"data":{{"id":1,"ref":{reference}}},"metadata":{{"record-type":"data","operation":"insert","schema-name":"public","table-name":"refs"}}}}"#
            );
            let out = messages(transform_doc(routes, "c", &doc).expect("transformed"));
            String::from_utf8(out[0].key.clone().expect("a key")).expect("UTF-8")
        };
        assert_eq!(
            key("[12345678901234567890123]"),
            "[12345678901234567890123]"
        );
        assert_ne!(
            key("[12345678901234567890123]"),
            key("[12345678901234567890124]")
        );
        assert_eq!(
            key(r#"{ "b": 1.50, "a": ["\u0041"] }"#),
            r#"{"a":["A"],"b":1.50}"#
        );
    }

    /// A rename onto a column the row also has (no `include` to see it at init) is the
    /// record's error, never one value silently lost.
    #[test]
    fn a_rename_onto_a_kept_column_is_a_record_error() {
        let routes =
            "[[route]]\ntable = \"public.pay\"\ntopic = \"pay\"\nrename = { amount = \"total\" }\n";
        let doc = r#"{"data":{"id":1,"amount":"5.00","total":"9.00"},"metadata":{"record-type":"data","operation":"insert","schema-name":"public","table-name":"pay"}}"#;
        let error = transform_doc(routes, "c", doc)
            .expect_err("a collision")
            .to_string();
        assert!(
            error.contains(r#"columns "amount" and "total" would both be written as "total""#),
            "{error}"
        );
        let alone = doc.replace(r#","total":"9.00""#, "");
        messages(transform_doc(routes, "c", &alone).expect("no collision"));
    }

    /// Under the flat envelope a row's column named like one of its fields (`__op`) is
    /// a record error, not an object holding the name twice; renamed away, it goes.
    #[test]
    fn a_column_named_like_a_flat_field_is_a_record_error() {
        let routes =
            "[defaults]\nenvelope = \"flat\"\n[[route]]\ntable = \"public.pay\"\ntopic = \"pay\"\n";
        let doc = r#"{"data":{"id":1,"__op":"x"},"metadata":{"record-type":"data","operation":"insert","schema-name":"public","table-name":"pay"}}"#;
        let error = transform_doc(routes, "c", doc)
            .expect_err("a collision")
            .to_string();
        assert!(
            error.contains(r#"column "__op" would be written as "__op""#),
            "{error}"
        );
        let renamed = routes.replace(
            "topic = \"pay\"\n",
            "topic = \"pay\"\nrename = { __op = \"row_op\" }\n",
        );
        let out = messages(transform_doc(&renamed, "c", doc).expect("renamed away"));
        let value =
            String::from_utf8_lossy(out[0].value.as_deref().unwrap_or_default()).into_owned();
        assert_eq!(value.matches("\"__op\"").count(), 1, "{value}");
        assert!(value.contains(r#""row_op":"x""#), "{value}");
    }

    /// A schema-change event carries the table definition's columns and primary key as
    /// DMS wrote them: its column order, a default's every digit; one it cannot read
    /// (a lone surrogate) is left out.
    #[test]
    fn schema_changes_keep_the_table_definition_as_written() {
        let routes = "[defaults]\nschema_changes_topic = \"ddl\"\n";
        let columns = r#"{"id":{"type":"INT32","nullable":false},"user_id":{"type":"INT64","nullable":false},"coupon":{"type":"NUMERIC","default":12345678901234567890.123}}"#;
        let doc = format!(
            r#"{{"control":{{"table-def":{{"columns":{columns},"primary-key":["id", "user_id"]}}}},"metadata":{{"record-type":"control","operation":"add-column","schema-name":"public","table-name":"orders"}}}}"#
        );
        let out = messages(transform_doc(routes, "c", &doc).expect("a schema change"));
        let value =
            String::from_utf8_lossy(out[0].value.as_deref().unwrap_or_default()).into_owned();
        assert!(
            value.contains(&format!(r#""columns":{columns}"#)),
            "{value}"
        );
        assert!(
            value.contains(r#""primary_key":["id", "user_id"]"#),
            "{value}"
        );
        let lone = doc.replace(r#""NUMERIC""#, r#""\ud800""#);
        let out = messages(transform_doc(routes, "c", &lone).expect("a schema change"));
        let value =
            String::from_utf8_lossy(out[0].value.as_deref().unwrap_or_default()).into_owned();
        assert!(value.contains(r#""columns":null"#), "{value}");
        assert!(
            value.contains(r#""primary_key":["id", "user_id"]"#),
            "{value}"
        );
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

    /// An event id is UUID v5 of the documented name, whichever partition the thread saw
    /// before: positions that differ only in cluster, topic or partition, taken in turn,
    /// each get the id of their own name (the partition's hashed prefix is kept per
    /// thread and must never serve another partition).
    #[test]
    fn event_ids_are_uuid_v5_of_their_own_name_in_any_order() {
        let base = pos(3);
        let positions = [
            base,
            SourcePosition {
                cluster: "arn:aws:kafka:us-east-1:444455556666:cluster/cdc/ffff-0000-1",
                ..base
            },
            SourcePosition {
                topic: "dms.public.users",
                ..base
            },
            SourcePosition {
                partition: 2,
                ..base
            },
            SourcePosition { offset: 4, ..base },
        ];
        // Every ordered pair: each change of one field alone, in both directions.
        for (a, b) in positions
            .iter()
            .flat_map(|a| positions.iter().map(move |b| (*a, *b)))
        {
            for (i, p) in [a, b].into_iter().enumerate() {
                let name = format!(
                    "{}\0{}\0{}\0{}\0{}\0{}",
                    p.cluster, p.topic, p.partition, p.offset, p.timestamp_ms, i
                );
                let expected = uuid::Uuid::new_v5(&EVENT_ID_NAMESPACE, name.as_bytes());
                assert_eq!(
                    event_id(p, i),
                    expected.hyphenated().to_string(),
                    "{name:?} after {:?}",
                    (a.cluster, a.topic, a.partition)
                );
            }
        }
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

    /// The values of a composite key cannot run into each other: a `|` or `\` in a
    /// value is escaped, so two entities never share a key (on a compacted topic one
    /// would replace the other, and a tombstone of one would delete both). A value
    /// holding neither is keyed as before, and a one-column key is never escaped.
    #[test]
    fn composite_keys_keep_entities_apart() {
        let routes = "[[route]]\ntable = \"public.items\"\ntopic = \"items\"\nkey = [\"tenant\", \"code\"]\n";
        let key = |routes: &str, tenant: &str, code: &str| {
            let doc = format!(
                r#"{{"data":{{"tenant":{tenant},"code":{code}}},"metadata":{{"record-type":"data","operation":"insert","schema-name":"public","table-name":"items"}}}}"#
            );
            let out = messages(transform_doc(routes, "c", &doc).expect("transformed"));
            String::from_utf8(out[0].key.clone().expect("a key")).expect("UTF-8")
        };
        let (a, b) = (
            key(routes, r#""a|b""#, r#""c""#),
            key(routes, r#""a""#, r#""b|c""#),
        );
        assert_ne!(a, b, "two entities, one key");
        assert_eq!(a, r"a\|b|c");
        assert_eq!(b, r"a|b\|c");
        assert_ne!(
            key(routes, r#""a\\""#, r#""|c""#),
            key(routes, r#""a\\|""#, r#""c""#)
        );
        assert_eq!(key(routes, r#""acme""#, "42"), "acme|42", "unchanged");
        let single = "[[route]]\ntable = \"public.items\"\ntopic = \"items\"\nkey = [\"code\"]\n";
        assert_eq!(key(single, r#""t""#, r#""b|c\\d""#), r"b|c\d");
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
