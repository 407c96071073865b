//! The outbox router (`outbox = { ... }` on a route), with the semantics and defaults of
//! Debezium's outbox `EventRouter`: the application writes its event as a row of an
//! outbox table in the same database transaction as the business change; DMS captures
//! the insert; the relay publishes the event the row holds.
//!
//! - The row's `id` is the `id` header, its `aggregateid` the Kafka key, its `payload`
//!   the value (a JSON value as written, byte for byte; with `expand_json` a string
//!   holding a JSON object or array is that JSON itself), and the topic is routed by its
//!   `aggregatetype` (`outbox.event.{route}` by default), made a name Kafka accepts.
//! - `fields` places further columns in headers or in an envelope
//!   (`{"payload": ..., alias: ...}`).
//! - Inserts and full-load rows are events. Deletes are dropped (cleaning the outbox
//!   publishes nothing); updates are skipped and counted (`on_update = "warn"`) or
//!   refused as poison (`"refuse"`). A null or blank payload is a tombstone with
//!   `tombstone_on_empty`, else a null value (a null payload), as in Debezium.
//! - Unlike Debezium, a row without an id, key or routing value is a record error
//!   rather than a message without one: per-aggregate order needs the key.

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::value::RawValue;

use super::coerce::{self, Kind};
use super::routes::{OnUpdate, Outbox, Placement, Route};
use super::{column_value, scalar_text, EventIds, Headers, OutMessage, SkipReason, Transformed};
use crate::dms::{ChangeEvent, Operation, Row};
use crate::error::{RecordError, Stage};

/// The messages of one change of an outbox table.
pub(super) fn messages(
    route: &Route,
    outbox: &Outbox,
    event: &ChangeEvent<'_>,
    qualified: &str,
    op: Operation,
    data: &Row<'_>,
    headers: &Headers<'_>,
) -> Result<Transformed, RecordError> {
    let ids = EventIds::new(headers.pos);
    match op {
        Operation::Delete => return Ok(Transformed::Skipped(SkipReason::DeleteDropped)),
        Operation::Update => {
            return match outbox.on_update {
                OnUpdate::Warn => Ok(Transformed::Skipped(SkipReason::OutboxUpdate)),
                OnUpdate::Refuse => Err(RecordError::permanent(
                    Stage::Transform,
                    format!(
                        "{qualified} is an outbox (route {:?}): an update of it is refused (on_update = \"refuse\")",
                        route.table
                    ),
                )),
            }
        }
        Operation::Insert | Operation::Load => {}
    }
    let problem = |column: &str, what: &str| {
        RecordError::permanent(
            Stage::Transform,
            format!(
                "{qualified} outbox row: the {what} column {column:?} is missing, null or blank (route {:?})",
                route.table
            ),
        )
    };
    let present = |column: &str| {
        column_value(route, data, column).filter(|v| Kind::of(v.get()) != Kind::Null)
    };
    let id = present(&outbox.id).ok_or_else(|| problem(&outbox.id, "event id"))?;
    let key = present(&outbox.key).ok_or_else(|| problem(&outbox.key, "key"))?;
    let routed = present(&outbox.route_by).ok_or_else(|| problem(&outbox.route_by, "route_by"))?;
    // A column the row lacks is a mistake (a misspelt name would make every event
    // null); a null value is the application's.
    let column = |name: &str| {
        column_value(route, data, name).ok_or_else(|| {
            RecordError::permanent(
                Stage::Transform,
                format!(
                    "{qualified} outbox row has no column {name:?} (route {:?})",
                    route.table
                ),
            )
        })
    };
    let payload = column(&outbox.payload)?;
    let empty = match Kind::of(payload.get()) {
        Kind::Null => true,
        // Java's trim, as Debezium's: every character up to U+0020.
        Kind::String => {
            coerce::string_of(payload).is_ok_and(|s| s.trim_matches(|c| c <= ' ').is_empty())
        }
        _ => false,
    };
    let payload_json: Option<Cow<'_, str>> =
        (Kind::of(payload.get()) != Kind::Null).then(|| expanded(outbox, payload));
    let mut placed = Vec::with_capacity(outbox.fields.len());
    for field in &outbox.fields {
        placed.push((field, column(&field.column)?));
    }
    let envelope: Vec<_> = placed
        .iter()
        .filter(|(f, _)| f.placement == Placement::Envelope)
        .collect();
    let value = if empty && outbox.tombstone_on_empty {
        None
    } else if envelope.is_empty() {
        payload_json.map(|p| p.into_owned().into_bytes())
    } else {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"{\"payload\":");
        out.extend_from_slice(payload_json.as_deref().unwrap_or("null").as_bytes());
        for (field, v) in envelope {
            out.push(b',');
            // Writing a string into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut out, &field.alias);
            out.push(b':');
            out.extend_from_slice(v.get().as_bytes());
        }
        out.push(b'}');
        Some(out)
    };
    let (id_text, key_text, topic_value) = (scalar_text(id), scalar_text(key), scalar_text(routed));
    for (text, column, what) in [
        (&id_text, &outbox.id, "event id"),
        (&key_text, &outbox.key, "key"),
        (&topic_value, &outbox.route_by, "route_by"),
    ] {
        if text.trim().is_empty() {
            return Err(problem(column, what));
        }
    }
    let mut messages = Vec::with_capacity(route.topics.len());
    for template in &route.topics {
        let topic: Arc<str> = template.render_outbox(&event.schema, &event.table, &topic_value);
        if topic.starts_with("__") {
            // Kafka's own topics (`__consumer_offsets`, `__transaction_state`).
            return Err(RecordError::permanent(
                Stage::Transform,
                format!(
                    "{qualified} outbox row: the route_by column {:?} names an internal topic ({topic:?}) (route {:?})",
                    outbox.route_by, route.table
                ),
            ));
        }
        let mut message: OutMessage = headers.message(
            topic,
            key_text.as_bytes(),
            value.clone(),
            &ids.id(messages.len()),
        );
        message.headers.push("id", id_text.as_bytes());
        for (field, v) in placed
            .iter()
            .filter(|(f, _)| f.placement == Placement::Header)
        {
            // A null column has no header (a Kafka header value here is bytes).
            if Kind::of(v.get()) != Kind::Null {
                message
                    .headers
                    .push(field.alias.clone(), scalar_text(v).as_bytes());
            }
        }
        messages.push(message);
    }
    Ok(Transformed::Messages(messages))
}

/// The payload as the value's JSON: as written, or with `expand_json` the JSON a string
/// holds when it holds an object or an array (else the string, as Debezium keeps it).
fn expanded<'a>(outbox: &Outbox, payload: &'a RawValue) -> Cow<'a, str> {
    if outbox.expand_json && Kind::of(payload.get()) == Kind::String {
        if let Ok(text) = coerce::string_of(payload) {
            // As Debezium: only a string that starts with the object or array.
            // A lone surrogate escape inside is no JSON a reader takes: kept as a string.
            if (text.starts_with('{') || text.starts_with('['))
                && serde_json::from_str::<&RawValue>(&text)
                    .is_ok_and(|inner| crate::json::check_unicode_escapes(inner.get()).is_ok())
            {
                return Cow::Owned(text.into_owned());
            }
        }
    }
    Cow::Borrowed(payload.get())
}

#[cfg(test)]
mod tests {
    use super::super::{transform_doc, OutMessage, Routes, SkipReason, Transformed};

    fn transform(outbox: &str, op: &str, data: &str) -> Result<Transformed, String> {
        let routes = format!("[[route]]\ntable = \"public.outbox\"\noutbox = {outbox}\n");
        let doc = format!(
            r#"{{"data":{data},"metadata":{{"record-type":"data","operation":"{op}","schema-name":"public","table-name":"outbox"}}}}"#
        );
        transform_doc(&routes, "c", &doc).map_err(|e| e.to_string())
    }

    fn one(outbox: &str, data: &str) -> OutMessage {
        match transform(outbox, "insert", data) {
            Ok(Transformed::Messages(mut m)) if m.len() == 1 => m.remove(0),
            other => panic!("{other:?}"),
        }
    }

    const ROW: &str = r#"{"id":"e1","aggregatetype":"order","aggregateid":46,"type":"OrderPlaced","payload":"{\"n\": 19.90}"}"#;

    /// Debezium's defaults: the id header, the key, the payload as written (a JSON
    /// string stays one), the topic routed by the aggregate type.
    #[test]
    fn a_row_becomes_the_event_it_holds() {
        let message = one("{}", ROW);
        assert_eq!(&*message.topic, "outbox.event.order");
        assert_eq!(message.key.as_deref(), Some(&b"46"[..]));
        assert_eq!(message.header("id"), Some(&b"e1"[..]));
        assert_eq!(message.value.as_deref(), Some(&br#""{\"n\": 19.90}""#[..]));
    }

    /// expand_json: the JSON the string holds, byte for byte; fields in headers and the
    /// envelope; a name Kafka refuses made legal.
    #[test]
    fn expansion_fields_and_topic() {
        let message = one("{ expand_json = true }", ROW);
        assert_eq!(message.value.as_deref(), Some(&br#"{"n": 19.90}"#[..]));
        let message = one(
            r#"{ fields = ["type:header:eventType", "aggregatetype:envelope:kind"] }"#,
            ROW,
        );
        assert_eq!(message.header("eventType"), Some(&b"OrderPlaced"[..]));
        assert_eq!(
            message.value.as_deref(),
            Some(&br#"{"payload":"{\"n\": 19.90}","kind":"order"}"#[..])
        );
        let message = one("{}", &ROW.replace("\"order\"", "\"pay#card\""));
        assert_eq!(&*message.topic, "outbox.event.pay_card");
        // A payload whose JSON holds a lone surrogate is no JSON a reader takes: the
        // string stays a string, which is valid as it came.
        let lone = ROW.replace(r#""{\"n\": 19.90}""#, r#""{\"n\": \"\\ud800\"}""#);
        let message = one("{ expand_json = true }", &lone);
        let value = message.value.expect("a value");
        assert_eq!(value, br#""{\"n\": \"\\ud800\"}""#);
        serde_json::from_slice::<serde_json::Value>(&value).expect("valid JSON");
    }

    /// A blank payload is a tombstone only with tombstone_on_empty.
    #[test]
    fn blank_payloads() {
        let blank = ROW.replace(r#""{\"n\": 19.90}""#, r#""  ""#);
        assert_eq!(one("{}", &blank).value.as_deref(), Some(&br#""  ""#[..]));
        assert_eq!(one("{ tombstone_on_empty = true }", &blank).value, None);
    }

    /// Deletes are dropped, updates skipped or refused, a row without key is poison.
    #[test]
    fn deletes_updates_and_keyless_rows() {
        assert_eq!(
            transform("{}", "delete", ROW),
            Ok(Transformed::Skipped(SkipReason::DeleteDropped))
        );
        assert_eq!(
            transform("{}", "update", ROW),
            Ok(Transformed::Skipped(SkipReason::OutboxUpdate))
        );
        assert!(transform("{ on_update = \"refuse\" }", "update", ROW)
            .is_err_and(|e| e.contains("refuse")));
        assert!(transform("{}", "insert", &ROW.replace("46", "null"))
            .is_err_and(|e| e.contains("\"aggregateid\"")));
        // Blank is as good as missing, for the routing column, the key and the id.
        for (blank, column) in [
            (ROW.replace("\"order\"", "\" \""), "aggregatetype"),
            (ROW.replace("46", "\"\""), "aggregateid"),
            (ROW.replace("\"e1\"", "\"  \""), "id"),
        ] {
            assert!(
                transform("{}", "insert", &blank)
                    .is_err_and(|e| e.contains(&format!("{column:?} is missing, null or blank"))),
                "{blank}"
            );
        }
        let internal = ROW.replace("\"order\"", "\"_consumer_offsets\"");
        assert!(transform("{}\ntopic = \"_{route}\"", "insert", &internal)
            .is_err_and(|e| e.contains("names an internal topic")));
        // A misspelt column is an error, never a null event.
        assert!(transform("{ payload = \"paylod\" }", "insert", ROW)
            .is_err_and(|e| e.contains("no column \"paylod\"")));
        assert!(transform(r#"{ fields = ["tipe:header"] }"#, "insert", ROW)
            .is_err_and(|e| e.contains("no column \"tipe\"")));
    }

    /// The routes file: mapping options and `{route}` elsewhere are refused.
    #[test]
    fn what_an_outbox_route_refuses() {
        for (text, says) in [
            (
                "[[route]]\ntable = \"a.b\"\noutbox = {}\nkey = [\"id\"]\n",
                "`key`",
            ),
            (
                "[[route]]\ntable = \"a.b\"\noutbox = {}\nmask = [\"x\"]\n",
                "`mask`",
            ),
            (
                "[[route]]\ntable = \"a.b\"\ntopic = \"t.{route}\"\n",
                "outbox routes",
            ),
            (
                "[[route]]\ntable = \"a.b\"\noutbox = { fields = [\"x\"] }\n",
                "column:placement",
            ),
            (
                "[[route]]\ntable = \"a.b\"\noutbox = { fields = [\"x:value\"] }\n",
                "placement",
            ),
            (
                "[[route]]\ntable = \"a.b\"\noutbox = { colour = 1 }\n",
                "colour",
            ),
            ("[[route]]\ntable = \"a.b\"\noutbox = {}\ntopic = \"{route}\"\n", "any topic"),
            (
                "[defaults]\ndlq_topic = \"out.dead\"\n[[route]]\ntable = \"a.b\"\noutbox = {}\ntopic = \"out.{route}\"\n",
                "\"out.dead\"",
            ),
            ("[defaults]\ntopic = \"x.{route}\"\n", "outbox routes"),
            ("[defaults]\nschema_changes_topic = \"x.{route}\"\n", "outbox routes"),
            (
                "[[route]]\ntable = \"a.b\"\noutbox = { fields = [\"a:header:h\", \"b:header:h\"] }\n",
                "twice",
            ),
            ("[[route]]\ntable = \"a.b\"\noutbox = { fields = [\"a:header:id\"] }\n", "relay's own"),
        ] {
            let Err(error) = Routes::parse(text, "test") else {
                panic!("{text} accepted");
            };
            assert!(error.to_string().contains(says), "{text}: {error}");
        }
    }
}
