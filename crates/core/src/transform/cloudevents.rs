//! The CloudEvents envelope (`envelope = "cloudevents"`): each change as a CloudEvent
//! 1.0 under its Kafka protocol binding, the relay envelope as its data
//! (`application/json`), in the content mode the routes choose:
//!
//! - `structured` (the default): the whole event as `application/cloudevents+json` in
//!   the value (`content-type` header says so);
//! - `binary`: the attributes in `ce_*` headers, the data as the value, `content-type`
//!   `application/json`.
//!
//! Attributes: `id` the event id (the `relay-event-id` header), `source`
//! `{cluster}/{schema}/{table}` (the cluster: the MSK cluster's ARN, else `/` and the
//! source's bootstrap servers, else `/cdc-relay`; names percent-encoded), `type`
//! `dms.{schema}.{table}.{op}` (`op`: load, insert, update, delete), `time` the commit
//! time (else when DMS read the change), `subject` the entity key (routes with `key`
//! columns), and the `partitionkey` extension the Kafka key (in binary mode the key
//! itself carries it, as the binding maps it); an empty key gives neither. A tombstone
//! stays a tombstone: it is not an event.

use std::borrow::Cow;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Serialize;
use serde_json::value::RawValue;

use super::coerce;
use crate::dms::{ChangeEvent, Operation};
use crate::error::{RecordError, Stage};
use crate::source::SourcePosition;

/// The `content-type` of a structured-mode message.
pub const STRUCTURED: &str = "application/cloudevents+json; charset=UTF-8";
/// The `datacontenttype` of every event: the relay envelope is JSON.
pub const DATA_CONTENT_TYPE: &str = "application/json";

/// A name segment of `source`: everything but unreserved characters percent-encoded.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// An ARN keeps its `:` and `/`.
const ARN: &AsciiSet = &SEGMENT.remove(b':').remove(b'/');

/// The context attributes of one event.
#[derive(Serialize)]
pub(super) struct Attributes<'c> {
    specversion: &'static str,
    id: &'c str,
    source: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'c str>,
    datacontenttype: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    partitionkey: Option<&'c str>,
}

impl<'c> Attributes<'c> {
    pub fn new(
        pos: SourcePosition<'_>,
        event: &ChangeEvent<'_>,
        op: Operation,
        key: &'c [u8],
        entity: bool,
        id: &'c str,
    ) -> Attributes<'c> {
        let metadata = &event.metadata;
        let time = metadata
            .commit_timestamp
            .as_deref()
            .and_then(coerce::rfc3339)
            .or_else(|| metadata.timestamp.as_deref().and_then(coerce::rfc3339));
        // An empty attribute is not allowed: no key, no subject or partition key.
        let key = std::str::from_utf8(key).ok().filter(|k| !k.is_empty());
        Attributes {
            specversion: "1.0",
            id,
            source: source(pos.cluster, &event.schema, &event.table),
            kind: format!("dms.{}.{}.{}", event.schema, event.table, op.as_str()),
            time,
            // The entity: the route's key columns (DMS's key names a table, not a row).
            subject: key.filter(|_| entity),
            datacontenttype: DATA_CONTENT_TYPE,
            partitionkey: key,
        }
    }

    /// Structured mode: the event with `data`, the relay envelope's JSON, inside.
    pub fn structured(&self, data: &[u8]) -> Result<Vec<u8>, RecordError> {
        #[derive(Serialize)]
        struct Event<'a, 'c> {
            #[serde(flatten)]
            attributes: &'a Attributes<'c>,
            data: &'a RawValue,
        }
        // The relay envelope is JSON the relay wrote: anything else is a bug, reported.
        let data = std::str::from_utf8(data)
            .ok()
            .and_then(|text| serde_json::from_str::<&RawValue>(text).ok())
            .ok_or_else(|| {
                RecordError::permanent(Stage::Transform, "the event's data is not JSON")
            })?;
        let mut out = Vec::with_capacity(data.get().len() + 512);
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(
            &mut out,
            &Event {
                attributes: self,
                data,
            },
        );
        Ok(out)
    }

    /// Binary mode: the attributes as `ce_*` headers and the data's `content-type` (the
    /// partition key is the message key).
    pub fn headers(&self) -> Vec<(Cow<'static, str>, Vec<u8>)> {
        let mut headers: Vec<(Cow<'static, str>, Vec<u8>)> = vec![
            (
                "ce_specversion".into(),
                self.specversion.as_bytes().to_vec(),
            ),
            ("ce_id".into(), self.id.as_bytes().to_vec()),
            ("ce_source".into(), self.source.as_bytes().to_vec()),
            ("ce_type".into(), self.kind.as_bytes().to_vec()),
        ];
        if let Some(time) = &self.time {
            headers.push(("ce_time".into(), time.as_bytes().to_vec()));
        }
        if let Some(subject) = self.subject {
            headers.push(("ce_subject".into(), subject.as_bytes().to_vec()));
        }
        headers.push(("content-type".into(), DATA_CONTENT_TYPE.as_bytes().to_vec()));
        headers
    }
}

/// `source`: the cluster, then the schema and the table.
fn source(cluster: &str, schema: &str, table: &str) -> String {
    let origin = if cluster.starts_with("arn:") {
        utf8_percent_encode(cluster, ARN).to_string()
    } else if cluster.is_empty() {
        "/cdc-relay".to_owned()
    } else {
        format!("/{}", utf8_percent_encode(cluster, SEGMENT))
    };
    format!(
        "{origin}/{}/{}",
        utf8_percent_encode(schema, SEGMENT),
        utf8_percent_encode(table, SEGMENT)
    )
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::super::{transform_doc, OutMessage, Routes, Transformed};
    use super::source;

    fn messages(mode: &str) -> Vec<OutMessage> {
        let routes = format!(
            "[defaults]\nenvelope = \"cloudevents\"\ncontent_mode = \"{mode}\"\n\
             [[route]]\ntable = \"public.orders\"\ntopics = [\"a\", \"b\"]\nkey = [\"id\"]\n"
        );
        let doc = r#"{"data":{"id":5,"n":19.90},"metadata":{"timestamp":"2024-01-01T00:00:01Z","commit-timestamp":"2024-01-01T00:00:00.5Z","record-type":"data","operation":"update","schema-name":"public","table-name":"orders"}}"#;
        match transform_doc(&routes, "arn:aws:kafka:eu-west-1:1:cluster/cdc/x", doc) {
            Ok(Transformed::Messages(m)) => m,
            other => panic!("{other:?}"),
        }
    }

    fn header<'m>(message: &'m OutMessage, name: &str) -> &'m str {
        message
            .headers
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
            .unwrap_or_else(|| panic!("header {name}"))
    }

    /// Structured: the event in the value, its id the message's event id on every
    /// topic of a fan-out, its data the relay envelope with values as they came.
    #[test]
    fn structured_events_carry_the_relay_envelope() {
        let messages = messages("structured");
        assert_eq!(messages.len(), 2);
        for message in &messages {
            let text =
                std::str::from_utf8(message.value.as_deref().expect("a value")).expect("UTF-8");
            assert!(text.contains(r#""n":19.90"#), "{text}");
            let event: Value = serde_json::from_str(text).expect("JSON");
            let id = header(message, "relay-event-id");
            assert_eq!(event["id"], id);
            assert_eq!(event["data"]["id"], id);
            assert_eq!(event["type"], "dms.public.orders.update");
            assert_eq!(
                event["source"],
                "arn:aws:kafka:eu-west-1:1:cluster/cdc/x/public/orders"
            );
            assert_eq!(event["time"], "2024-01-01T00:00:00.500Z");
            assert_eq!(event["subject"], "5");
            assert_eq!(event["partitionkey"], "5");
            assert_eq!(header(message, "content-type"), super::STRUCTURED);
        }
        assert_ne!(
            header(&messages[0], "relay-event-id"),
            header(&messages[1], "relay-event-id")
        );
    }

    /// Binary: the attributes in ce_* headers, the data (the relay envelope) the value.
    #[test]
    fn binary_events_carry_attributes_in_headers() {
        let messages = messages("binary");
        let message = &messages[0];
        assert_eq!(header(message, "ce_specversion"), "1.0");
        assert_eq!(header(message, "ce_id"), header(message, "relay-event-id"));
        assert_eq!(header(message, "ce_type"), "dms.public.orders.update");
        assert_eq!(header(message, "ce_subject"), "5");
        assert_eq!(header(message, "content-type"), "application/json");
        let data: Value =
            serde_json::from_slice(message.value.as_deref().expect("a value")).expect("JSON");
        assert_eq!(data["op"], "update");
        assert_eq!(data["data"]["id"], 5);
    }

    /// `content_mode` is for the CloudEvents envelope only.
    #[test]
    fn content_mode_needs_the_cloudevents_envelope() {
        let Err(error) = Routes::parse("[defaults]\ncontent_mode = \"binary\"\n", "test") else {
            panic!("refused");
        };
        assert!(error.to_string().contains("cloudevents"), "{error}");
    }

    /// `source` is a URI reference whatever the names: an ARN keeps its form, anything
    /// else is percent-encoded.
    #[test]
    fn source_names_cluster_and_table() {
        assert_eq!(
            source(
                "arn:aws:kafka:eu-west-1:1:cluster/cdc/ab-1",
                "public",
                "orders"
            ),
            "arn:aws:kafka:eu-west-1:1:cluster/cdc/ab-1/public/orders"
        );
        assert_eq!(
            source("b-1:9092,b-2:9092", "HR", "ORDER#LINES"),
            "/b-1%3A9092%2Cb-2%3A9092/HR/ORDER%23LINES"
        );
        assert_eq!(source("", "a b", "/BIC/T"), "/cdc-relay/a%20b/%2FBIC%2FT");
    }
}
