//! DMS record (the Kafka value AWS DMS writes) -> [`ChangeEvent`].
//!
//! The document is `{"data": {...}, "<before-image field>": {...}, "metadata": {...}}`
//! for data records and `{"control": {...}, "metadata": {...}}` for DDL/control records.
//! The before-image field name is configurable in DMS (`BeforeImageSettings.FieldName`),
//! so decoding goes through a [`serde::de::DeserializeSeed`] that knows the name: one pass,
//! no intermediate DOM. Unknown top-level and metadata fields are ignored; pretty-printed
//! (`json`) and one-line (`json-unformatted`) values parse alike.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{RecordError, Stage};

/// A row as DMS renders it: column name -> JSON value.
pub type Row = Map<String, Value>;

/// A data operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// A row copied during full load.
    Load,
    /// A row inserted during CDC.
    Insert,
    /// A row updated during CDC.
    Update,
    /// A row deleted during CDC (DMS sends the key columns).
    Delete,
}

impl Operation {
    /// All operations, in the order they are documented.
    pub const ALL: [Operation; 4] = [
        Operation::Load,
        Operation::Insert,
        Operation::Update,
        Operation::Delete,
    ];

    /// Lower-case name, as DMS spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Load => "load",
            Operation::Insert => "insert",
            Operation::Update => "update",
            Operation::Delete => "delete",
        }
    }

    /// Parses DMS's spelling.
    pub fn parse(text: &str) -> Option<Operation> {
        Operation::ALL.into_iter().find(|op| op.as_str() == text)
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value DMS sends as a number for some sources and a string for others
/// (`transaction-id`): kept exactly as sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum NumberOrString {
    /// As a JSON number.
    Number(serde_json::Number),
    /// As a JSON string.
    String(String),
}

impl<'de> Deserialize<'de> for NumberOrString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = NumberOrString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or a string")
            }
            fn visit_u64<E>(self, v: u64) -> Result<NumberOrString, E> {
                Ok(NumberOrString::Number(v.into()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<NumberOrString, E> {
                Ok(NumberOrString::Number(v.into()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<NumberOrString, E> {
                serde_json::Number::from_f64(v)
                    .map(NumberOrString::Number)
                    .ok_or_else(|| E::custom("not a finite number"))
            }
            fn visit_str<E>(self, v: &str) -> Result<NumberOrString, E> {
                Ok(NumberOrString::String(v.to_owned()))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// DMS `metadata`. Required: `record-type`, `operation`, `schema-name`, `table-name`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Metadata {
    /// When DMS produced the record (RFC 3339).
    pub timestamp: Option<String>,
    /// `data` or `control`.
    pub record_type: Option<String>,
    /// `load|insert|update|delete` for data, the DDL operation for control records.
    pub operation: Option<String>,
    /// How DMS chose the Kafka key: `schema-table`, `primary-key`, ...
    pub partition_key_type: Option<String>,
    /// The partition key value, with `IncludePartitionValue`.
    pub partition_key_value: Option<Value>,
    /// Source schema.
    pub schema_name: Option<String>,
    /// Source table.
    pub table_name: Option<String>,
    /// Source transaction id: number (MySQL, PostgreSQL) or string (others).
    pub transaction_id: Option<NumberOrString>,
    /// Commit time at the source, with `IncludeTransactionDetails`.
    pub commit_timestamp: Option<String>,
    /// Source log position, with `IncludeTransactionDetails`.
    pub stream_position: Option<String>,
    /// Position of the record within its transaction.
    pub transaction_record_id: Option<NumberOrString>,
    /// Previous transaction id.
    pub prev_transaction_id: Option<NumberOrString>,
    /// Position within the previous transaction.
    pub prev_transaction_record_id: Option<NumberOrString>,
}

/// What a DMS record says happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A row changed.
    Data {
        /// The operation.
        op: Operation,
        /// The row after the change (the key columns for a delete).
        data: Row,
        /// The row before an update, when DMS's before-image is on.
        before: Option<Row>,
    },
    /// A DDL or other control record.
    Control {
        /// `create-table`, `drop-table`, `add-column`, ...
        operation: String,
        /// The `control` object (table definition with `IncludeControlDetails`).
        control: Option<Value>,
    },
}

/// One decoded DMS record.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeEvent {
    /// Source schema name.
    pub schema: String,
    /// Source table name.
    pub table: String,
    /// All metadata as sent.
    pub metadata: Metadata,
    /// The change itself.
    pub change: Change,
}

/// Decodes DMS records; holds the configured before-image field name.
#[derive(Debug, Clone)]
pub struct Decoder {
    before_field: String,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new("before-image")
    }
}

impl Decoder {
    /// A decoder that reads the before-image from `before_field`.
    pub fn new(before_field: impl Into<String>) -> Decoder {
        Decoder {
            before_field: before_field.into(),
        }
    }

    /// The name of the before-image field.
    pub fn before_field(&self) -> &str {
        &self.before_field
    }

    /// Decodes one Kafka value. Every problem is a permanent error of the DMS stage.
    pub fn decode(&self, value: &[u8]) -> Result<ChangeEvent, RecordError> {
        let mut de = serde_json::Deserializer::from_slice(value);
        let raw = DocumentSeed {
            before_field: &self.before_field,
        }
        .deserialize(&mut de)
        .and_then(|raw| de.end().map(|()| raw))
        .map_err(|e| dms_error(format!("not a DMS JSON record: {e}")))?;
        raw.into_change_event()
    }
}

fn dms_error(message: impl Into<String>) -> RecordError {
    RecordError::permanent(Stage::Dms, message)
}

/// The top-level document before validation.
#[derive(Default)]
struct RawDocument {
    data: Option<Option<Row>>,
    before: Option<Option<Row>>,
    metadata: Option<Metadata>,
    control: Option<Value>,
}

impl RawDocument {
    fn into_change_event(self) -> Result<ChangeEvent, RecordError> {
        let metadata = self
            .metadata
            .ok_or_else(|| dms_error("missing field `metadata`"))?;
        let required = |field: &Option<String>, name: &str| {
            field
                .clone()
                .ok_or_else(|| dms_error(format!("metadata lacks `{name}`")))
        };
        let record_type = required(&metadata.record_type, "record-type")?;
        let operation = required(&metadata.operation, "operation")?;
        let schema = required(&metadata.schema_name, "schema-name")?;
        let table = required(&metadata.table_name, "table-name")?;
        let change = match record_type.as_str() {
            "data" => {
                let op = Operation::parse(&operation).ok_or_else(|| {
                    dms_error(format!(
                        "data record with unknown operation {operation:?} (expected load, insert, update or delete)"
                    ))
                })?;
                let data = match self.data {
                    Some(Some(row)) => row,
                    Some(None) => return Err(dms_error("`data` is null")),
                    None => return Err(dms_error("data record without `data`")),
                };
                Change::Data {
                    op,
                    data,
                    before: self.before.flatten(),
                }
            }
            "control" => Change::Control {
                operation,
                control: self.control,
            },
            other => {
                return Err(dms_error(format!(
                    "unknown record-type {other:?} (expected data or control)"
                )))
            }
        };
        Ok(ChangeEvent {
            schema,
            table,
            metadata,
            change,
        })
    }
}

struct DocumentSeed<'a> {
    before_field: &'a str,
}

impl<'de> DeserializeSeed<'de> for DocumentSeed<'_> {
    type Value = RawDocument;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<RawDocument, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for DocumentSeed<'_> {
    type Value = RawDocument;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a DMS record object with `metadata`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawDocument, A::Error> {
        use serde::de::Error as _;
        let mut doc = RawDocument::default();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let slot_taken = |taken: bool| {
                if taken {
                    Err(A::Error::custom(format!("duplicate field `{key}`")))
                } else {
                    Ok(())
                }
            };
            match key.as_ref() {
                "data" => {
                    slot_taken(doc.data.is_some())?;
                    doc.data = Some(map.next_value()?);
                }
                "metadata" => {
                    slot_taken(doc.metadata.is_some())?;
                    doc.metadata = Some(map.next_value()?);
                }
                "control" => {
                    slot_taken(doc.control.is_some())?;
                    doc.control = Some(map.next_value()?);
                }
                k if k == self.before_field => {
                    slot_taken(doc.before.is_some())?;
                    doc.before = Some(map.next_value()?);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPDATE: &str = r#"{
      "data": {"id": 46, "user_id": 7, "status": "PAID"},
      "before-image": {"id": 46, "user_id": 7, "status": "PENDING"},
      "metadata": {"timestamp": "2024-07-29T00:58:17.983670Z", "record-type": "data",
        "operation": "update", "partition-key-type": "schema-table", "schema-name": "public",
        "table-name": "orders", "transaction-id": 1141, "something-new": [1, 2]},
      "unknown-top-level": {"x": 1}
    }"#;

    /// A pretty-printed update with before-image and unknown fields decodes fully.
    #[test]
    fn decodes_update_with_before_image() {
        let ev = Decoder::default().decode(UPDATE.as_bytes()).expect("valid");
        assert_eq!(
            (ev.schema.as_str(), ev.table.as_str()),
            ("public", "orders")
        );
        assert_eq!(
            ev.metadata.transaction_id,
            Some(NumberOrString::Number(1141.into()))
        );
        match ev.change {
            Change::Data { op, data, before } => {
                assert_eq!(op, Operation::Update);
                assert_eq!(data["status"], "PAID");
                assert_eq!(before.expect("before image")["status"], "PENDING");
            }
            other => panic!("expected data, got {other:?}"),
        }
    }

    /// The before-image field name follows configuration.
    #[test]
    fn before_image_field_is_configurable() {
        let doc = UPDATE.replace("before-image", "old");
        let ev = Decoder::new("old").decode(doc.as_bytes()).expect("valid");
        assert!(matches!(
            ev.change,
            Change::Data {
                before: Some(_),
                ..
            }
        ));
        let ev = Decoder::default().decode(doc.as_bytes()).expect("valid");
        assert!(matches!(ev.change, Change::Data { before: None, .. }));
    }

    /// A string transaction id is kept as a string.
    #[test]
    fn transaction_id_may_be_a_string() {
        let doc = UPDATE.replace("1141", "\"0A.1F.2B\"");
        let ev = Decoder::default().decode(doc.as_bytes()).expect("valid");
        assert_eq!(
            ev.metadata.transaction_id,
            Some(NumberOrString::String("0A.1F.2B".into()))
        );
    }

    /// Control records decode as control changes.
    #[test]
    fn decodes_control_record() {
        let doc = r#"{"control":{"table-def":{"columns":{"id":{"type":"INT32"}}}},
          "metadata":{"record-type":"control","operation":"add-column","schema-name":"public","table-name":"orders"}}"#;
        let ev = Decoder::default().decode(doc.as_bytes()).expect("valid");
        assert!(
            matches!(ev.change, Change::Control { ref operation, .. } if operation == "add-column")
        );
    }

    /// Malformed documents are clear, permanent DMS-stage errors.
    #[test]
    fn rejects_malformed_documents() {
        let cases = [
            ("", "not a DMS JSON record"),
            ("[1,2]", "not a DMS JSON record"),
            ("{\"data\":{}}", "missing field `metadata`"),
            (
                r#"{"data":{},"metadata":{"record-type":"data","operation":"insert","schema-name":"s"}}"#,
                "table-name",
            ),
            (
                r#"{"data":{},"metadata":{"record-type":"data","operation":"merge","schema-name":"s","table-name":"t"}}"#,
                "unknown operation",
            ),
            (
                r#"{"metadata":{"record-type":"data","operation":"insert","schema-name":"s","table-name":"t"}}"#,
                "without `data`",
            ),
            (
                r#"{"data":null,"metadata":{"record-type":"data","operation":"insert","schema-name":"s","table-name":"t"}}"#,
                "`data` is null",
            ),
            (
                r#"{"data":{},"data":{},"metadata":{}}"#,
                "duplicate field `data`",
            ),
            (
                r#"{"data":{},"metadata":{"record-type":7}}"#,
                "invalid type",
            ),
            (
                r#"{"data":{},"metadata":{"transaction-id":true}}"#,
                "expected a number or a string",
            ),
            (
                r#"{"data":{},"metadata":{"record-type":"x","operation":"o","schema-name":"s","table-name":"t"}}"#,
                "unknown record-type",
            ),
            ("{} trailing", "not a DMS JSON record"),
        ];
        for (doc, expected) in cases {
            let err = Decoder::default().decode(doc.as_bytes()).expect_err(doc);
            assert_eq!(err.stage, Stage::Dms);
            assert!(!err.is_retryable());
            assert!(err.message.contains(expected), "{doc}: {}", err.message);
        }
    }
}
