//! Published contracts: per output topic, a JSON Schema (draft 2020-12) of the event
//! values the routes produce there (`cdc-relay schema routes.toml`).
//!
//! The schema says what the relay guarantees, no more: the envelope's fields, the
//! operations the topic carries, and per column what the route declares (its coercion, a
//! mask, a pseudonym, a length limit, that it is left out). Columns the route does not
//! name are whatever DMS sent, so a route without `include` admits further columns. Any
//! data column may be `null` (DMS sends nulls); key columns never are. A tombstone (a null
//! value) is not an event and is not described: the schema is for values.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::coerce::Coercion;
use super::routes::{
    ContentMode, DeletePolicy, Envelope, Missing, Outbox, Placement, Route, Routes,
};
use crate::dms::Operation;

/// The JSON Schema dialect of every schema here.
pub const DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";

/// Output topic (as the routes write it: `{schema}` and `{table}` are placeholders) ->
/// the JSON Schema of its values. Topics written by several routes (or also by the
/// unrouted default) get `anyOf` of each route's events.
pub fn schemas(routes: &Routes) -> BTreeMap<String, Value> {
    let mut by_topic: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let writers = routes.routes.iter().chain(routes.unrouted_route.as_ref());
    for route in writers {
        let Some(event) = route_event(route, routes) else {
            continue;
        };
        for topic in &route.topics {
            let events = by_topic.entry(topic.text()).or_default();
            if !events.contains(&event) {
                events.push(event.clone());
            }
        }
    }
    if let Some(topic) = &routes.schema_changes_topic {
        by_topic
            .entry(topic.text())
            .or_default()
            .push(schema_change_event());
    }
    let mut out: BTreeMap<String, Value> = by_topic
        .into_iter()
        .map(|(topic, mut events)| {
            let mut schema = if events.len() == 1 {
                events.remove(0)
            } else {
                json!({"anyOf": events})
            };
            if let Value::Object(map) = &mut schema {
                let mut head = Map::new();
                head.insert("$schema".to_owned(), json!(DIALECT));
                head.insert(
                    "title".to_owned(),
                    json!(format!("cdc-relay events on {topic}")),
                );
                head.append(map);
                *map = head;
            }
            (topic, schema)
        })
        .collect();
    if let Some(dlq) = &routes.dlq_topic {
        out.entry(dlq.clone()).or_insert_with(|| {
            json!({
                "$schema": DIALECT,
                "title": format!("cdc-relay dead letters on {dlq}"),
                "description": "The source record's value (redacted, original or withheld: header relay-dead-letter-value), not an event; why it is poison is in the headers relay-error and relay-error-stage."
            })
        });
    }
    out
}

/// The events one route writes, or `None` when it writes only tombstones.
fn route_event(route: &Route, routes: &Routes) -> Option<Value> {
    if let Some(outbox) = &route.outbox {
        return Some(outbox_event(outbox));
    }
    let (envelope, schemas, mode) = (routes.envelope, routes.connect_schemas, routes.content_mode);
    let ops: Vec<&str> = route
        .operations
        .iter()
        .filter(|op| {
            **op != Operation::Delete
                || matches!(
                    route.delete,
                    DeletePolicy::Event | DeletePolicy::EventAndTombstone
                )
        })
        .map(|op| op.as_str())
        .collect();
    if ops.is_empty() {
        return None;
    }
    Some(match envelope {
        Envelope::Relay => relay_event(route, &ops),
        Envelope::Flat => flat_event(&ops, row_schema(route, true)),
        Envelope::Debezium => debezium_event(route, &ops, schemas),
        Envelope::CloudEvents => cloudevent(relay_event(route, &ops), mode),
    })
}

fn relay_event(route: &Route, ops: &[&str]) -> Value {
    let key = match &route.key {
        None => json!({"type": "null"}),
        Some(columns) => {
            let properties: Map<String, Value> = columns
                .iter()
                .map(|c| {
                    let plan = route.plan(c);
                    let value = if plan.hash {
                        pseudonym()
                    } else {
                        json!({"not": {"type": "null"}})
                    };
                    (route.output_name(c).to_owned(), value)
                })
                .collect();
            if route.ignore_case {
                // Named as the source spells them: any case, so none can be required.
                let patterns: Map<String, Value> = properties
                    .into_iter()
                    .map(|(name, schema)| (any_case(&name), schema))
                    .collect();
                json!({"type": "object", "patternProperties": patterns,
                    "minProperties": columns.len(), "additionalProperties": false})
            } else {
                let required: Vec<&String> = properties.keys().collect();
                json!({"type": "object", "properties": properties, "required": required,
                    "additionalProperties": false})
            }
        }
    };
    let names = json!({"type": "array", "items": {"type": "string"}, "uniqueItems": true});
    json!({
        "type": "object",
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "op": {"enum": ops},
            "source": source_schema(),
            "key": key,
            "data": row_schema(route, true),
            // `missing = "null"` fills `data` only: a before-image lacks what DMS left out.
            "before": {"anyOf": [{"type": "null"}, row_schema(route, false)]},
            "changed": names,
            "unknown": names,
        },
        "required": ["id", "op", "source", "key", "data", "before"],
        "additionalProperties": false,
    })
}

/// The Debezium envelope: Debezium's `op` codes for the operations, the row (after, and
/// before: for a delete, the row deleted), the `source` block; with schemas, inside
/// Kafka Connect's `{"schema", "payload"}`. The row's values are described by the
/// payload, as in the relay envelope; their Connect types by the embedded schema.
fn debezium_event(route: &Route, ops: &[&str], schemas: bool) -> Value {
    let codes: Vec<&str> = ops
        .iter()
        .map(|op| match *op {
            "insert" => "c",
            "update" => "u",
            "delete" => "d",
            _ => "r",
        })
        .collect();
    let image = |filled: bool| {
        let mut row = row_schema(route, filled);
        if schemas {
            unavailable_allowed(&mut row);
        }
        nullable(row)
    };
    let (row, before) = (image(true), image(false));
    let long = json!({"type": ["integer", "null"]});
    let payload = json!({
        "type": "object",
        "properties": {
            "before": before,
            "after": row,
            "source": {
                "type": "object",
                "properties": {
                    "version": {"type": "string"},
                    "connector": {"const": "dms"},
                    "name": {"type": "string"},
                    "ts_ms": long,
                    "ts_us": long,
                    "snapshot": {"enum": ["true", "false"]},
                    "db": {"type": "string"},
                    "schema": {"type": "string"},
                    "table": {"type": "string"},
                    "txId": {"type": ["string", "null"]},
                    "stream_position": {"type": ["string", "null"]},
                    "topic": {"type": "string"},
                    "partition": {"type": "integer"},
                    "offset": {"type": "integer"},
                },
                "required": ["version", "connector", "name", "ts_ms", "ts_us", "snapshot", "db",
                    "schema", "table", "txId", "stream_position", "topic", "partition", "offset"],
                "additionalProperties": false,
            },
            "op": {"enum": codes},
            "ts_ms": long,
            "ts_us": long,
            "transaction": {"anyOf": [{"type": "null"}, {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "total_order": long,
                    "data_collection_order": long,
                },
                "required": ["id", "total_order", "data_collection_order"],
                "additionalProperties": false,
            }]},
        },
        "required": ["before", "after", "source", "op", "ts_ms", "ts_us", "transaction"],
        "additionalProperties": false,
    });
    if !schemas {
        return payload;
    }
    json!({
        "type": "object",
        "properties": {
            "schema": {"type": "object", "properties": {"type": {"const": "struct"}}, "required": ["type", "fields"]},
            "payload": payload,
        },
        "required": ["schema", "payload"],
        "additionalProperties": false,
    })
}

/// An outbox route's values: the payload column's value, as the application wrote it
/// (any JSON); in `{"payload", ...}` when fields are placed in the envelope.
fn outbox_event(outbox: &Outbox) -> Value {
    let envelope: Vec<&str> = outbox
        .fields
        .iter()
        .filter(|f| f.placement == Placement::Envelope)
        .map(|f| f.alias.as_str())
        .collect();
    let description = format!(
        "The event an outbox row holds: the value of its {:?} column, as the application wrote it",
        outbox.payload
    );
    if envelope.is_empty() {
        return json!({"description": description});
    }
    let mut properties = Map::new();
    properties.insert("payload".to_owned(), json!({"description": description}));
    for alias in &envelope {
        properties.insert((*alias).to_owned(), json!({}));
    }
    let mut required = vec!["payload"];
    required.extend(envelope);
    json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
}

/// A CloudEvent whose data is the relay envelope: in binary mode the value is the data
/// (the attributes are headers), in structured mode the event.
fn cloudevent(data: Value, mode: ContentMode) -> Value {
    if mode == ContentMode::Binary {
        return data;
    }
    let text = json!({"type": "string", "minLength": 1});
    json!({
        "type": "object",
        "properties": {
            "specversion": {"const": "1.0"},
            "id": {"type": "string", "format": "uuid"},
            "source": {"type": "string", "format": "uri-reference"},
            "type": text,
            "time": {"type": "string", "format": "date-time"},
            "subject": text,
            "datacontenttype": {"const": "application/json"},
            "partitionkey": text,
            "data": data,
        },
        "required": ["specversion", "id", "source", "type", "datacontenttype", "data"],
        "additionalProperties": false,
    })
}

/// With Connect schemas both images carry every column of the row struct, and a column
/// an image lacks is Debezium's placeholder: any declared column may hold it.
fn unavailable_allowed(row: &mut Value) {
    for key in ["properties", "patternProperties"] {
        let Some(columns) = row.get_mut(key).and_then(Value::as_object_mut) else {
            continue;
        };
        for schema in columns.values_mut() {
            if schema.is_object() {
                *schema =
                    json!({"anyOf": [schema.take(), {"const": super::debezium::UNAVAILABLE}]});
            }
        }
    }
}

fn flat_event(ops: &[&str], mut row: Value) -> Value {
    let Some(map) = row.as_object_mut() else {
        return row;
    };
    if let Some(properties) = map
        .entry("properties")
        .or_insert_with(|| json!({}))
        .as_object_mut()
    {
        properties.insert("__op".to_owned(), json!({"enum": ops}));
        properties.insert("__table".to_owned(), json!({"type": "string"}));
        properties.insert(
            "__source_ts".to_owned(),
            json!({"type": ["string", "null"]}),
        );
    }
    if let Some(required) = map
        .entry("required")
        .or_insert_with(|| json!([]))
        .as_array_mut()
    {
        required.extend([json!("__op"), json!("__table"), json!("__source_ts")]);
    }
    row
}

/// The mapped row: per column the route names, what it declares; `include` closes it.
/// `filled`: `missing = "null"` applies (the row, not the before-image).
fn row_schema(route: &Route, filled: bool) -> Value {
    let mut properties = Map::new();
    let mut named: Vec<&String> = route.types.keys().collect();
    named.extend(&route.mask);
    named.extend(&route.hash);
    named.extend(route.truncate.keys());
    named.extend(route.rename.keys());
    named.extend(route.include.iter().flatten());
    for column in named {
        let plan = route.plan(column);
        if !plan.keep {
            continue;
        }
        let mut value = if plan.mask {
            json!({"enum": [super::MASK, null]})
        } else if plan.hash {
            json!({"anyOf": [pseudonym(), {"type": "null"}]})
        } else {
            nullable(plan.coerce.map_or_else(|| json!({}), coerced))
        };
        if let (Some(max), Some(map)) = (plan.truncate, value.as_object_mut()) {
            if !plan.hash && !plan.mask {
                // maxLength applies to strings only: other values pass unchanged.
                map.insert("maxLength".to_owned(), json!(max));
            }
        }
        properties.insert(route.output_name(column).to_owned(), value);
    }
    // Left out: excluded columns, and the source names of renamed ones, unless another
    // column takes that name.
    let taken: Vec<String> = properties.keys().cloned().collect();
    let mut gone: Vec<&String> = route.exclude.iter().collect();
    gone.extend(route.rename.keys());
    for column in gone {
        if !taken.contains(column) {
            properties.insert(column.clone(), Value::Bool(false));
        }
    }
    if route.ignore_case {
        // The output keeps the source's case (`EMAIL`): name each column by a pattern
        // that matches it in any ASCII case. Which case arrives is not known, so none
        // is required.
        let patterns: Map<String, Value> = properties
            .into_iter()
            .map(|(name, schema)| (any_case(&name), schema))
            .collect();
        return json!({
            "type": "object",
            "patternProperties": patterns,
            "additionalProperties": route.include.is_none(),
        });
    }
    let required: Vec<Value> = match (&route.include, route.missing) {
        (Some(include), Missing::Null) if filled => include
            .iter()
            .map(|c| json!(route.output_name(c)))
            .collect(),
        _ => Vec::new(),
    };
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": route.include.is_none(),
    })
}

/// An ECMA-262 pattern matching exactly `name` in any ASCII case (`id` -> `^[iI][dD]$`).
/// Only the syntax characters are escaped: in Unicode mode (Ajv's default) an escaped
/// `#` or `-` outside a class is an error that stops the whole schema compiling.
fn any_case(name: &str) -> String {
    let mut pattern = String::from("^");
    for c in name.chars() {
        if c.is_ascii_alphabetic() {
            pattern.push('[');
            pattern.push(c.to_ascii_lowercase());
            pattern.push(c.to_ascii_uppercase());
            pattern.push(']');
        } else if "^$\\.*+?()[]{}|/".contains(c) {
            pattern.push('\\');
            pattern.push(c);
        } else {
            pattern.push(c);
        }
    }
    pattern.push('$');
    pattern
}

/// What a coercion's output is.
fn coerced(coercion: Coercion) -> Value {
    match coercion {
        Coercion::Int => json!({"type": "integer"}),
        Coercion::Float => json!({"type": "number"}),
        Coercion::Decimal => json!({"type": "string", "pattern": "^-?[0-9]"}),
        Coercion::Bool => json!({"type": "boolean"}),
        Coercion::Timestamp => json!({"type": "string", "format": "date-time"}),
        Coercion::Json => json!({}),
        Coercion::Hex => json!({"type": "string", "contentEncoding": "base64"}),
    }
}

fn nullable(schema: Value) -> Value {
    match schema.as_object() {
        Some(map) if map.is_empty() => schema,
        _ => json!({"anyOf": [schema, {"type": "null"}]}),
    }
}

fn pseudonym() -> Value {
    json!({"type": "string", "pattern": "^[0-9a-f]{64}$",
        "description": "HMAC-SHA-256 pseudonym (hex) under the relay's hash key"})
}

fn source_schema() -> Value {
    let text = json!({"type": ["string", "null"]});
    let id = json!({"type": ["number", "string", "null"]});
    json!({
        "type": "object",
        "properties": {
            "schema": {"type": "string"},
            "table": {"type": "string"},
            "topic": {"type": "string"},
            "partition": {"type": "integer"},
            "offset": {"type": "integer"},
            "transaction_id": id,
            "commit_timestamp": text,
            "timestamp": text,
            "transaction_record_id": id,
            "prev_transaction_id": id,
            "prev_transaction_record_id": id,
            "stream_position": {"type": "string"},
        },
        "required": ["schema", "table", "topic", "partition", "offset", "transaction_id",
            "commit_timestamp", "timestamp"],
        "additionalProperties": false,
    })
}

fn schema_change_event() -> Value {
    json!({
        "type": "object",
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "op": {"const": super::SCHEMA_CHANGE},
            "operation": {"type": "string"},
            "schema": {"type": "string"},
            "table": {"type": "string"},
            "columns": {"type": ["object", "null"]},
            "primary_key": {"type": ["array", "null"]},
            "source": source_schema(),
        },
        "required": ["id", "op", "operation", "schema", "table", "columns", "primary_key", "source"],
        "additionalProperties": false,
    })
}

#[cfg(test)]
mod tests {
    use super::any_case;

    /// Oracle's `#` and `$`, and every other punctuation: syntax characters escaped,
    /// the rest as they are (what ECMA-262's Unicode mode accepts).
    #[test]
    fn any_case_patterns_are_ecma_unicode_patterns() {
        assert_eq!(any_case("EMP#"), "^[eE][mM][pP]#$");
        assert_eq!(any_case("a.b$c-d_1"), r"^[aA]\.[bB]\$[cC]-[dD]_1$");
        assert_eq!(
            any_case("^$\\.*+?()[]{}|/#-!"),
            r"^\^\$\\\.\*\+\?\(\)\[\]\{\}\|\/#-!$"
        );
    }
}
