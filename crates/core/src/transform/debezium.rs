//! The Debezium-compatible envelope (`envelope = "debezium"`): the value of a Debezium
//! change event (`before`, `after`, `source`, `op`, `ts_ms`, `transaction`) and the key
//! as Debezium's key struct, each wrapped in Kafka Connect's JSON schema
//! (`{"schema", "payload"}`, what a `JsonConverter` with `schemas.enable=true` reads)
//! unless the routes say `schemas = false`.
//!
//! Types: a column's Connect type comes from what the route declares: `types` (`int` ->
//! int64, `float` -> double, `bool` -> boolean, `hex` -> bytes, `decimal` -> string,
//! `timestamp` -> an `io.debezium.time.ZonedTimestamp` string, `json` -> an
//! `io.debezium.data.Json` string), a mask or pseudonym -> string. A column the route does
//! not type is a string: DMS does not say its type in a data record, and guessing a
//! number from one value would change the table's schema with the next one. Its text is
//! kept byte for byte (a number's digits, quoted); an object or array is its JSON text.
//! An `int` value past 64 signed bits is a record error: an int64 would wrap it.
//!
//! Both images share one row struct, as in Debezium. A column of the struct that an
//! image lacks (DMS leaves unchanged LOB columns out of an update; a before-image may
//! hold some columns only) is Debezium's `__debezium_unavailable_value` when its type
//! is a string or bytes, so a sink keeps the value it has. An int64, double or boolean
//! column has no such placeholder in Debezium: it is `null`, which a sink writes. (The
//! relay envelope lists a column the update's row lacks and its before-image has in
//! `changed`, as DMS leaves out columns that became null.) Without schemas every value
//! is written as it came.

use std::borrow::Cow;

use serde_json::{json, Value};

use super::coerce::{self, Coercion, Kind};
use super::routes::Route;
use super::{scalar_text, to_raw, Cell, Json};
use crate::dms::{ChangeEvent, Operation};
use crate::error::{RecordError, Stage};
use crate::source::SourcePosition;

/// The `connector` of every event's `source`.
pub const CONNECTOR: &str = "dms";

/// A column's Kafka Connect type (with a Debezium semantic name where one applies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Int64,
    Double,
    Boolean,
    Bytes,
    Text,
    Timestamp,
    Json,
}

impl Field {
    fn schema(self, name: &str, optional: bool) -> Value {
        let (kind, semantic) = match self {
            Field::Int64 => ("int64", None),
            Field::Double => ("double", None),
            Field::Boolean => ("boolean", None),
            Field::Bytes => ("bytes", None),
            Field::Text => ("string", None),
            Field::Timestamp => ("string", Some("io.debezium.time.ZonedTimestamp")),
            Field::Json => ("string", Some("io.debezium.data.Json")),
        };
        let mut schema = json!({"type": kind, "optional": optional, "field": name});
        if let (Some(semantic), Some(map)) = (semantic, schema.as_object_mut()) {
            map.insert("name".to_owned(), json!(semantic));
            map.insert("version".to_owned(), json!(1));
        }
        schema
    }

    /// Debezium's mark of a value it does not have: the placeholder for strings (its
    /// UTF-8 bytes, base64, for bytes), `null` for other types.
    fn write_unavailable(self, out: &mut Vec<u8>) {
        match self {
            Field::Text | Field::Json | Field::Timestamp => {
                let _ = serde_json::to_writer(&mut *out, UNAVAILABLE);
            }
            Field::Bytes => {
                use base64::Engine;
                let text = base64::engine::general_purpose::STANDARD.encode(UNAVAILABLE);
                let _ = serde_json::to_writer(&mut *out, &text);
            }
            Field::Int64 | Field::Double | Field::Boolean => out.extend_from_slice(b"null"),
        }
    }

    /// The value as this type's JSON: typed values as they are, anything else as text.
    fn write(self, value: &str, out: &mut Vec<u8>) {
        let kind = Kind::of(value);
        let as_is = match self {
            _ if kind == Kind::Null => true,
            Field::Int64 | Field::Double | Field::Boolean | Field::Bytes | Field::Timestamp => true,
            Field::Text => kind == Kind::String,
            Field::Json => false,
        };
        if as_is {
            out.extend_from_slice(value.as_bytes());
        } else if matches!(kind, Kind::Number | Kind::Bool) {
            // Digits, signs, `.`, `e`, `true`: nothing to escape.
            out.push(b'"');
            out.extend_from_slice(value.as_bytes());
            out.push(b'"');
        } else {
            // An object, array or (typed `json`) string: its JSON text as a string.
            // Writing a string into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, value);
        }
    }
}

/// What an image lacks of the row struct, as Debezium marks a value it does not have.
pub const UNAVAILABLE: &str = "__debezium_unavailable_value";

/// The Connect type of a column of `route`: what the route declares, never guessed from
/// a value.
fn field_of(route: &Route, source: &str) -> Field {
    let plan = route.plan(source);
    if plan.mask || plan.hash {
        return Field::Text;
    }
    match plan.coerce {
        Some(Coercion::Int) => Field::Int64,
        Some(Coercion::Float) => Field::Double,
        Some(Coercion::Decimal) | None => Field::Text,
        Some(Coercion::Bool) => Field::Boolean,
        Some(Coercion::Timestamp) => Field::Timestamp,
        Some(Coercion::Json) => Field::Json,
        Some(Coercion::Hex) => Field::Bytes,
    }
}

/// The fields of the row struct: every column of the images, by name. An int64 value
/// past 64 signed bits (a u64 the coercion kept exact) is refused.
fn row_fields<'c>(
    route: &Route,
    qualified: &str,
    images: [Option<&'c [Cell<'_, '_>]>; 2],
) -> Result<Vec<(&'c str, Field)>, RecordError> {
    let mut fields: Vec<(&'c str, Field)> = Vec::new();
    for cells in images.into_iter().flatten() {
        for cell in cells {
            let field = field_of(route, cell.source);
            check_int64(field, qualified, cell)?;
            if !fields.iter().any(|(name, _)| *name == cell.name) {
                fields.push((cell.name, field));
            }
        }
    }
    fields.sort_by(|a, b| a.0.cmp(b.0));
    Ok(fields)
}

fn check_int64(field: Field, qualified: &str, cell: &Cell<'_, '_>) -> Result<(), RecordError> {
    let value = cell.value.raw().get();
    if field == Field::Int64 && Kind::of(value) != Kind::Null && value.parse::<i64>().is_err() {
        return Err(RecordError::permanent(
            Stage::Transform,
            format!(
                "{qualified} column {:?}: past 64 signed bits, which a Debezium int64 cannot hold",
                cell.source
            ),
        ));
    }
    Ok(())
}

/// An image: without schemas its cells as they came; with them every field of the row
/// struct, in the struct's order, typed, and [`UNAVAILABLE`] (or `null`) for a field the
/// image lacks.
fn write_row(cells: Option<&[Cell<'_, '_>]>, fields: Option<&[(&str, Field)]>, out: &mut Vec<u8>) {
    let Some(cells) = cells else {
        out.extend_from_slice(b"null");
        return;
    };
    out.push(b'{');
    match fields {
        None => {
            for (i, cell) in cells.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let _ = serde_json::to_writer(&mut *out, cell.name);
                out.push(b':');
                out.extend_from_slice(cell.value.raw().get().as_bytes());
            }
        }
        Some(fields) => {
            for (i, (name, field)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let _ = serde_json::to_writer(&mut *out, name);
                out.push(b':');
                match cells.iter().find(|c| c.name == *name) {
                    Some(cell) => field.write(cell.value.raw().get(), out),
                    None => field.write_unavailable(out),
                }
            }
        }
    }
    out.push(b'}');
}

/// What one change event is made of.
pub(super) struct Event<'c, 'r, 'a> {
    pub route: &'r Route,
    pub schemas: bool,
    pub pos: SourcePosition<'c>,
    pub event: &'c ChangeEvent<'c>,
    pub op: Operation,
    /// The mapped row (for a delete, the row deleted).
    pub data: &'c [Cell<'r, 'a>],
    /// The mapped before-image of an update, when DMS sent one.
    pub before: Option<&'c [Cell<'r, 'a>]>,
}

impl Event<'_, '_, '_> {
    /// The event's value.
    pub fn value(&self, qualified: &str) -> Result<Vec<u8>, RecordError> {
        let (before, after) = match self.op {
            Operation::Delete => (Some(self.data), None),
            Operation::Update => (self.before, Some(self.data)),
            Operation::Insert | Operation::Load => (None, Some(self.data)),
        };
        let fields = match self.schemas {
            true => Some(row_fields(self.route, qualified, [after, before])?),
            false => None,
        };
        let mut out = Vec::with_capacity(1024);
        if let Some(fields) = &fields {
            out.extend_from_slice(b"{\"schema\":");
            let schema = self.schema(fields);
            let _ = serde_json::to_writer(&mut out, &schema);
            out.extend_from_slice(b",\"payload\":");
        }
        out.extend_from_slice(b"{\"before\":");
        write_row(before, fields.as_deref(), &mut out);
        out.extend_from_slice(b",\"after\":");
        write_row(after, fields.as_deref(), &mut out);
        out.extend_from_slice(b",\"source\":");
        let _ = serde_json::to_writer(&mut out, &self.source());
        out.extend_from_slice(b",\"op\":\"");
        out.extend_from_slice(op_code(self.op).as_bytes());
        let metadata = &self.event.metadata;
        let processed = micros(metadata.timestamp.as_deref())
            .or_else(|| micros(metadata.commit_timestamp.as_deref()));
        out.extend_from_slice(b"\",\"ts_ms\":");
        write_number(processed.map(|us| us.div_euclid(1000)), &mut out);
        out.extend_from_slice(b",\"ts_us\":");
        write_number(processed, &mut out);
        out.extend_from_slice(b",\"transaction\":");
        let transaction = metadata.transaction_id.map(|id| {
            json!({
                "id": scalar_text(id),
                "total_order": metadata
                    .transaction_record_id
                    .and_then(|r| r.get().trim_matches('"').parse::<i64>().ok()),
                "data_collection_order": null,
            })
        });
        let _ = serde_json::to_writer(&mut out, &transaction);
        out.push(b'}');
        if fields.is_some() {
            out.push(b'}');
        }
        Ok(out)
    }

    /// Debezium's `source` block, with what DMS knows.
    fn source(&self) -> Value {
        let metadata = &self.event.metadata;
        let committed = micros(metadata.commit_timestamp.as_deref())
            .or_else(|| micros(metadata.timestamp.as_deref()));
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "connector": CONNECTOR,
            "name": self.pos.topic,
            "ts_ms": committed.map(|us| us.div_euclid(1000)),
            "ts_us": committed,
            "snapshot": if self.op == Operation::Load { "true" } else { "false" },
            "db": self.event.schema,
            "schema": self.event.schema,
            "table": self.event.table,
            "txId": metadata.transaction_id.map(scalar_text),
            "stream_position": metadata.stream_position,
            "topic": self.pos.topic,
            "partition": self.pos.partition,
            "offset": self.pos.offset,
        })
    }

    /// The envelope's Connect schema.
    fn schema(&self, fields: &[(&str, Field)]) -> Value {
        let prefix = format!("{CONNECTOR}.{}.{}", self.event.schema, self.event.table);
        let row = |field: &str| {
            json!({
                "type": "struct",
                "fields": fields.iter().map(|(name, f)| f.schema(name, true)).collect::<Vec<_>>(),
                "optional": true,
                "name": format!("{prefix}.Value"),
                "field": field,
            })
        };
        let text = |name: &str, optional: bool| Field::Text.schema(name, optional);
        let int = |name: &str, optional: bool| Field::Int64.schema(name, optional);
        json!({
            "type": "struct",
            "fields": [
                row("before"),
                row("after"),
                {
                    "type": "struct",
                    "fields": [
                        text("version", false),
                        text("connector", false),
                        text("name", false),
                        int("ts_ms", true),
                        int("ts_us", true),
                        text("snapshot", true),
                        text("db", false),
                        text("schema", false),
                        text("table", false),
                        text("txId", true),
                        text("stream_position", true),
                        text("topic", false),
                        int("partition", false),
                        int("offset", false),
                    ],
                    "optional": false,
                    "name": "io.debezium.connector.dms.Source",
                    "field": "source",
                },
                text("op", false),
                int("ts_ms", true),
                int("ts_us", true),
                {
                    "type": "struct",
                    "fields": [
                        text("id", false),
                        int("total_order", true),
                        int("data_collection_order", true),
                    ],
                    "optional": true,
                    "name": "event.block",
                    "version": 1,
                    "field": "transaction",
                },
            ],
            "optional": false,
            "name": format!("{prefix}.Envelope"),
            "version": 1,
        })
    }
}

/// The message key: the route's key columns as Debezium's key struct (coerced as in the
/// row, a pseudonym where hashed); without key columns, the key the relay would use
/// otherwise, as a string (bytes when it is not UTF-8).
pub(super) fn key(
    route: &Route,
    schemas: bool,
    event: &ChangeEvent<'_>,
    qualified: &str,
    key_bytes: &[u8],
    columns: Option<&[Cell<'_, '_>]>,
) -> Result<Vec<u8>, RecordError> {
    let mut out = Vec::with_capacity(128);
    let Some(columns) = columns else {
        let (kind, payload) = match std::str::from_utf8(key_bytes) {
            Ok(text) => ("string", json!(text)),
            Err(_) => {
                use base64::Engine;
                let text = base64::engine::general_purpose::STANDARD.encode(key_bytes);
                ("bytes", json!(text))
            }
        };
        let value = if schemas {
            json!({"schema": {"type": kind, "optional": false}, "payload": payload})
        } else {
            payload
        };
        let _ = serde_json::to_writer(&mut out, &value);
        return Ok(out);
    };
    // Key values as the row has them (coerced, unless the key is a pseudonym already),
    // in one spelling: a string's escapes and an object's spacing never move an entity
    // to another partition.
    let problem = |column: &str, reason: String| {
        RecordError::permanent(
            Stage::Transform,
            format!("{qualified} key column {column:?}: {reason}"),
        )
    };
    let mut cells: Vec<Cell<'_, '_>> = Vec::with_capacity(columns.len());
    for cell in columns {
        let plan = cell.plan;
        let raw = cell.value.raw();
        let coerced: Cow<'_, str> = match (plan.coerce, plan.hash) {
            (Some(coercion), false) => coercion.apply(raw).map_err(|reason| {
                problem(
                    cell.source,
                    format!("does not coerce to {}: {reason}", coercion.as_str()),
                )
            })?,
            _ => Cow::Borrowed(raw.get()),
        };
        let text = match Kind::of(&coerced) {
            Kind::Null => return Err(problem(cell.source, "is null once coerced".to_owned())),
            Kind::Number | Kind::Bool => coerced.into_owned(),
            // An object or array in its canonical text (members sorted, no spacing,
            // numbers as written: a tree would put them through f64); as it came when
            // nested too deep to read.
            Kind::Object | Kind::Array => {
                crate::json::canonical_text(&coerced).unwrap_or_else(|| coerced.into_owned())
            }
            Kind::String => coerce::string_of(&to_raw(coerced.into_owned()))
                .map(|text| Value::String(text.into_owned()).to_string())
                .map_err(|e| problem(cell.source, format!("is not a JSON string: {e}")))?,
        };
        cells.push(Cell {
            source: cell.source,
            name: cell.name,
            plan: cell.plan,
            value: Json::Owned(to_raw(text)),
        });
    }
    let fields = match schemas {
        true => {
            let mut fields = Vec::with_capacity(cells.len());
            for cell in &cells {
                let field = field_of(route, cell.source);
                check_int64(field, qualified, cell)?;
                fields.push((cell.name, field));
            }
            Some(fields)
        }
        false => None,
    };
    if let Some(fields) = &fields {
        let schema = json!({
            "type": "struct",
            "fields": fields.iter().map(|(name, f)| f.schema(name, false)).collect::<Vec<_>>(),
            "optional": false,
            "name": format!("{CONNECTOR}.{}.{}.Key", event.schema, event.table),
        });
        out.extend_from_slice(b"{\"schema\":");
        let _ = serde_json::to_writer(&mut out, &schema);
        out.extend_from_slice(b",\"payload\":");
    }
    write_row(Some(&cells), fields.as_deref(), &mut out);
    if fields.is_some() {
        out.push(b'}');
    }
    Ok(out)
}

/// Debezium's operation code.
fn op_code(op: Operation) -> &'static str {
    match op {
        Operation::Insert => "c",
        Operation::Update => "u",
        Operation::Delete => "d",
        Operation::Load => "r",
    }
}

fn micros(text: Option<&str>) -> Option<i64> {
    text.and_then(coerce::epoch_micros)
}

fn write_number(n: Option<i64>, out: &mut Vec<u8>) {
    match n {
        Some(n) => out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::super::{transform_doc, Routes, Transformed};

    const ROUTES: &str = r#"
[defaults]
envelope = "debezium"
[[route]]
table = "public.orders"
topic = "orders"
key = ["id"]
[route.types]
id = "int"
big = "int"
amount = "decimal"
"#;

    /// The (key, value) of the first message made from a DMS record of `op` with `data`.
    fn first(routes: &str, op: &str, data: &str) -> (Value, Option<Value>) {
        let doc = format!(
            r#"{{"data":{data},"metadata":{{"timestamp":"2024-01-01T00:00:00.123456Z","record-type":"data","operation":"{op}","schema-name":"public","table-name":"orders","transaction-id":9}}}}"#
        );
        let Ok(Transformed::Messages(messages)) = transform_doc(routes, "c", &doc) else {
            panic!("messages expected");
        };
        let message = &messages[0];
        let key = serde_json::from_slice(message.key.as_deref().expect("a key")).expect("JSON key");
        let value = message
            .value
            .as_deref()
            .map(|v| serde_json::from_slice(v).expect("JSON value"));
        (key, value)
    }

    /// An object key column keys by one spelling of its value: member order and
    /// spacing never move an entity to another partition, and every digit is kept.
    #[test]
    fn object_keys_have_one_spelling() {
        let routes = ROUTES.replace(r#"key = ["id"]"#, r#"key = ["doc"]"#);
        let key_of = |doc: &str| {
            let record = format!(
                r#"{{"data":{{"id":1,"doc":{doc}}},"metadata":{{"timestamp":"2024-01-01T00:00:00Z","record-type":"data","operation":"insert","schema-name":"public","table-name":"orders"}}}}"#
            );
            let Ok(Transformed::Messages(messages)) = transform_doc(&routes, "c", &record) else {
                panic!("messages expected");
            };
            messages[0].key.clone().expect("a key")
        };
        let one = key_of(r#"{"b":1,"a":12345678901234567890123}"#);
        assert_eq!(one, key_of(r#"{ "a": 12345678901234567890123, "b": 1 }"#));
        assert_ne!(one, key_of(r#"{"b":1,"a":12345678901234567890124}"#));
        let text = String::from_utf8_lossy(&one).into_owned();
        assert!(
            text.contains(r#""{\"a\":12345678901234567890123,\"b\":1}""#),
            "{text}"
        );
    }

    /// Untyped values are strings holding their text; typed ones have their Connect type.
    #[test]
    fn connect_types_follow_the_route() {
        let data = r#"{"id":"5","big":9223372036854775807,"amount":19.90,"qty":3,"ok":true,"doc":{"a":[1]},"note":"x"}"#;
        let (key, value) = first(ROUTES, "insert", data);
        let value = value.expect("an event");
        assert_eq!(key["payload"], serde_json::json!({"id": 5}));
        assert_eq!(key["schema"]["fields"][0]["type"], "int64");
        let after = &value["payload"]["after"];
        assert_eq!(after["id"], 5);
        assert_eq!(after["big"], 9_223_372_036_854_775_807_i64);
        assert_eq!(after["amount"], "19.90");
        assert_eq!(after["qty"], "3");
        assert_eq!(after["ok"], "true");
        assert_eq!(after["doc"], r#"{"a":[1]}"#);
        assert_eq!(after["note"], "x");
        let fields = &value["schema"]["fields"][1]["fields"];
        let type_of = |name: &str| {
            fields
                .as_array()
                .and_then(|f| f.iter().find(|f| f["field"] == name))
                .map(|f| (f["type"].clone(), f.get("name").cloned()))
                .expect("a field")
        };
        assert_eq!(type_of("id").0, "int64");
        assert_eq!(type_of("big").0, "int64");
        assert_eq!(type_of("qty").0, "string");
        assert_eq!(type_of("doc"), (Value::from("string"), None));
        assert_eq!(value["schema"]["name"], "dms.public.orders.Envelope");
        assert_eq!(value["payload"]["op"], "c");
        assert_eq!(
            value["payload"]["source"]["ts_us"],
            1_704_067_200_123_456_i64
        );
        assert_eq!(value["payload"]["source"]["txId"], "9");
        assert_eq!(value["payload"]["source"]["offset"], 7);
    }

    fn outcome(doc: &str) -> Result<Transformed, crate::error::RecordError> {
        transform_doc(ROUTES, "c", doc)
    }

    /// An `int` past 64 signed bits is a record error, never a wrapped int64; so is a key
    /// that is null once coerced.
    #[test]
    fn what_an_int64_cannot_hold_is_refused() {
        let meta = r#""metadata":{"record-type":"data","operation":"insert","schema-name":"public","table-name":"orders"}"#;
        let error = outcome(&format!(
            r#"{{"data":{{"id":1,"big":9223372036854775808}},{meta}}}"#
        ))
        .err()
        .map(|e| e.to_string());
        assert!(
            error
                .as_deref()
                .is_some_and(|e| e.contains("\"big\"") && e.contains("64 signed bits")),
            "{error:?}"
        );
        assert!(outcome(&format!(
            r#"{{"data":{{"id":1,"big":-9223372036854775808}},{meta}}}"#
        ))
        .is_ok());
    }

    /// Both images share the row struct; what an image lacks is Debezium's placeholder
    /// (strings) or null (other types), never left out.
    #[test]
    fn a_column_an_image_lacks_is_marked_unavailable() {
        let doc = r#"{"data":{"id":5,"status":"PAID"},"before-image":{"id":5,"status":"NEW","note":"x","big":7},"metadata":{"record-type":"data","operation":"update","schema-name":"public","table-name":"orders"}}"#;
        let Ok(Transformed::Messages(messages)) = outcome(doc) else {
            panic!("messages expected");
        };
        let value: Value =
            serde_json::from_slice(messages[0].value.as_deref().expect("a value")).expect("JSON");
        let after = &value["payload"]["after"];
        assert_eq!(after["note"], super::UNAVAILABLE);
        assert!(
            after["big"].is_null() && after.get("big").is_some(),
            "{after}"
        );
        assert_eq!(value["payload"]["before"]["status"], "NEW");
        assert_eq!(value["payload"]["before"]["big"], 7);
    }

    /// A key is written in one spelling: an escaped string keys the same entity.
    #[test]
    fn keys_have_one_spelling() {
        let routes = ROUTES.replace("key = [\"id\"]", "key = [\"code\"]");
        let key = |code: &str| {
            let doc = format!(
                r#"{{"data":{{"code":{code}}},"metadata":{{"record-type":"data","operation":"insert","schema-name":"public","table-name":"orders"}}}}"#
            );
            match transform_doc(&routes, "c", &doc) {
                Ok(Transformed::Messages(m)) => m[0].key.clone().expect("a key"),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(key(r#""A""#), key(r#""\u0041""#));
        assert!(String::from_utf8_lossy(&key(r#""A""#)).ends_with(r#""payload":{"code":"A"}}"#));
    }

    /// A delete's row is `before`; a load is `r` and a snapshot.
    #[test]
    fn delete_and_load() {
        let (_, value) = first(ROUTES, "delete", r#"{"id":5}"#);
        let payload = &value.expect("an event")["payload"];
        assert_eq!(payload["op"], "d");
        assert_eq!(payload["before"]["id"], 5);
        assert!(payload["after"].is_null());
        let (_, value) = first(ROUTES, "load", r#"{"id":6}"#);
        let payload = &value.expect("an event")["payload"];
        assert_eq!(payload["op"], "r");
        assert_eq!(payload["source"]["snapshot"], "true");
    }

    /// Without schemas: the payload alone, values as they came, the key struct bare.
    #[test]
    fn without_schemas_values_are_kept_as_they_came() {
        let routes = ROUTES.replace(
            "envelope = \"debezium\"",
            "envelope = \"debezium\"\nschemas = false",
        );
        let doc = r#"{"data":{"id":5,"price":19.90,"n":123456789012345678901234567890},"metadata":{"timestamp":"2024-01-01T00:00:00Z","record-type":"data","operation":"insert","schema-name":"public","table-name":"orders"}}"#;
        let Ok(Transformed::Messages(messages)) = transform_doc(&routes, "c", doc) else {
            panic!("messages expected");
        };
        let value = String::from_utf8(messages[0].value.clone().expect("a value")).expect("UTF-8");
        assert!(value.starts_with(r#"{"before":null,"after":{"id":5,"n":123456789012345678901234567890,"price":19.90}"#), "{value}");
        assert_eq!(messages[0].key.as_deref(), Some(&br#"{"id":5}"#[..]));
    }

    /// `schemas` is for the Debezium envelope only.
    #[test]
    fn schemas_needs_the_debezium_envelope() {
        let Err(error) = Routes::parse("[defaults]\nschemas = false\n", "test") else {
            panic!("refused");
        };
        assert!(error.to_string().contains("debezium"), "{error}");
    }
}
