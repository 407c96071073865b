//! MSK event -> ordered [`SourceRecord`]s, and their base64 decoding.
//!
//! Lambda sends `records` as a map keyed `"<topic>-<partition>"` (in no particular
//! order). [`MskEvent::parse`] flattens it into one list sorted by that key and, within a
//! key, by offset, so that everything downstream can rely on source order. Decoding
//! (base64 of key and value, Java's signed header bytes) happens per record in
//! [`SourceRecord::decode`], inside the concurrent transform tasks, so a record that does
//! not decode fails alone.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use serde::de::{Error as _, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{RecordError, Stage};
use crate::json::{Fields, Guessing, KeyOrder, ScanError, Scanner, Text};

/// An MSK event as the relay reads it: where it came from, and its records in source
/// order (by `"<topic>-<partition>"` key, then offset).
///
/// [`MskEvent::parse`] reads it from the payload's bytes, as Lambda's runtime API hands
/// them over: one pass of the core's JSON scanner, no key strings, each record's key and
/// value kept as a slice of the payload (base64, decoded per record in the concurrent
/// tasks). Its `Deserialize` reads the same JSON from any other serde source (copying
/// the text); the two readings are compared by `compare_with_serde`, in the tests and
/// the `msk_event` fuzz target. Either way bad
/// values are errors, never panics: timestamps must be whole milliseconds in 64 bits;
/// absent `headers` mean none; a partition key given twice is refused.
#[derive(Debug, Clone, Default)]
pub struct MskEvent {
    /// The parts of the event that are not records.
    pub origin: EventOrigin,
    /// The records, in source order.
    pub records: Vec<SourceRecord>,
}

impl MskEvent {
    /// Reads an MSK event from its JSON bytes, the records' key and value text shared
    /// with `body` (no copy unless the JSON escapes a character in them).
    pub fn parse(body: impl Into<Bytes>) -> Result<MskEvent, serde_json::Error> {
        let body = body.into();
        // One SIMD pass over the whole payload instead of a scalar check of each string
        // the parser borrows from it.
        let text = simdutf8::compat::from_utf8(&body)
            .map_err(|e| serde_json::Error::custom(format!("the event is not UTF-8: {e}")))?;
        let mut scanner = Scanner::new(text);
        let raw = RawEvent::scan(&mut scanner)
            .and_then(|raw| scanner.end().map(|()| raw))
            .map_err(|e| serde_json::Error::custom(e.to_string()))?;
        raw.build(Some(&body))
    }
}

impl<'de> Deserialize<'de> for MskEvent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        RawEvent::deserialize(deserializer)?.build(None)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEvent<'a> {
    #[serde(default, borrow)]
    event_source: Option<Text<'a>>,
    #[serde(default, borrow)]
    event_source_arn: Option<Text<'a>>,
    #[serde(default, borrow)]
    records: Option<Partitions<'a>>,
    #[serde(default, borrow)]
    bootstrap_servers: Option<Text<'a>>,
}

/// The `records` map, its entries in the order the JSON lists them.
struct Partitions<'a>(Vec<(Text<'a>, Vec<RawRecord<'a>>)>);

impl<'de: 'a, 'a> Deserialize<'de> for Partitions<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PartitionsVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for PartitionsVisitor<'a> {
            type Value = Partitions<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of \"<topic>-<partition>\" to records")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Partitions<'a>, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    out.push(entry);
                }
                Ok(Partitions(out))
            }
        }
        deserializer.deserialize_map(PartitionsVisitor(std::marker::PhantomData))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRecord<'a> {
    #[serde(default, borrow)]
    topic: Option<Text<'a>>,
    partition: i64,
    offset: i64,
    #[serde(deserialize_with = "whole_millis")]
    timestamp: i64,
    #[serde(default, borrow)]
    key: Option<Text<'a>>,
    #[serde(default, borrow)]
    value: Option<Text<'a>>,
    #[serde(default)]
    headers: Vec<Headers>,
}

/// A record's timestamp: whole epoch milliseconds, any that Kafka's 64 bits hold (a
/// producer sets it, and a broker takes one far in the future: refusing it here would
/// fail the whole event, every partition of it, on every retry).
fn whole_millis<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    let number = serde_json::Number::deserialize(deserializer)?;
    number
        .as_i64()
        .ok_or_else(|| D::Error::custom("record timestamp must be whole epoch milliseconds"))
}

/// One entry of a record's `headers`: names to Java's signed bytes, in the JSON's order.
struct Headers(Vec<(String, Vec<u8>)>);

impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HeadersVisitor;
        impl<'de> Visitor<'de> for HeadersVisitor {
            type Value = Headers;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of header names to signed bytes")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Headers, A::Error> {
                let mut out = Vec::new();
                while let Some((name, bytes)) = map.next_entry::<String, Vec<i8>>()? {
                    // Lambda serialises header bytes as Java's signed `byte`: -61 is 0xC3.
                    out.push((name, bytes.into_iter().map(|b| b as u8).collect()));
                }
                Ok(Headers(out))
            }
        }
        deserializer.deserialize_map(HeadersVisitor)
    }
}

/// The event read by the scanner: what serde reads through the derives above, field for
/// field (unknown fields skipped but checked, a field given twice refused). Only the
/// derives' reading of a struct from an array of its fields is not repeated: Lambda
/// never sends one.
impl<'a> RawEvent<'a> {
    fn scan(s: &mut Scanner<'a>) -> Result<RawEvent<'a>, ScanError> {
        s.object("an MSK event object")?;
        let mut event = RawEvent {
            event_source: None,
            event_source_arn: None,
            records: None,
            bootstrap_servers: None,
        };
        let mut seen = Fields::default();
        let mut first = true;
        while let Some(key) = s.key(&mut first)? {
            let text = |s: &mut Scanner<'a>| s.text_or_null(&key).map(|t| t.map(Text));
            match &*key {
                "eventSource" => {
                    seen.once(s, 0, &key)?;
                    event.event_source = text(s)?;
                }
                "eventSourceArn" => {
                    seen.once(s, 1, &key)?;
                    event.event_source_arn = text(s)?;
                }
                "bootstrapServers" => {
                    seen.once(s, 2, &key)?;
                    event.bootstrap_servers = text(s)?;
                }
                "records" => {
                    seen.once(s, 3, &key)?;
                    event.records = if s.null()? {
                        None
                    } else {
                        Some(Partitions::scan(s)?)
                    };
                }
                _ => {
                    s.raw()?;
                }
            }
        }
        Ok(event)
    }
}

impl<'a> Partitions<'a> {
    fn scan(s: &mut Scanner<'a>) -> Result<Partitions<'a>, ScanError> {
        s.object("a map of \"<topic>-<partition>\" to records")?;
        let mut out = Vec::new();
        let mut order = RecordOrder::default();
        let mut first = true;
        while let Some(key) = s.key(&mut first)? {
            s.array("a sequence of records")?;
            let mut records = Vec::new();
            let mut first = true;
            while s.element(&mut first)? {
                records.push(RawRecord::scan(s, &mut order)?);
            }
            out.push((Text(key), records));
        }
        Ok(Partitions(out))
    }
}

/// A record's fields, by number, with their keys as written: what [`RawRecord::scan`]
/// guesses from the order of the record before (a batch's records are written alike).
const RECORD_FIELDS: [(&str, &[u8]); 8] = [
    ("topic", b"\"topic\""),
    ("partition", b"\"partition\""),
    ("offset", b"\"offset\""),
    ("timestamp", b"\"timestamp\""),
    ("key", b"\"key\""),
    ("value", b"\"value\""),
    ("headers", b"\"headers\""),
    // Read past, as every field not named above.
    ("timestampType", b"\"timestampType\""),
];

/// The keys of the record read last, in its order ([`RECORD_FIELDS`]).
type RecordOrder = KeyOrder<{ RECORD_FIELDS.len() }>;

impl<'a> RawRecord<'a> {
    fn scan(s: &mut Scanner<'a>, order: &mut RecordOrder) -> Result<RawRecord<'a>, ScanError> {
        s.object("struct RawRecord")?;
        let mut topic = None;
        let (mut partition, mut offset, mut timestamp) = (None, None, None);
        let (mut key_text, mut value, mut headers) = (None, None, Vec::new());
        let mut seen = Fields::default();
        let mut first = true;
        let mut keys = Guessing::new(order);
        while let Some((field, name)) = s.field(&mut first, &RECORD_FIELDS, &mut keys)? {
            let text = |s: &mut Scanner<'a>| s.text_or_null(name).map(|t| t.map(Text));
            match field {
                0 => {
                    seen.once(s, 0, name)?;
                    topic = text(s)?;
                }
                1 => {
                    seen.once(s, 1, name)?;
                    partition = Some(s.integer()?);
                }
                2 => {
                    seen.once(s, 2, name)?;
                    offset = Some(s.integer()?);
                }
                3 => {
                    seen.once(s, 3, name)?;
                    // Any whole number of 64 bits (see `whole_millis`).
                    let millis = s.integer().map_err(|_| {
                        s.error("record timestamp must be whole epoch milliseconds")
                    })?;
                    timestamp = Some(millis);
                }
                4 => {
                    seen.once(s, 4, name)?;
                    key_text = text(s)?;
                }
                5 => {
                    seen.once(s, 5, name)?;
                    value = text(s)?;
                }
                6 => {
                    seen.once(s, 6, name)?;
                    headers = Headers::scan_list(s)?;
                }
                _ => {
                    s.raw()?;
                }
            }
        }
        keys.done();
        let missing = |field: &str| s.error(format_args!("missing field `{field}`"));
        Ok(RawRecord {
            topic,
            partition: partition.ok_or_else(|| missing("partition"))?,
            offset: offset.ok_or_else(|| missing("offset"))?,
            timestamp: timestamp.ok_or_else(|| missing("timestamp"))?,
            key: key_text,
            value,
            headers,
        })
    }
}

impl Headers {
    /// A record's `headers`: a list of maps of names to Java's signed bytes.
    fn scan_list(s: &mut Scanner<'_>) -> Result<Vec<Headers>, ScanError> {
        s.array("a sequence of headers")?;
        let mut list = Vec::new();
        let mut first = true;
        while s.element(&mut first)? {
            s.object("a map of header names to signed bytes")?;
            let mut entries = Vec::new();
            let mut first = true;
            while let Some(name) = s.key(&mut first)? {
                s.array("a sequence of signed bytes")?;
                let mut bytes = Vec::new();
                let mut first = true;
                while s.element(&mut first)? {
                    let byte = s.integer()?;
                    match i8::try_from(byte) {
                        // Lambda serialises header bytes as Java's signed `byte`: -61 is 0xC3.
                        Ok(b) => bytes.push(b as u8),
                        Err(_) => {
                            return Err(
                                s.error(format_args!("invalid value: {byte} is not a signed byte"))
                            )
                        }
                    }
                }
                entries.push((name.into_owned(), bytes));
            }
            list.push(Headers(entries));
        }
        Ok(list)
    }
}

/// Reads `data` both ways, [`MskEvent::parse`] and serde's `Deserialize`, and says how
/// the readings differ, if they do. Two differences are kept on purpose: bytes that are
/// not UTF-8 are refused by the parser where serde_json may skip them unread, and the
/// serde derives read a struct from an array of its fields (`[..]` for an event or a
/// record), which Lambda never sends and the parser refuses.
#[cfg(any(test, feature = "reference"))]
pub fn compare_with_serde(data: &[u8]) -> Result<(), String> {
    let parsed = MskEvent::parse(data.to_vec());
    let read = serde_json::from_slice::<MskEvent>(data);
    let struct_as_array = |e: &serde_json::Error| {
        let e = e.to_string();
        ["an MSK event object", "struct RawRecord"]
            .iter()
            .any(|what| e.contains(&format!("{} {what}", crate::json::SEQUENCE_FOR)))
    };
    match (&parsed, &read) {
        (Err(_), Err(_)) => Ok(()),
        (Err(e), Ok(_)) if std::str::from_utf8(data).is_err() || struct_as_array(e) => Ok(()),
        (Ok(event), Ok(copy)) => {
            let parts = |e: &MskEvent| -> Vec<_> {
                e.records
                    .iter()
                    .map(|r| {
                        let ids = (r.batch_partition.clone(), r.topic.clone(), r.partition);
                        let at = (r.offset, r.timestamp_ms);
                        (ids, at, r.key.clone(), r.value.clone(), r.headers.clone())
                    })
                    .collect()
            };
            if event.origin == copy.origin && parts(event) == parts(copy) {
                Ok(())
            } else {
                Err(format!("parse: {event:?}\nserde: {copy:?}"))
            }
        }
        _ => Err(format!("parse: {parsed:?}\nserde: {read:?}")),
    }
}

/// `text` as bytes of `body` when it lies inside it (borrowed by the parser), else a
/// copy.
fn share(body: Option<&Bytes>, text: Cow<'_, str>) -> Bytes {
    if let (Some(body), Cow::Borrowed(borrowed)) = (body, &text) {
        let start = (borrowed.as_ptr() as usize).wrapping_sub(body.as_ptr() as usize);
        if start <= body.len() && borrowed.len() <= body.len() - start {
            return body.slice(start..start + borrowed.len());
        }
    }
    Bytes::from(text.into_owned().into_bytes())
}

impl RawEvent<'_> {
    /// The event, its records sorted by `"<topic>-<partition>"` key, then offset (Lambda
    /// already sends each partition in offset order; sorting makes the order independent
    /// of the map's). Records of one partition share their key and topic strings; a
    /// record without `topic` takes the key minus its `-<partition>` suffix.
    fn build<E: serde::de::Error>(self, body: Option<&Bytes>) -> Result<MskEvent, E> {
        let text = |t: Option<Text<'_>>| t.map(|t| t.0.into_owned());
        let origin = EventOrigin {
            event_source: text(self.event_source),
            event_source_arn: text(self.event_source_arn),
            bootstrap_servers: text(self.bootstrap_servers),
        };
        let mut groups = self.records.map_or_else(Vec::new, |p| p.0);
        groups.sort_by(|a, b| a.0 .0.cmp(&b.0 .0));
        if let Some(pair) = groups.windows(2).find(|pair| pair[0].0 .0 == pair[1].0 .0) {
            return Err(E::custom(format!(
                "partition key {:?} appears twice in records",
                pair[0].0 .0
            )));
        }
        let total = groups.iter().map(|(_, list)| list.len()).sum();
        let mut records = Vec::with_capacity(total);
        for (batch_partition, list) in groups {
            let batch_partition: Arc<str> = Arc::from(batch_partition.0);
            let mut topic: Option<Arc<str>> = None;
            let start = records.len();
            for record in list {
                let record_topic = match (record.topic, &topic) {
                    (Some(t), Some(shared)) if **shared == *t.0 => shared.clone(),
                    (Some(t), _) => Arc::from(t.0),
                    (None, _) => Arc::from(topic_from_key(&batch_partition)),
                };
                topic = Some(record_topic.clone());
                let payload =
                    |t: Option<Text<'_>>| t.map(|t| Payload::Base64(Base64Text(share(body, t.0))));
                records.push(SourceRecord {
                    batch_partition: batch_partition.clone(),
                    topic: record_topic,
                    partition: record.partition,
                    offset: record.offset,
                    timestamp_ms: record.timestamp,
                    key: payload(record.key),
                    value: payload(record.value),
                    headers: record.headers.into_iter().flat_map(|h| h.0).collect(),
                });
            }
            records[start..].sort_by_key(|r| r.offset);
        }
        Ok(MskEvent { origin, records })
    }
}

/// Where a batch came from: the parts of the MSK event that are not records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventOrigin {
    /// `aws:kafka`, `SelfManagedKafka`, ... treated as an opaque string.
    pub event_source: Option<String>,
    /// The MSK cluster ARN (absent for self-managed Kafka).
    pub event_source_arn: Option<String>,
    /// The source cluster's bootstrap servers, used downstream when `RELAY_BROKERS` is unset.
    pub bootstrap_servers: Option<String>,
}

/// Writes MSK events as Lambda's event source mapping sends them: records grouped by
/// their `"<topic>-<partition>"` key, key and value in base64, headers as lists of signed
/// bytes. The one writer of the generator, `esm` and the tests' event builder; it
/// serialises (serde) to the event's JSON.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventWriter<'a> {
    event_source: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_source_arn: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bootstrap_servers: Option<&'a str>,
    records: BTreeMap<Cow<'a, str>, Vec<RecordOut<'a>>>,
}

/// One record of an [`EventWriter`]'s event.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordOut<'a> {
    /// Source topic.
    pub topic: &'a str,
    /// Source partition.
    pub partition: i64,
    /// Offset.
    pub offset: i64,
    /// Timestamp, epoch milliseconds.
    pub timestamp: i64,
    /// `CREATE_TIME` or `LOG_APPEND_TIME`.
    pub timestamp_type: &'static str,
    /// The key in base64; `None`: no key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<Cow<'a, str>>,
    /// The value in base64; `None`: a tombstone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Cow<'a, str>>,
    /// Headers, each a one-entry map of its name to its bytes (as Lambda writes them).
    pub headers: Vec<BTreeMap<&'a str, Vec<i8>>>,
}

impl<'a> EventWriter<'a> {
    /// An event from the cluster `event_source_arn` (an MSK cluster: `aws:kafka`), else
    /// from a self-managed cluster (`SelfManagedKafka`) at `bootstrap_servers`.
    pub fn new(event_source_arn: Option<&'a str>, bootstrap_servers: Option<&'a str>) -> Self {
        EventWriter {
            event_source: if event_source_arn.is_some() {
                "aws:kafka"
            } else {
                "SelfManagedKafka"
            },
            event_source_arn,
            bootstrap_servers,
            records: BTreeMap::new(),
        }
    }

    /// Appends `record` to the list of its partition, keyed `batch_partition`
    /// (`"<topic>-<partition>"`, which [`EventWriter::key`] makes).
    pub fn push(&mut self, batch_partition: impl Into<Cow<'a, str>>, record: RecordOut<'a>) {
        self.records
            .entry(batch_partition.into())
            .or_default()
            .push(record);
    }

    /// The `"<topic>-<partition>"` key of a partition's records.
    pub fn key(topic: &str, partition: i64) -> String {
        format!("{topic}-{partition}")
    }
}

/// Base64 of `bytes`, as an MSK event carries keys and values.
pub fn base64_text(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Header bytes as Lambda writes them: signed.
pub fn signed_bytes(bytes: &[u8]) -> Vec<i8> {
    bytes.iter().map(|b| *b as i8).collect()
}

/// The largest payload Lambda passes to one invocation (and takes back as its
/// answer): 6 MiB. An MSK event is never larger.
pub const LAMBDA_PAYLOAD_LIMIT: usize = 6 * 1024 * 1024;

/// Per source partition of a batch (its `"<topic>-<partition>"` key), the first record
/// not done: where the partition resumes, and why that record failed when known. What
/// the pipeline reports, Lambda's `batchItemFailures` are made of, and `serve` and
/// `esm` commit and seek by. Partitions keep the order they were first marked in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotDone(Vec<FirstNotDone>);

/// One partition of [`NotDone`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstNotDone {
    /// The `"<topic>-<partition>"` key of the batch.
    pub batch_partition: Arc<str>,
    /// The lowest offset not done: the partition resumes here.
    pub offset: i64,
    /// Why that record failed, when known (a function's answer does not say).
    pub error: Option<RecordError>,
}

impl NotDone {
    /// Nothing not done.
    pub fn new() -> NotDone {
        NotDone::default()
    }

    /// Marks `offset` of `batch_partition` not done. The lowest offset of a partition
    /// stands (with its error).
    pub fn mark(&mut self, batch_partition: Arc<str>, offset: i64, error: Option<RecordError>) {
        match self
            .0
            .iter_mut()
            .find(|f| f.batch_partition == batch_partition)
        {
            Some(first) if offset < first.offset => {
                first.offset = offset;
                first.error = error;
            }
            Some(_) => {}
            None => self.0.push(FirstNotDone {
                batch_partition,
                offset,
                error,
            }),
        }
    }

    /// The first offset not done of `batch_partition`, if it has one.
    pub fn get(&self, batch_partition: &str) -> Option<i64> {
        self.0
            .iter()
            .find(|f| &*f.batch_partition == batch_partition)
            .map(|f| f.offset)
    }

    /// Whether every partition is done.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Partitions with a record not done.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The partitions with a record not done, in the order they were first marked.
    pub fn iter(&self) -> std::slice::Iter<'_, FirstNotDone> {
        self.0.iter()
    }
}

impl FromIterator<(Arc<str>, i64)> for NotDone {
    fn from_iter<I: IntoIterator<Item = (Arc<str>, i64)>>(iter: I) -> NotDone {
        let mut not_done = NotDone::new();
        for (partition, offset) in iter {
            not_done.mark(partition, offset, None);
        }
        not_done
    }
}

impl<'a> IntoIterator for &'a NotDone {
    type Item = &'a FirstNotDone;
    type IntoIter = std::slice::Iter<'a, FirstNotDone>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

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

impl SourceRecord {
    /// Where the record is, for event ids (`cluster`: [`EventOrigin::cluster`]).
    pub fn position<'a>(
        &'a self,
        cluster: &'a str,
        kafka_key: Option<&'a [u8]>,
    ) -> SourcePosition<'a> {
        SourcePosition {
            cluster,
            timestamp_ms: self.timestamp_ms,
            topic: &self.topic,
            partition: self.partition,
            offset: self.offset,
            kafka_key,
        }
    }
}

impl EventOrigin {
    /// The source cluster's identity for event ids: the event source ARN (MSK), else
    /// the bootstrap servers sorted (self-managed Kafka: the order the mapping lists
    /// them in is not the cluster's identity), else empty.
    pub fn cluster(&self) -> std::borrow::Cow<'_, str> {
        if let Some(arn) = self.event_source_arn.as_deref().filter(|a| !a.is_empty()) {
            return arn.into();
        }
        let Some(servers) = self.bootstrap_servers.as_deref() else {
            return "".into();
        };
        let mut hosts: Vec<&str> = servers
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .collect();
        hosts.sort_unstable();
        hosts.join(",").into()
    }
}

/// A record's key or value as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// Base64 text, as Lambda sends it in an MSK event; decoded per record.
    Base64(Base64Text),
    /// The bytes themselves, as a Kafka consumer reads them.
    Bytes(Vec<u8>),
}

/// A record's key or value as an MSK event carries it: base64 text, usually a slice of
/// the event's payload ([`MskEvent::parse`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base64Text(Bytes);

impl Base64Text {
    /// The text.
    pub fn as_str(&self) -> &str {
        // Made only from a `str` (see `share`), so always UTF-8.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The text's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The text's length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the text is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One Kafka record: as Lambda delivered it (key and value still base64-encoded), or as
/// a consumer read it.
#[derive(Debug, Clone)]
pub struct SourceRecord {
    /// The `"<topic>-<partition>"` key of the event's `records` map: the identifier Lambda
    /// expects back in `batchItemFailures`. Shared by all records of the partition.
    pub batch_partition: Arc<str>,
    /// Source topic, from the record itself (topic names may contain `-`).
    pub topic: Arc<str>,
    /// Source partition.
    pub partition: i64,
    /// Source offset.
    pub offset: i64,
    /// Record timestamp, epoch milliseconds.
    pub timestamp_ms: i64,
    /// The key; `None` when the record has none.
    pub key: Option<Payload>,
    /// The value; `None` for a Kafka tombstone.
    pub value: Option<Payload>,
    /// Headers in the order they were sent (Lambda's signed bytes already made bytes).
    pub headers: Vec<(String, Vec<u8>)>,
}

/// A record's key, value and headers as bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecodedRecord {
    /// The Kafka key DMS set (its partition key), if any.
    pub key: Option<Vec<u8>>,
    /// The DMS JSON document; `None` for a tombstone.
    pub value: Option<Vec<u8>>,
    /// Headers in the order they were sent.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// `"dms.public.orders-3"` -> `"dms.public.orders"`.
fn topic_from_key(batch_partition: &str) -> &str {
    batch_partition
        .rsplit_once('-')
        .map_or(batch_partition, |(topic, _)| topic)
}

impl SourceRecord {
    /// Key, value and header bytes as they came (base64 text counts as its length): what
    /// `serve` batches and limits by.
    pub fn size(&self) -> usize {
        let payload = |p: &Option<Payload>| match p {
            Some(Payload::Bytes(b)) => b.len(),
            Some(Payload::Base64(t)) => t.len(),
            None => 0,
        };
        payload(&self.key)
            + payload(&self.value)
            + self
                .headers
                .iter()
                .map(|(n, v)| n.len() + v.len())
                .sum::<usize>()
    }

    /// Decodes key, value and headers. Invalid base64 is a permanent error of the
    /// source stage.
    pub fn decode(&self) -> Result<DecodedRecord, RecordError> {
        Ok(DecodedRecord {
            key: decode_payload(self.key.as_ref(), "key")?,
            value: decode_payload(self.value.as_ref(), "value")?,
            headers: self.headers.clone(),
        })
    }
}

impl SourceRecord {
    /// The record's key as bytes ([`SourceRecord::value_in`]).
    pub fn key_in<'s>(&'s self, buffer: &'s mut Vec<u8>) -> Result<Option<&'s [u8]>, RecordError> {
        payload_in(self.key.as_ref(), buffer, "key")
    }

    /// The record's value as bytes (`None` for a tombstone): borrowed when it came as
    /// bytes, else decoded from base64 into `buffer` (emptied first), so a caller that
    /// keeps one buffer allocates nothing per record. Invalid base64 is the same
    /// permanent error as [`SourceRecord::decode`]'s.
    pub fn value_in<'s>(
        &'s self,
        buffer: &'s mut Vec<u8>,
    ) -> Result<Option<&'s [u8]>, RecordError> {
        payload_in(self.value.as_ref(), buffer, "value")
    }
}

impl SourceRecord {
    /// Key, value and headers for a dead letter: each decoded when it decodes, else the
    /// base64 text Lambda sent, so nothing of the original is lost.
    pub fn original_parts(&self) -> DecodedRecord {
        let part = |payload: Option<&Payload>, what| {
            decode_payload(payload, what).unwrap_or_else(|_| match payload {
                Some(Payload::Base64(text)) => Some(text.as_bytes().to_vec()),
                Some(Payload::Bytes(bytes)) => Some(bytes.clone()),
                None => None,
            })
        };
        DecodedRecord {
            key: part(self.key.as_ref(), "key"),
            value: part(self.value.as_ref(), "value"),
            headers: self.headers.clone(),
        }
    }
}

fn decode_payload(payload: Option<&Payload>, what: &str) -> Result<Option<Vec<u8>>, RecordError> {
    match payload {
        None => Ok(None),
        Some(Payload::Bytes(bytes)) => Ok(Some(bytes.clone())),
        Some(Payload::Base64(text)) => decode_base64(text.as_bytes()).map(Some).map_err(|e| {
            RecordError::permanent(Stage::Source, format!("{what} is not valid base64: {e}"))
        }),
    }
}

fn payload_in<'s>(
    payload: Option<&'s Payload>,
    buffer: &'s mut Vec<u8>,
    what: &str,
) -> Result<Option<&'s [u8]>, RecordError> {
    match payload {
        None => Ok(None),
        Some(Payload::Bytes(bytes)) => Ok(Some(bytes)),
        Some(Payload::Base64(text)) => {
            buffer.clear();
            if base64_simd::STANDARD
                .decode_append(text.as_bytes(), buffer)
                .is_err()
            {
                // What the scalar decoder says (see `decode_base64`).
                buffer.clear();
                let bytes = decode_base64(text.as_bytes()).map_err(|e| {
                    RecordError::permanent(
                        Stage::Source,
                        format!("{what} is not valid base64: {e}"),
                    )
                })?;
                buffer.extend_from_slice(&bytes);
            }
            Ok(Some(buffer))
        }
    }
}

/// Standard base64 with padding, strict (no whitespace, no stray trailing bits), as
/// Lambda writes it: a SIMD decoder, about a fifth of the instructions of a scalar one
/// on a record's value. Only input it refuses goes through the scalar decoder too, for
/// an error that says what and where (both accept exactly the same input: see the test).
fn decode_base64(text: &[u8]) -> Result<Vec<u8>, base64::DecodeError> {
    match base64_simd::STANDARD.decode_to_vec(text) {
        Ok(bytes) => Ok(bytes),
        Err(_) => base64::engine::general_purpose::STANDARD.decode(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: &str) -> MskEvent {
        MskEvent::parse(Bytes::copy_from_slice(json.as_bytes())).expect("test event is valid")
    }

    /// Records come out sorted by partition key and offset, with topics taken from the
    /// record even when the topic contains `-`.
    #[test]
    fn orders_records_and_keeps_topic_names() {
        let MskEvent {
            origin,
            records: recs,
        } = event(
            r#"{"eventSource":"aws:kafka","records":{
              "my-topic-1":[{"topic":"my-topic","partition":1,"offset":9,"timestamp":1,"headers":[]},
                            {"topic":"my-topic","partition":1,"offset":8,"timestamp":1,"headers":[]}],
              "my-topic-0":[{"topic":"my-topic","partition":0,"offset":5,"timestamp":1,"headers":[]}]}}"#,
        );
        assert_eq!(origin.event_source.as_deref(), Some("aws:kafka"));
        let got: Vec<_> = recs
            .iter()
            .map(|r| (&*r.batch_partition, &*r.topic, r.offset))
            .collect();
        assert_eq!(
            got,
            vec![
                ("my-topic-0", "my-topic", 5),
                ("my-topic-1", "my-topic", 8),
                ("my-topic-1", "my-topic", 9)
            ]
        );
    }

    /// Signed header bytes become the UTF-8 bytes they stand for.
    #[test]
    fn decodes_signed_header_bytes() {
        let recs = event(
            r#"{"records":{"t-0":[{"topic":"t","partition":0,"offset":0,"timestamp":1,
               "key":"aw==","value":"e30=","headers":[{"name":[-61,-85]}]}]}}"#,
        )
        .records;
        let decoded = recs[0].decode().expect("valid record");
        assert_eq!(decoded.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(decoded.value.as_deref(), Some(&b"{}"[..]));
        assert_eq!(
            decoded.headers,
            vec![("name".to_owned(), "ë".as_bytes().to_vec())]
        );
    }

    /// Timestamps with a fraction or beyond 64 bits are errors, not panics; one far in
    /// the future (any client can set it, and a broker takes it) is read, not a failed
    /// event; absent headers are none.
    #[test]
    fn msk_event_never_panics_on_timestamps() {
        let with = |ts: &str| {
            format!(
                r#"{{"records":{{"t-0":[{{"topic":"t","partition":0,"offset":0,"timestamp":{ts}}}]}}}}"#
            )
        };
        for far in ["99999999999999999", "9223372036854775807"] {
            let event = event(&with(far));
            assert_eq!(event.records[0].timestamp_ms.to_string(), far);
            let read: MskEvent = serde_json::from_str(&with(far)).expect("serde reads it too");
            assert_eq!(read.records[0].timestamp_ms.to_string(), far);
        }
        for bad in ["1732200000000.5", "1e300", "9223372036854775808"] {
            assert!(MskEvent::parse(Bytes::from(with(bad))).is_err(), "{bad}");
            assert!(
                serde_json::from_str::<MskEvent>(&with(bad)).is_err(),
                "{bad}"
            );
        }
        let event = event(&with("1732200000000"));
        assert_eq!(event.records[0].timestamp_ms, 1_732_200_000_000);
        assert!(event.records[0].headers.is_empty());
    }

    /// Parsed from the payload's bytes, a record's value is a slice of them, not a copy;
    /// an escaped character in the JSON string still reads as itself (then copied); both
    /// entry points read the same event; a partition key given twice is refused.
    #[test]
    fn parse_shares_the_payload_and_reads_escapes() {
        let json = r#"{"eventSourceArn":"arn:x","records":{"t-0":[
            {"topic":"t","partition":0,"offset":1,"timestamp":1,"key":"aw==","value":"e30="},
            {"topic":"t","partition":0,"offset":2,"timestamp":1,"value":"e30\u003d","headers":[{"a":[1],"b":[2]}]}]}}"#;
        let body = Bytes::copy_from_slice(json.as_bytes());
        let event = MskEvent::parse(body.clone()).expect("valid");
        let within = |text: &[u8]| {
            let start = text.as_ptr() as usize;
            let range = body.as_ptr() as usize..body.as_ptr() as usize + body.len();
            range.contains(&start) && range.contains(&(start + text.len() - 1))
        };
        let value = |i: usize| match &event.records[i].value {
            Some(Payload::Base64(text)) => text.clone(),
            other => panic!("a base64 value, got {other:?}"),
        };
        assert!(within(value(0).as_bytes()), "the plain value is shared");
        assert!(!within(value(1).as_bytes()), "the escaped one is a copy");
        assert_eq!(value(1).as_str(), "e30=");
        assert_eq!(
            event.records[1].decode().expect("decodes").value.as_deref(),
            Some(&b"{}"[..])
        );
        assert_eq!(
            event.records[1].headers,
            vec![("a".to_owned(), vec![1]), ("b".to_owned(), vec![2])]
        );
        let via_serde: MskEvent = serde_json::from_str(json).expect("valid");
        assert_eq!(via_serde.origin, event.origin);
        let parts = |e: &MskEvent| -> Vec<_> {
            e.records
                .iter()
                .map(|r| (r.offset, r.key.clone(), r.value.clone(), r.headers.clone()))
                .collect()
        };
        assert_eq!(parts(&via_serde), parts(&event));
        let twice = r#"{"records":{"t-0":[],"t-0":[]}}"#;
        let error = MskEvent::parse(Bytes::from_static(twice.as_bytes())).expect_err("refused");
        assert!(error.to_string().contains("appears twice"), "{error}");
    }

    /// The parser reads every event as serde does: the sample events, and the same
    /// events cut, spliced and scribbled on.
    #[test]
    fn parses_events_as_serde_does() {
        let events: Vec<String> = crate::json::SAMPLE_EVENTS
            .iter()
            .map(|text| text.to_string())
            .chain([
                r#"{"eventSource":"aws:kafka","records":{"t\u002d0":[{"topic":"t",
              "partition":0,"offset":-1,"timestamp":1,"timestampType":"CREATE_TIME",
              "key":"a\u0077==","value":null,"headers":[{"h":[-61,127,0]},{}],"x":[{"y":1}]}]}}"#
                    .to_owned(),
            ])
            .collect();
        crate::json::check_scribbled(
            &events,
            vec![
                "\\u00",
                "-0",
                "1.5",
                "1e3",
                "9223372036854775808",
                "128",
                "-129",
                "\"records\":",
                "\"partition\":",
                "\"offset\":1,",
                "\"timestamp\":",
                "\"headers\":",
                "\"key\":",
                "[1]",
                "é",
            ],
            compare_with_serde,
        );
    }

    /// Each record's keys are guessed from the order of the record before; whatever
    /// that order, a record reads as serde reads it: in Lambda's order, in another,
    /// with whitespace, with a key that begins like a guessed one, with a guessed key
    /// escaped, or given twice, or a comma missing after one.
    #[test]
    fn records_read_alike_whatever_order_came_before() {
        let records = [
            r#"{"topic":"t","partition":0,"offset":1,"timestamp":1,"timestampType":"CREATE_TIME","key":null,"value":"eA==","headers":[]}"#,
            r#"{"topic":"t","partition":0,"offset":2,"timestamp":2,"timestampType":"CREATE_TIME","key":null,"value":"eA==","headers":[]}"#,
            r#"{"headers":[],"key":null,"offset":3,"partition":0,"timestamp":3,"timestampType":"CREATE_TIME","topic":"t","value":"eA=="}"#,
            "{ \"topic\" : \"t\" ,\n\"partition\"\t:0, \"offset\" :4,\"timestamp\":4}",
            r#"{"topicX":"u","topic":"t","partitions":7,"partition":0,"offset":5,"timestamp":5}"#,
            r#"{"top\u0069c":"t","partition":0,"offset":6,"timestamp":6}"#,
            r#"{"topic":"t","partition":0,"offset":7,"timestamp":7,"value":"eA=="}"#,
        ];
        let event =
            |records: &[&str]| format!(r#"{{"records":{{"t-0":[{}]}}}}"#, records.join(","));
        for before in &records {
            let missing_comma = r#"{"topic":"t" "partition":0,"offset":8,"timestamp":8}"#;
            let text = event(&[before, missing_comma]);
            assert_eq!(compare_with_serde(text.as_bytes()), Ok(()), "{text}");
            assert!(MskEvent::parse(text.into_bytes()).is_err());
        }
        // Every record after every other.
        for before in &records {
            for record in &records {
                let text = event(&[before, record]);
                assert_eq!(compare_with_serde(text.as_bytes()), Ok(()), "{text}");
            }
        }
        let all = MskEvent::parse(event(&records).into_bytes()).expect("parses");
        let read: Vec<(&str, i64)> = all.records.iter().map(|r| (&*r.topic, r.offset)).collect();
        let expected: Vec<(&str, i64)> = (1..=7).map(|offset| ("t", offset)).collect();
        assert_eq!(read, expected);
        let twice = event(&[
            records[0],
            r#"{"topic":"t","partition":0,"topic":"u","offset":2,"timestamp":2}"#,
        ]);
        assert!(MskEvent::parse(twice.into_bytes()).is_err());
    }

    /// Events the two readings must treat alike: fields given twice, trailing commas in
    /// every list, numbers at and past their bounds, JSON's whitespace and no other, and
    /// an array where a record is expected next to what serde_json cannot hold as a
    /// value (the readings may differ only on the array).
    #[test]
    fn parses_edge_cases_as_serde_does() {
        let record = r#"{"topic":"t","partition":0,"offset":1,"timestamp":1}"#;
        let cases = [
            format!(r#"{{"records":{{"t-0":[{record}]}}}}"#),
            format!(r#"{{"records":{{"t-0":[{record},]}}}}"#),
            format!(r#"{{"records":{{"t-0":[{record}],}}}}"#),
            format!(r#"{{"records":{{"t-0":[{record}]}},"records":null}}"#),
            r#"{"records":{"t-0":[{"partition":0,"partition":1,"offset":1,"timestamp":1}]}}"#.to_owned(),
            r#"{"records":{"t-0":[{"partition":0,"offset":1,"timestamp":1,"headers":[{"a":[1,]}]}]}}"#.to_owned(),
            r#"{"records":{"t-0":[{"partition":0,"offset":1,"timestamp":1,"headers":[{"a":[1]},]}]}}"#.to_owned(),
            r#"{"records":{"t-0":[{"partition":0,"offset":1,"timestamp":1,"headers":[{"a":[-128,127,-0]}]}]}}"#.to_owned(),
            r#"{"records":{"t-0":[{"partition":0,"offset":1,"timestamp":1,"headers":[{"a":[128]}]}]}}"#.to_owned(),
            r#"{"records":{"t-0":[{"partition":-0,"offset":1,"timestamp":1}]}}"#.to_owned(),
            r#"{"records":{"t-0":[{"partition":0,"offset":9223372036854775808,"timestamp":1}]}}"#.to_owned(),
            r#"{"records":{"t-0":[{"partition":0,"offset":-9223372036854775808,"timestamp":1}]}}"#.to_owned(),
            r#"{"records":{"t-0":[{"partition":0,"offset":1,"timestamp":9223372036854775808}]}}"#.to_owned(),
            r#"{"records":{"t-0":[{"partition":0,"offset":1,"timestamp":8210298412800001}]}}"#.to_owned(),
            r#"{"records":{"t-0":[{"partition":0,"offset":1,"timestamp":1.0}]}}"#.to_owned(),
            format!("{{\"records\":\u{c}{{\"t-0\":[{record}]}}}}"),
            format!("{{\"records\":{{\"t-0\":[{record}]}}}}\u{b}"),
            r#"{"x":1e400,"records":{"t-0":[["t",0,1,2]]}}"#.to_owned(),
            r#"["aws:kafka"]"#.to_owned(),
            format!(r#"{{"records":{{"t\u002d0":[{record}],"t-0":[]}}}}"#),
            format!(r#"{{"eventSource":nul,"records":{{"t-0":[{record}]}}}}"#),
        ];
        for case in &cases {
            assert_eq!(compare_with_serde(case.as_bytes()), Ok(()), "{case}");
        }
        // Not only agreement: these are refused.
        for refused in [1, 2, 3, 4, 5, 6, 8, 9, 10, 12, 14, 15, 16, 19, 20] {
            let case = &cases[refused];
            assert!(
                MskEvent::parse(case.clone().into_bytes()).is_err(),
                "{case}"
            );
        }
    }

    /// Read into a caller's buffer, a record's base64 key and value are the bytes
    /// `decode` gives, written into that buffer (whatever it held); bytes a consumer
    /// read are lent as they are; invalid base64 is the same error as `decode`'s.
    #[test]
    fn key_and_value_read_into_a_buffer_are_what_decode_gives() {
        let recs = event(
            r#"{"records":{"t-0":[{"topic":"t","partition":0,"offset":0,"timestamp":1,
               "key":"a2V5","value":"eyJhIjoxfQ==","headers":[]},
               {"topic":"t","partition":0,"offset":1,"timestamp":1,
               "key":"a2V5","value":"not base64!","headers":[]}]}}"#,
        )
        .records;
        let decoded = recs[0].decode().expect("decodes");
        let mut buffer = b"left from the last record".to_vec();
        let value = recs[0]
            .value_in(&mut buffer)
            .expect("decodes")
            .map(<[u8]>::to_vec);
        assert_eq!(value, decoded.value);
        assert_eq!(buffer, b"{\"a\":1}");
        let key = recs[0]
            .key_in(&mut buffer)
            .expect("decodes")
            .map(<[u8]>::to_vec);
        assert_eq!(key, decoded.key);
        let refused = recs[1].value_in(&mut buffer).expect_err("must fail");
        assert_eq!(Some(refused), recs[1].decode().err());
        let mut read = recs[0].clone();
        read.value = Some(Payload::Bytes(b"as read".to_vec()));
        let lent = read.value_in(&mut buffer).expect("bytes").expect("a value");
        let Some(Payload::Bytes(own)) = &read.value else {
            unreachable!("set above")
        };
        assert_eq!(lent.as_ptr(), own.as_ptr(), "lent, not copied");
    }

    /// Invalid base64 fails the record in the source stage, permanently.
    #[test]
    fn invalid_base64_is_a_permanent_source_error() {
        let recs = event(
            r#"{"records":{"t-0":[{"topic":"t","partition":0,"offset":0,"timestamp":1,
               "value":"not base64!","headers":[]}]}}"#,
        )
        .records;
        let err = recs[0].decode().expect_err("must fail");
        assert_eq!(err.stage, Stage::Source);
        assert!(!err.is_retryable());
    }

    /// The lowest offset of a partition stands, with its error; partitions keep the
    /// order they were first marked in.
    #[test]
    fn not_done_keeps_the_lowest_offset_per_partition() {
        let error = |m: &str| Some(RecordError::retryable(Stage::Sink, m));
        let mut not_done = NotDone::new();
        assert!(not_done.is_empty());
        not_done.mark(Arc::from("t-1"), 9, error("nine"));
        not_done.mark(Arc::from("t-0"), 5, error("five"));
        not_done.mark(Arc::from("t-1"), 4, error("four"));
        not_done.mark(Arc::from("t-1"), 7, error("seven"));
        assert_eq!(not_done.len(), 2);
        assert_eq!(not_done.get("t-1"), Some(4));
        assert_eq!(not_done.get("t-0"), Some(5));
        assert_eq!(not_done.get("t-2"), None);
        let order: Vec<(&str, i64, Option<&str>)> = not_done
            .iter()
            .map(|f| {
                (
                    &*f.batch_partition,
                    f.offset,
                    f.error.as_ref().map(|e| e.message.as_str()),
                )
            })
            .collect();
        assert_eq!(
            order,
            vec![("t-1", 4, Some("four")), ("t-0", 5, Some("five"))]
        );
        let collected: NotDone = [(Arc::from("a-0"), 3), (Arc::from("a-0"), 1)]
            .into_iter()
            .collect();
        assert_eq!(collected.get("a-0"), Some(1));
    }

    proptest::proptest! {
        /// The SIMD decoder accepts exactly what the scalar one does, and gives the same
        /// bytes: for encodings of any bytes, and for strings near base64 (padding in
        /// the wrong place, stray trailing bits, whitespace, URL-safe letters, control
        /// and non-ASCII characters), each decoder asked directly.
        #[test]
        fn simd_base64_accepts_what_the_scalar_decoder_accepts(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
            near in "[A-Za-z0-9+/=_ \\-\t\n\u{0}\u{e9}\u{1f600}]{0,40}",
            at in 0usize..300,
            with in "[A-Za-z0-9+/=_ ]",
        ) {
            let scalar = |t: &str| base64::engine::general_purpose::STANDARD.decode(t).ok();
            let encoded = base64_text(&bytes);
            proptest::prop_assert_eq!(decode_base64(encoded.as_bytes()).ok(), Some(bytes));
            let mut changed = encoded.clone();
            if !changed.is_empty() {
                let i = at % changed.len();
                changed.replace_range(i..=i, &with);
            }
            for text in [&encoded, &near, &changed, &format!("{encoded}{near}")] {
                proptest::prop_assert_eq!(
                    base64_simd::STANDARD.decode_to_vec(text.as_str()).ok(),
                    scalar(text),
                    "{:?}", text
                );
            }
        }
    }
}
