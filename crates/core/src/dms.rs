//! DMS record (the Kafka value AWS DMS writes) -> [`ChangeEvent`], borrowed from the bytes.
//!
//! The document is `{"data": {...}, "<before-image field>": {...}, "metadata": {...}}`
//! for data records and `{"control": {...}, "metadata": {...}}` for DDL/control records.
//! The before-image field name is configurable in DMS (`BeforeImageSettings.FieldName`),
//! so the decoder knows the name. It reads the document in one pass of the core's JSON
//! scanner (`json.rs`), no intermediate DOM: what serde_json accepts, it accepts
//! (`Decoder::decode_with_serde`, the serde reading it replaced, is the reference the
//! tests and the `dms_decode` fuzz target compare it with). Unknown top-level and
//! metadata fields are skipped (but checked); pretty-printed (`json`) and one-line
//! (`json-unformatted`) values parse alike.
//!
//! Nothing is copied or converted: a row is a list of column names and the raw JSON text
//! of each value ([`RawValue`]), metadata strings borrow from the input unless they hold
//! escapes. A value is parsed later only if a route coerces or compares it, so a number
//! leaves exactly as DMS wrote it: `NUMERIC(38,10)` and integers past 2^64 keep every digit.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::{RecordError, Stage};
use crate::json::{raw_value, Fields, Guessing, KeyOrder, ScanError, Scanner, Text};

/// One column of a row: its name and its value's JSON text, as DMS wrote them.
#[derive(Debug, Clone, Copy)]
pub struct Column<'a, N = &'a str> {
    /// Column name.
    pub name: N,
    /// The value's JSON text (a string keeps its quotes and escapes).
    pub value: &'a RawValue,
}

/// A row as DMS renders it: columns in document order, values as raw JSON text. A name
/// that holds JSON escapes is unescaped (owned); every other name borrows from the input.
#[derive(Debug, Clone, Default)]
pub struct Row<'a> {
    /// The columns in document order. A repeated name keeps every occurrence here;
    /// [`Row::get`] and the transform use the last, as a JSON object reader does.
    pub columns: Vec<Column<'a, Cow<'a, str>>>,
}

impl<'a> Row<'a> {
    /// An empty row whose column list is one a dropped row left on this thread, when
    /// there is one: a row is read for nearly every record, so its list is allocated
    /// once per thread, not once per record.
    pub(crate) fn reusing() -> Row<'a> {
        let spare = SPARE_COLUMNS
            .try_with(|spare| spare.try_borrow_mut().ok().and_then(|mut s| s.pop()))
            .ok()
            .flatten()
            .unwrap_or_default();
        Row {
            columns: relabel(spare),
        }
    }

    /// The value of `name` (the last occurrence when repeated).
    pub fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.columns
            .iter()
            .rev()
            .find(|c| c.name == name)
            .map(|c| c.value)
    }

    /// The number of columns (repeats counted).
    pub fn len(&self) -> usize {
        self.columns.len()
    }

    /// Whether the row has no columns.
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }
}

/// A column list as a dropped row leaves it: empty, its allocation kept.
type SpareColumns = Vec<Column<'static, Cow<'static, str>>>;

/// Column lists kept for reuse: at most this many per thread (an update's row and its
/// before-image, with room to spare)...
const SPARE_LISTS: usize = 4;
/// ...and none longer than this many columns: a thread keeps at most 4 x 256 columns of
/// 40 bytes (40 KiB).
const SPARE_COLUMNS_MAX: usize = 256;

thread_local! {
    static SPARE_COLUMNS: std::cell::RefCell<Vec<SpareColumns>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// An empty list of columns of one lifetime as a list of another: no column moves, and
/// the standard library's in-place collection keeps the allocation (the two element
/// types have one layout). A list that is not empty is emptied first.
fn relabel<'from, 'to>(
    mut columns: Vec<Column<'from, Cow<'from, str>>>,
) -> Vec<Column<'to, Cow<'to, str>>> {
    columns.clear();
    #[expect(
        clippy::unnecessary_filter_map,
        reason = "the map's output type is what changes; `filter` keeps the input's"
    )]
    columns.into_iter().filter_map(|_| None).collect()
}

impl Drop for Row<'_> {
    /// Gives the column list back to this thread's spares (see [`Row::reusing`]).
    fn drop(&mut self) {
        let columns = std::mem::take(&mut self.columns);
        if columns.capacity() == 0 || columns.capacity() > SPARE_COLUMNS_MAX {
            return;
        }
        let columns = relabel(columns);
        // A thread being torn down keeps nothing.
        let _ = SPARE_COLUMNS.try_with(|spare| {
            if let Ok(mut spare) = spare.try_borrow_mut() {
                if spare.len() < SPARE_LISTS {
                    spare.push(columns);
                }
            }
        });
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Row<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Row<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a row object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Row<'a>, A::Error> {
                let mut columns = Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some(Text(name)) = map.next_key::<Text<'a>>()? {
                    let value: &'a RawValue = map.next_value()?;
                    check_escapes(value).map_err(|e| {
                        <A::Error as serde::de::Error>::custom(format!("column {name:?}: {e}"))
                    })?;
                    columns.push(Column { name, value });
                }
                Ok(Row { columns })
            }
        }
        deserializer.deserialize_map(V(std::marker::PhantomData))
    }
}

/// Kept values are not parsed, so their escapes are checked here: a `\u` escape must
/// be a valid code point (no lone surrogate), as a JSON reader downstream requires. Only
/// the escapes are read: a value of any depth, with numbers of any size, is kept.
fn check_escapes(value: &RawValue) -> Result<(), &'static str> {
    crate::json::check_unicode_escapes(value.get())
}

fn text<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'a, str>>, D::Error> {
    Option::<Text<'a>>::deserialize(d).map(|t| t.map(|Text(s)| s))
}

fn number_or_string<'de: 'a, 'a, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<&'a RawValue>, D::Error> {
    use serde::de::Error as _;
    let raw = Option::<&'a RawValue>::deserialize(d)?;
    match raw.map(|r| r.get().as_bytes().first()) {
        None => Ok(None),
        Some(Some(b'"' | b'-' | b'0'..=b'9')) => match raw.map(check_escapes) {
            Some(Err(e)) => Err(D::Error::custom(e)),
            _ => Ok(raw),
        },
        Some(Some(b'n')) => Ok(None),
        Some(_) => Err(D::Error::custom(
            "invalid type: expected a number or a string",
        )),
    }
}

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

/// DMS `metadata`. Required: `record-type`, `operation`, `schema-name`, `table-name`.
/// Strings borrow from the record; numbers and ids are kept as their JSON text.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Metadata<'a> {
    /// When DMS produced the record (RFC 3339).
    #[serde(default, borrow, deserialize_with = "text")]
    pub timestamp: Option<Cow<'a, str>>,
    /// `data` or `control`.
    #[serde(default, borrow, deserialize_with = "text")]
    pub record_type: Option<Cow<'a, str>>,
    /// `load|insert|update|delete` for data, the DDL operation for control records.
    #[serde(default, borrow, deserialize_with = "text")]
    pub operation: Option<Cow<'a, str>>,
    /// How DMS chose the Kafka key: `schema-table`, `primary-key`, ...
    #[serde(default, borrow, deserialize_with = "text")]
    pub partition_key_type: Option<Cow<'a, str>>,
    /// The partition key value, with `IncludePartitionValue`.
    #[serde(default, borrow)]
    pub partition_key_value: Option<&'a RawValue>,
    /// Source schema.
    #[serde(default, borrow, deserialize_with = "text")]
    pub schema_name: Option<Cow<'a, str>>,
    /// Source table.
    #[serde(default, borrow, deserialize_with = "text")]
    pub table_name: Option<Cow<'a, str>>,
    /// Source transaction id: number (MySQL, PostgreSQL) or string (others), as its JSON
    /// text, exactly as sent.
    #[serde(default, borrow, deserialize_with = "number_or_string")]
    pub transaction_id: Option<&'a RawValue>,
    /// Commit time at the source, with `IncludeTransactionDetails`.
    #[serde(default, borrow, deserialize_with = "text")]
    pub commit_timestamp: Option<Cow<'a, str>>,
    /// Source log position, with `IncludeTransactionDetails`.
    #[serde(default, borrow, deserialize_with = "text")]
    pub stream_position: Option<Cow<'a, str>>,
    /// Position of the record within its transaction (JSON text).
    #[serde(default, borrow, deserialize_with = "number_or_string")]
    pub transaction_record_id: Option<&'a RawValue>,
    /// Previous transaction id (JSON text).
    #[serde(default, borrow, deserialize_with = "number_or_string")]
    pub prev_transaction_id: Option<&'a RawValue>,
    /// Position within the previous transaction (JSON text).
    #[serde(default, borrow, deserialize_with = "number_or_string")]
    pub prev_transaction_record_id: Option<&'a RawValue>,
}

/// What a DMS record says happened.
#[derive(Debug, Clone)]
pub enum Change<'a> {
    /// A row changed.
    Data {
        /// The operation.
        op: Operation,
        /// The row after the change (the key columns for a delete).
        data: Row<'a>,
        /// The row before an update, when DMS's before-image is on.
        before: Option<Row<'a>>,
    },
    /// A DDL or other control record.
    Control {
        /// `create-table`, `drop-table`, `add-column`, ...
        operation: Cow<'a, str>,
        /// The `control` object (table definition with `IncludeControlDetails`), as JSON text.
        control: Option<&'a RawValue>,
    },
}

/// One decoded DMS record, borrowing from the record's bytes.
#[derive(Debug, Clone)]
pub struct ChangeEvent<'a> {
    /// Source schema name.
    pub schema: Cow<'a, str>,
    /// Source table name.
    pub table: Cow<'a, str>,
    /// All metadata as sent.
    pub metadata: Metadata<'a>,
    /// The change itself.
    pub change: Change<'a>,
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
    pub fn decode<'a>(&self, value: &'a [u8]) -> Result<ChangeEvent<'a>, RecordError> {
        let text = simdutf8::compat::from_utf8(value)
            .map_err(|e| dms_error(format!("not a DMS JSON record: invalid UTF-8: {e}")))?;
        let mut scanner = Scanner::new(text);
        self.document(&mut scanner)
            .and_then(|raw| scanner.end().map(|()| raw))
            .map_err(|e| dms_error(format!("not a DMS JSON record: {e}")))?
            .into_change_event()
    }

    /// The document's fields, in one pass of the scanner.
    fn document<'a>(&self, s: &mut Scanner<'a>) -> Result<RawDocument<'a>, ScanError> {
        s.object("a DMS record object with `metadata`")?;
        let mut doc = RawDocument::default();
        let mut first = true;
        while let Some(key) = s.key(&mut first)? {
            let taken = match &*key {
                "data" => doc.data.is_some(),
                "metadata" => doc.metadata.is_some(),
                "control" => doc.control.is_some(),
                k if k == self.before_field => doc.before.is_some(),
                _ => false,
            };
            if taken {
                return Err(s.error(format_args!("duplicate field `{key}`")));
            }
            match &*key {
                "data" => doc.data = Some(row_or_null(s)?),
                "metadata" => doc.metadata = Some(metadata(s)?),
                "control" => doc.control = Some(raw_value(s.raw()?)?),
                k if k == self.before_field => doc.before = Some(row_or_null(s)?),
                _ => {
                    s.raw()?;
                }
            }
        }
        Ok(doc)
    }

    /// [`Decoder::decode`] as serde_json reads the document: the reference the scanner
    /// is tested against (differentially, by the tests and the `dms_decode` fuzz target).
    #[cfg(any(test, feature = "reference"))]
    pub fn decode_with_serde<'a>(&self, value: &'a [u8]) -> Result<ChangeEvent<'a>, RecordError> {
        let text = simdutf8::compat::from_utf8(value)
            .map_err(|e| dms_error(format!("not a DMS JSON record: invalid UTF-8: {e}")))?;
        use serde::de::DeserializeSeed;
        let mut de = serde_json::Deserializer::from_str(text);
        let raw = reference::DocumentSeed {
            before_field: &self.before_field,
            _input: std::marker::PhantomData,
        }
        .deserialize(&mut de)
        .and_then(|raw| de.end().map(|()| raw))
        .map_err(|e| dms_error(format!("not a DMS JSON record: {e}")))?;
        raw.into_change_event()
    }
}

/// Decodes `value` both ways and says how the readings differ, if they do: one
/// accepts what the other refuses, or they read different events, or a kept value is
/// not a slice of `value`. The one difference kept on purpose: serde's derive reads a
/// struct from an array of its fields in order, so the reference takes
/// `"metadata": [...]`, which DMS never writes; the decoder refuses it.
#[cfg(any(test, feature = "reference"))]
pub fn compare_with_serde(decoder: &Decoder, value: &[u8]) -> Result<(), String> {
    let ours = decoder.decode(value);
    let reference = decoder.decode_with_serde(value);
    let within = |text: &str| {
        let range = value.as_ptr_range();
        range.contains(&text.as_ptr()) && text.len() <= value.len()
    };
    match (&ours, &reference) {
        (Ok(a), Ok(b)) if format!("{a:?}") == format!("{b:?}") => match &a.change {
            Change::Data { data, before, .. } => {
                let rows = std::iter::once(data).chain(before);
                match rows
                    .flat_map(|row| &row.columns)
                    .find(|c| !within(c.value.get()))
                {
                    Some(column) => Err(format!("{column:?} is a copy, not the input's text")),
                    None => Ok(()),
                }
            }
            Change::Control { .. } => Ok(()),
        },
        (Err(_), Err(_)) => Ok(()),
        (Err(e), Ok(_))
            if e.message
                .contains(&format!("{} struct Metadata", crate::json::SEQUENCE_FOR)) =>
        {
            Ok(())
        }
        _ => Err(format!("decoder: {ours:?}\nserde_json: {reference:?}")),
    }
}

/// A row, or `null` (`None`).
fn row_or_null<'a>(s: &mut Scanner<'a>) -> Result<Option<Row<'a>>, ScanError> {
    if s.null()? {
        return Ok(None);
    }
    s.object("a row object")?;
    let mut row = Row::reusing();
    row.columns.reserve(16);
    let mut first = true;
    while let Some(name) = s.key(&mut first)? {
        let value = raw_value(s.raw()?)?;
        if s.escaped() {
            check_escapes(value).map_err(|e| s.error(format_args!("column {name:?}: {e}")))?;
        }
        row.columns.push(Column { name, value });
    }
    Ok(Some(row))
}

/// The `metadata` fields read, by number, with their keys as written.
const METADATA_FIELDS: [(&str, &[u8]); 13] = [
    ("timestamp", b"\"timestamp\""),
    ("record-type", b"\"record-type\""),
    ("operation", b"\"operation\""),
    ("partition-key-type", b"\"partition-key-type\""),
    ("partition-key-value", b"\"partition-key-value\""),
    ("schema-name", b"\"schema-name\""),
    ("table-name", b"\"table-name\""),
    ("transaction-id", b"\"transaction-id\""),
    ("commit-timestamp", b"\"commit-timestamp\""),
    ("stream-position", b"\"stream-position\""),
    ("transaction-record-id", b"\"transaction-record-id\""),
    ("prev-transaction-id", b"\"prev-transaction-id\""),
    (
        "prev-transaction-record-id",
        b"\"prev-transaction-record-id\"",
    ),
];

/// The keys of the last `metadata` read on a thread, in its order: one task reads a
/// batch's records, so the next is read guessing its keys from them.
type MetadataOrder = KeyOrder<{ METADATA_FIELDS.len() }>;

thread_local! {
    static METADATA_ORDER: std::cell::Cell<MetadataOrder> =
        const { std::cell::Cell::new(MetadataOrder::new()) };
}

/// Forgets the metadata order this thread guesses from, so that what a reading does
/// depends on its input only (the DMS fuzz target, which primes the order, then compares
/// the readings).
#[cfg(any(test, feature = "reference"))]
pub fn forget_metadata_order() {
    let _ = METADATA_ORDER.try_with(|last| last.set(MetadataOrder::default()));
}

/// The `metadata` object: known fields read, others skipped (but checked), a field
/// given twice refused.
fn metadata<'a>(s: &mut Scanner<'a>) -> Result<Metadata<'a>, ScanError> {
    s.object("struct Metadata")?;
    let mut m = Metadata::default();
    let mut seen = Fields::default();
    let mut first = true;
    // A thread being torn down guesses nothing.
    let mut order = METADATA_ORDER
        .try_with(std::cell::Cell::get)
        .unwrap_or_default();
    let mut keys = Guessing::new(&mut order);
    while let Some((field, key)) = s.field(&mut first, &METADATA_FIELDS, &mut keys)? {
        seen.once(s, field, key)?;
        match field {
            0 => m.timestamp = s.text_or_null(key)?,
            1 => m.record_type = s.text_or_null(key)?,
            2 => m.operation = s.text_or_null(key)?,
            3 => m.partition_key_type = s.text_or_null(key)?,
            4 => m.partition_key_value = raw_or_null(s)?,
            5 => m.schema_name = s.text_or_null(key)?,
            6 => m.table_name = s.text_or_null(key)?,
            7 => m.transaction_id = number_or_string_or_null(s, key)?,
            8 => m.commit_timestamp = s.text_or_null(key)?,
            9 => m.stream_position = s.text_or_null(key)?,
            10 => m.transaction_record_id = number_or_string_or_null(s, key)?,
            11 => m.prev_transaction_id = number_or_string_or_null(s, key)?,
            _ => m.prev_transaction_record_id = number_or_string_or_null(s, key)?,
        }
    }
    keys.done();
    let _ = METADATA_ORDER.try_with(|last| last.set(order));
    Ok(m)
}

fn raw_or_null<'a>(s: &mut Scanner<'a>) -> Result<Option<&'a RawValue>, ScanError> {
    if s.null()? {
        return Ok(None);
    }
    raw_value(s.raw()?).map(Some)
}

fn number_or_string_or_null<'a>(
    s: &mut Scanner<'a>,
    field: &str,
) -> Result<Option<&'a RawValue>, ScanError> {
    match s.peek() {
        Some(b'n') => raw_or_null(s),
        Some(b'"' | b'-' | b'0'..=b'9') => {
            let value = raw_value(s.raw()?)?;
            // Written downstream as it came (the envelope's `source`): its escapes are
            // checked as a row value's are.
            if s.escaped() {
                check_escapes(value).map_err(|e| s.error(format_args!("`{field}`: {e}")))?;
            }
            Ok(Some(value))
        }
        _ => Err(s.error(format_args!(
            "invalid type: `{field}`: expected a number or a string"
        ))),
    }
}

fn dms_error(message: impl Into<String>) -> RecordError {
    RecordError::permanent(Stage::Dms, message)
}

/// The top-level document before validation.
#[derive(Default)]
struct RawDocument<'a> {
    data: Option<Option<Row<'a>>>,
    before: Option<Option<Row<'a>>>,
    metadata: Option<Metadata<'a>>,
    control: Option<&'a RawValue>,
}

impl<'a> RawDocument<'a> {
    fn into_change_event(self) -> Result<ChangeEvent<'a>, RecordError> {
        let metadata = self
            .metadata
            .ok_or_else(|| dms_error("missing field `metadata`"))?;
        let required = |field: &Option<Cow<'a, str>>, name: &str| {
            field
                .clone()
                .ok_or_else(|| dms_error(format!("metadata lacks `{name}`")))
        };
        let record_type = required(&metadata.record_type, "record-type")?;
        let operation = required(&metadata.operation, "operation")?;
        let schema = required(&metadata.schema_name, "schema-name")?;
        let table = required(&metadata.table_name, "table-name")?;
        let change = match &*record_type {
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
                control: self.control.filter(|c| c.get() != "null"),
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

/// The serde_json reading of a document, kept as the reference for
/// [`Decoder::decode_with_serde`].
#[cfg(any(test, feature = "reference"))]
mod reference {
    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
    use std::fmt;

    use super::{RawDocument, Text};

    pub(super) struct DocumentSeed<'s, 'a> {
        pub(super) before_field: &'s str,
        pub(super) _input: std::marker::PhantomData<&'a ()>,
    }

    impl<'de: 'a, 'a> DeserializeSeed<'de> for DocumentSeed<'_, 'a> {
        type Value = RawDocument<'a>;

        fn deserialize<D: Deserializer<'de>>(
            self,
            deserializer: D,
        ) -> Result<RawDocument<'a>, D::Error> {
            deserializer.deserialize_map(self)
        }
    }

    impl<'de: 'a, 'a> Visitor<'de> for DocumentSeed<'_, 'a> {
        type Value = RawDocument<'a>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a DMS record object with `metadata`")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawDocument<'a>, A::Error> {
            use serde::de::Error as _;
            let mut doc = RawDocument::default();
            while let Some(Text(key)) = map.next_key::<Text<'a>>()? {
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
        assert_eq!((&*ev.schema, &*ev.table), ("public", "orders"));
        assert_eq!(ev.metadata.transaction_id.map(RawValue::get), Some("1141"));
        match ev.change {
            Change::Data { op, data, before } => {
                assert_eq!(op, Operation::Update);
                assert_eq!(data.get("status").map(RawValue::get), Some("\"PAID\""));
                let before = before.expect("before image");
                assert_eq!(before.get("status").map(RawValue::get), Some("\"PENDING\""));
            }
            other => panic!("expected data, got {other:?}"),
        }
    }

    /// A row's column list is kept on its thread when the row is dropped and given to
    /// the next row read there, empty: the next record's columns, not the last one's.
    #[test]
    fn a_dropped_rows_column_list_is_reused_empty() {
        let decoder = Decoder::default();
        // Start from no spares: the lists this thread kept before are given up.
        SPARE_COLUMNS.with(|spare| spare.borrow_mut().clear());
        let first = decoder.decode(UPDATE.as_bytes()).expect("valid");
        let Change::Data { data, before, .. } = &first.change else {
            panic!("expected data");
        };
        let lists = [
            data.columns.as_ptr(),
            before.as_ref().expect("before").columns.as_ptr(),
        ];
        drop(first);
        assert_eq!(SPARE_COLUMNS.with(|spare| spare.borrow().len()), 2);
        let doc = r#"{"data": {"only": 1}, "metadata": {"record-type": "data",
            "operation": "insert", "schema-name": "s", "table-name": "t"}}"#;
        let second = decoder.decode(doc.as_bytes()).expect("valid");
        let Change::Data { data, .. } = &second.change else {
            panic!("expected data");
        };
        assert!(
            lists.contains(&data.columns.as_ptr()),
            "a kept list is reused"
        );
        let names: Vec<&str> = data.columns.iter().map(|c| &*c.name).collect();
        assert_eq!(names, ["only"]);
        assert_eq!(SPARE_COLUMNS.with(|spare| spare.borrow().len()), 1);
    }

    /// A transaction field is written downstream as it came (the envelope's `source`):
    /// a lone surrogate escape in it is refused, as in a row value, by the decoder and
    /// by the serde reading alike; a valid pair, a number or another escape is kept.
    #[test]
    fn a_lone_surrogate_in_a_transaction_field_is_refused() {
        let doc = |field: &str, value: &str| {
            format!(
                r#"{{"data":{{"id":1}},"metadata":{{"record-type":"data","operation":"insert","schema-name":"s","table-name":"t","{field}":{value}}}}}"#
            )
        };
        let decoder = Decoder::default();
        for field in [
            "transaction-id",
            "transaction-record-id",
            "prev-transaction-id",
            "prev-transaction-record-id",
        ] {
            let bad = doc(field, r#""\ud800""#);
            let error = decoder.decode(bad.as_bytes()).expect_err(field);
            assert!(error.to_string().contains(field), "{error}");
            compare_with_serde(&decoder, bad.as_bytes()).expect("both refuse it");
            for good in [r#""\ud83d\ude00""#, "12", r#""a\"b""#] {
                let doc = doc(field, good);
                decoder.decode(doc.as_bytes()).expect(good);
                compare_with_serde(&decoder, doc.as_bytes()).expect(good);
            }
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
            ev.metadata.transaction_id.map(RawValue::get),
            Some("\"0A.1F.2B\"")
        );
    }

    /// Values keep their exact JSON text (no number is converted), names with escapes
    /// are unescaped, and a repeated column reads as its last occurrence.
    #[test]
    fn rows_keep_raw_values() {
        let doc = r#"{"data":{"n":12345678901234567.891,"big":123456789012345678901234567890,
          "p":19.90,"caf\u00e9":"x","n":1e400},"metadata":{"record-type":"data",
          "operation":"insert","schema-name":"s","table-name":"t"}}"#;
        let ev = Decoder::default().decode(doc.as_bytes()).expect("valid");
        let Change::Data { data, .. } = ev.change else {
            panic!("expected data");
        };
        assert_eq!(data.len(), 5);
        assert_eq!(data.get("n").map(RawValue::get), Some("1e400"));
        assert_eq!(data.columns[0].value.get(), "12345678901234567.891");
        assert_eq!(
            data.get("big").map(RawValue::get),
            Some("123456789012345678901234567890")
        );
        assert_eq!(data.get("p").map(RawValue::get), Some("19.90"));
        assert_eq!(data.get("café").map(RawValue::get), Some("\"x\""));
    }

    /// A value holding an escape is kept as it came whatever else it holds: numbers past
    /// a float's range and nesting deeper than serde_json reads are not its business.
    /// Only a lone surrogate is refused, at any depth.
    #[test]
    fn escaped_values_keep_any_number_and_depth() {
        let meta = r#""metadata":{"record-type":"data","operation":"insert","schema-name":"s","table-name":"t"}"#;
        let deep = format!("{}\"a\\nb\"{}", "[".repeat(200), "]".repeat(200));
        for value in [r#"[1E+400,"a\nb"]"#.to_owned(), deep] {
            let doc = format!(r#"{{"data":{{"n":{value}}},{meta}}}"#);
            let decoder = Decoder::default();
            for decoded in [
                decoder.decode(doc.as_bytes()),
                decoder.decode_with_serde(doc.as_bytes()),
            ] {
                let ev = decoded.unwrap_or_else(|e| panic!("{value}: {e}"));
                let Change::Data { data, .. } = ev.change else {
                    panic!("expected data");
                };
                assert_eq!(data.get("n").map(RawValue::get), Some(value.as_str()));
            }
        }
        let nested = format!(r#"{{"data":{{"n":[[{{"x":"\ud800\n"}}]]}},{meta}}}"#);
        let error = Decoder::default()
            .decode(nested.as_bytes())
            .expect_err("a lone surrogate, nested")
            .to_string();
        assert!(error.contains("unexpected end of hex escape"), "{error}");
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

    /// The scanner reads every document as serde_json does: the sample events'
    /// records, and the same records cut, spliced and scribbled on.
    #[test]
    fn reads_documents_as_serde_json_does() {
        let events: Vec<crate::source::MskEvent> = crate::json::SAMPLE_EVENTS
            .iter()
            .map(|text| serde_json::from_str(text).expect("an event"))
            .collect();
        let escaped = r#"{"data":{"caf\u00e9":"a\"b\\c\ud83d\ude00","n":-1.5e-3,"o":{"x":[1,{}]}},
          "metadata":{"record-type":"data","operation":"insert","schema-name":"s\u0041",
          "table-name":"t","transaction-id":"0A.1","partition-key-value":{"k":[true]}}}"#;
        let docs: Vec<String> = [UPDATE.to_owned(), escaped.to_owned()]
            .into_iter()
            .chain(
                events
                    .iter()
                    .flat_map(|event| &event.records)
                    .filter_map(|r| String::from_utf8(r.decode().ok()?.value?).ok()),
            )
            .collect();
        let decoder = Decoder::default();
        crate::json::check_scribbled(
            &docs,
            vec![
                "\\u",
                "\\ud800",
                "\\udc00",
                "nul",
                "1.5e3",
                "01",
                ".",
                "e",
                "\n",
                "\u{1}",
                "\"data\":",
                "\"metadata\":",
                "\"before-image\":",
                "true",
                "é",
                "\"x\"",
            ],
            |doc| compare_with_serde(&decoder, doc),
        );
    }

    /// The metadata reader guesses each key from the order of the metadata read before
    /// it on the thread; whatever the order before, a document reads as serde_json
    /// reads it: in DMS's order, in another, with whitespace, with a key that begins
    /// like a guessed one, with a guessed key escaped, given twice, or missing, or a
    /// comma missing after one.
    #[test]
    fn metadata_reads_alike_whatever_order_came_before() {
        let data = r#""data":{"id":1}"#;
        let documents = [
            (r#""timestamp":"x","record-type":"data","operation":"insert","partition-key-type":"schema-table","schema-name":"s","table-name":"t","transaction-id":1"#, Some("t")),
            (r#""timestamp":"x","record-type":"data","operation":"insert","partition-key-type":"schema-table","schema-name":"s","table-name":"u","transaction-id":2"#, Some("u")),
            (r#""operation":"insert","record-type":"data","schema-name":"s","table-name":"v","timestamp":"x""#, Some("v")),
            (" \"timestamp\" : \"x\" ,\n\"record-type\"\t:\"data\",\"operation\":\"insert\",\"schema-name\":\"s\",\"table-name\" :\"w\"", Some("w")),
            (r#""timestampX":"y","timestamp":"x","record-type":"data","operation":"insert","schema-name":"s","table-names":"z","table-name":"x1""#, Some("x1")),
            (r#""timestamp":"x","record-type":"data","operation":"insert","schema-name":"s","table\u002dname":"x2""#, Some("x2")),
            (r#""timestamp":"x","record-type":"data","operation":"insert","schema-name":"s","table-name":"t","table-name":"t""#, None),
            (r#""timestamp":"x","record-type":"data","operation":"insert","schema-name":"s""#, None),
            (r#""timestamp":"x" "record-type":"data","operation":"insert","schema-name":"s","table-name":"t""#, None),
            (r#""timestamp":"x","record-type":"data","operation":"insert","schema-name":"s","table-name":"x3""#, Some("x3")),
        ];
        let decoder = Decoder::default();
        // Every document after every other, so each is read with each order guessed.
        for (before, _) in &documents {
            for (document, table) in &documents {
                let first = format!("{{{data},\"metadata\":{{{before}}}}}");
                let _ = decoder.decode(first.as_bytes());
                let text = format!("{{{data},\"metadata\":{{{document}}}}}");
                assert_eq!(
                    compare_with_serde(&decoder, text.as_bytes()),
                    Ok(()),
                    "{text}"
                );
                let _ = decoder.decode(first.as_bytes());
                let read = decoder.decode(text.as_bytes()).ok();
                assert_eq!(
                    read.map(|e| e.table.into_owned()).as_deref(),
                    *table,
                    "{text}"
                );
            }
        }
    }

    /// Inputs the two readings must treat alike, each a case a reader could get wrong
    /// on its own: fields given twice (after `null` too), nested lone surrogates, JSON's
    /// whitespace and no other, trailing commas, literals cut short, bad hex digits, a
    /// before-image field named like another field.
    #[test]
    fn reads_edge_cases_as_serde_json_does() {
        let meta = r#""metadata":{"record-type":"data","operation":"insert","schema-name":"s","table-name":"t"}"#;
        let cases = [
            format!(r#"{{"data":{{}},{meta}}}"#),
            format!(r#"{{"data":{{}},"data":null,{meta}}}"#),
            format!(r#"{{"data":{{}},"before-image":null,"before-image":{{}},{meta}}}"#),
            format!(r#"{{"control":null,"control":{{}},{meta}}}"#),
            format!(r#"{{"data":{{}},{meta},"metadata":{{}}}}"#),
            r#"{"data":{},"metadata":{"schema-name":null,"schema-name":"s","record-type":"data","operation":"insert","table-name":"t"}}"#.to_owned(),
            r#"{"data":{},"metadata":{"transaction-id":1,"transaction-id":2,"record-type":"data","operation":"insert","schema-name":"s","table-name":"t"}}"#.to_owned(),
            format!(r#"{{"data":{{"a":["\ud800"]}},{meta}}}"#),
            format!(r#"{{"data":{{"a":{{"b":"x\udc00"}}}},{meta}}}"#),
            format!(r#"{{"data":{{"a":"\ud83d\ude00"}},{meta}}}"#),
            format!(r#"{{"x":["\ud800"],"data":{{}},{meta}}}"#),
            format!("{{\"data\":{{}},\u{c}{meta}}}"),
            format!("{{\"data\":{{}},\u{b}{meta}}}"),
            format!("{{\"data\":{{}},\u{a0}{meta}}}"),
            format!("\u{feff}{{\"data\":{{}},{meta}}}"),
            format!(r#"{{"data":{{"a":1,}},{meta}}}"#),
            format!(r#"{{"data":{{}},{meta},}}"#),
            format!(r#"{{"data":{{"a":[1,]}},{meta}}}"#),
            format!(r#"{{"data":{{"a":[,1]}},{meta}}}"#),
            format!(r#"{{"data":{{"a":nul}},{meta}}}"#),
            format!(r#"{{"data":{{"a":nulx}},{meta}}}"#),
            format!(r#"{{"data":{{"a":"\u00g0"}},{meta}}}"#),
            format!(r#"{{"data":{{"a":"\u00G0"}},{meta}}}"#),
            r#"{"data":{},"metadata":{"record-type":nul,"operation":"insert","schema-name":"s","table-name":"t"}}"#.to_owned(),
            r#"{"data":{},"metadata":{"record-type":"data","operation":"insert","schema-name":"s","table-name":"t","x":1e400}}"#.to_owned(),
            r#"{"x":1e400,"data":{},"metadata":[null,"data","insert",null,null,"s","t"]}"#.to_owned(),
        ];
        for before in ["before-image", "data", "metadata", "control", ""] {
            let decoder = Decoder::new(before);
            for case in &cases {
                assert_eq!(
                    compare_with_serde(&decoder, case.as_bytes()),
                    Ok(()),
                    "{before:?}: {case}"
                );
            }
        }
        // Not only agreement: fields given twice and lone surrogates are refused.
        for refused in [1, 2, 3, 4, 5, 6, 7, 8] {
            let case = &cases[refused];
            assert!(
                Decoder::default().decode(case.as_bytes()).is_err(),
                "{case}"
            );
        }
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
            (
                r#"{"data":{"s":"\ud800"},"metadata":{"record-type":"data","operation":"insert","schema-name":"s","table-name":"t"}}"#,
                "hex escape",
            ),
        ];
        for (doc, expected) in cases {
            let err = Decoder::default().decode(doc.as_bytes()).expect_err(doc);
            assert_eq!(err.stage, Stage::Dms);
            assert!(!err.is_retryable());
            assert!(err.message.contains(expected), "{doc}: {}", err.message);
        }
    }
}
