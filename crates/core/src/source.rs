//! MSK event -> ordered [`SourceRecord`]s, and their base64 decoding.
//!
//! Lambda sends `records` as a map keyed `"<topic>-<partition>"` (a `HashMap`, so in no
//! particular order). [`records`] flattens it into one list sorted by that key and, within
//! a key, by offset, so that everything downstream can rely on source order. Decoding
//! (base64 of key and value, Java's signed header bytes) happens per record in
//! [`SourceRecord::decode`], inside the concurrent transform tasks, so a record that does
//! not decode fails alone.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use aws_lambda_events::encodings::MillisecondTimestamp;
use aws_lambda_events::event::kafka::{KafkaEvent, KafkaRecord};
use base64::Engine;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{RecordError, Stage};

/// The MSK event as the handler receives it: an `aws_lambda_events` [`KafkaEvent`],
/// deserialised without panicking.
///
/// `KafkaEvent`'s own deserialiser asserts that a record's `timestamp` has no fraction
/// and panics otherwise (found by fuzzing). This type reads the same JSON through a
/// mirror of the record and turns bad values into errors instead: timestamps must be
/// whole milliseconds within chrono's range; absent `headers` mean none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MskEvent(pub KafkaEvent);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MirrorEvent {
    #[serde(default)]
    event_source: Option<String>,
    #[serde(default)]
    event_source_arn: Option<String>,
    #[serde(default)]
    records: Option<HashMap<String, Vec<MirrorRecord>>>,
    #[serde(default)]
    bootstrap_servers: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MirrorRecord {
    #[serde(default)]
    topic: Option<String>,
    partition: i64,
    offset: i64,
    timestamp: serde_json::Number,
    #[serde(default)]
    timestamp_type: Option<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    headers: Vec<HashMap<String, Vec<i8>>>,
}

impl<'de> Deserialize<'de> for MskEvent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mirror = MirrorEvent::deserialize(deserializer)?;
        let mut event = KafkaEvent::default();
        event.event_source = mirror.event_source;
        event.event_source_arn = mirror.event_source_arn;
        event.bootstrap_servers = mirror.bootstrap_servers;
        for (batch_partition, list) in mirror.records.unwrap_or_default() {
            let records = list
                .into_iter()
                .map(|r| {
                    let millis = r.timestamp.as_i64().ok_or_else(|| {
                        D::Error::custom("record timestamp must be whole epoch milliseconds")
                    })?;
                    let time = chrono::DateTime::from_timestamp_millis(millis)
                        .ok_or_else(|| D::Error::custom("record timestamp out of range"))?;
                    let mut record = KafkaRecord::default();
                    record.topic = r.topic;
                    record.partition = r.partition;
                    record.offset = r.offset;
                    record.timestamp = MillisecondTimestamp(time);
                    record.timestamp_type = r.timestamp_type;
                    record.key = r.key;
                    record.value = r.value;
                    record.headers = r.headers;
                    Ok(record)
                })
                .collect::<Result<Vec<_>, D::Error>>()?;
            event.records.insert(batch_partition, records);
        }
        Ok(MskEvent(event))
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
    Base64(String),
    /// The bytes themselves, as a Kafka consumer reads them.
    Bytes(Vec<u8>),
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

/// Splits an MSK event into its origin and its records in source order.
///
/// Records are ordered by `batch_partition`, then offset (Lambda already sends each
/// partition in offset order; sorting makes the order independent of map iteration).
pub fn records(event: KafkaEvent) -> (EventOrigin, Vec<SourceRecord>) {
    let origin = EventOrigin {
        event_source: event.event_source,
        event_source_arn: event.event_source_arn,
        bootstrap_servers: event.bootstrap_servers,
    };
    let mut groups: Vec<(String, Vec<_>)> = event.records.into_iter().collect();
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    let total = groups.iter().map(|(_, list)| list.len()).sum();
    let mut out = Vec::with_capacity(total);
    for (batch_partition, list) in groups {
        let batch_partition: Arc<str> = Arc::from(batch_partition);
        // Records of one partition share the topic string; fall back to the map key
        // minus its `-<partition>` suffix when a record omits `topic`.
        let mut topic: Option<Arc<str>> = None;
        let start = out.len();
        for record in list {
            let record_topic = match (&record.topic, &topic) {
                (Some(t), Some(shared)) if **shared == *t => shared.clone(),
                (Some(t), _) => Arc::from(t.as_str()),
                (None, _) => Arc::from(topic_from_key(&batch_partition)),
            };
            topic = Some(record_topic.clone());
            out.push(SourceRecord {
                batch_partition: batch_partition.clone(),
                topic: record_topic,
                partition: record.partition,
                offset: record.offset,
                timestamp_ms: record.timestamp.timestamp_millis(),
                key: record.key.map(Payload::Base64),
                value: record.value.map(Payload::Base64),
                // Lambda serialises header bytes as Java's signed `byte`: -61 is 0xC3.
                headers: record
                    .headers
                    .into_iter()
                    .flat_map(|h| h.into_iter())
                    .map(|(name, bytes)| (name, bytes.into_iter().map(|b| b as u8).collect()))
                    .collect(),
            });
        }
        out[start..].sort_by_key(|r| r.offset);
    }
    (origin, out)
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
        Some(Payload::Base64(text)) => decode_base64(text).map(Some).map_err(|e| {
            RecordError::permanent(Stage::Source, format!("{what} is not valid base64: {e}"))
        }),
    }
}

/// Standard base64 with padding, strict (no whitespace, no stray trailing bits), as
/// Lambda writes it: a SIMD decoder, about a fifth of the instructions of a scalar one
/// on a record's value. Only input it refuses goes through the scalar decoder too, for
/// an error that says what and where (both accept exactly the same input: see the test).
fn decode_base64(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    match base64_simd::STANDARD.decode_to_vec(text) {
        Ok(bytes) => Ok(bytes),
        Err(_) => base64::engine::general_purpose::STANDARD.decode(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: &str) -> KafkaEvent {
        serde_json::from_str(json).expect("test event is valid")
    }

    /// Records come out sorted by partition key and offset, with topics taken from the
    /// record even when the topic contains `-`.
    #[test]
    fn orders_records_and_keeps_topic_names() {
        let (origin, recs) = records(event(
            r#"{"eventSource":"aws:kafka","records":{
              "my-topic-1":[{"topic":"my-topic","partition":1,"offset":9,"timestamp":1,"headers":[]},
                            {"topic":"my-topic","partition":1,"offset":8,"timestamp":1,"headers":[]}],
              "my-topic-0":[{"topic":"my-topic","partition":0,"offset":5,"timestamp":1,"headers":[]}]}}"#,
        ));
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
        let (_, recs) = records(event(
            r#"{"records":{"t-0":[{"topic":"t","partition":0,"offset":0,"timestamp":1,
               "key":"aw==","value":"e30=","headers":[{"name":[-61,-85]}]}]}}"#,
        ));
        let decoded = recs[0].decode().expect("valid record");
        assert_eq!(decoded.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(decoded.value.as_deref(), Some(&b"{}"[..]));
        assert_eq!(
            decoded.headers,
            vec![("name".to_owned(), "ë".as_bytes().to_vec())]
        );
    }

    /// Timestamps with a fraction or out of range are errors, not panics; absent
    /// headers are none.
    #[test]
    fn msk_event_never_panics_on_timestamps() {
        let with = |ts: &str| {
            format!(
                r#"{{"records":{{"t-0":[{{"topic":"t","partition":0,"offset":0,"timestamp":{ts}}}]}}}}"#
            )
        };
        assert!(serde_json::from_str::<MskEvent>(&with("1732200000000.5")).is_err());
        assert!(serde_json::from_str::<MskEvent>(&with("1e300")).is_err());
        assert!(serde_json::from_str::<MskEvent>(&with("99999999999999999")).is_err());
        let MskEvent(event) = serde_json::from_str(&with("1732200000000")).expect("valid");
        assert_eq!(
            event.records["t-0"][0].timestamp.timestamp_millis(),
            1_732_200_000_000
        );
        assert!(event.records["t-0"][0].headers.is_empty());
    }

    /// Invalid base64 fails the record in the source stage, permanently.
    #[test]
    fn invalid_base64_is_a_permanent_source_error() {
        let (_, recs) = records(event(
            r#"{"records":{"t-0":[{"topic":"t","partition":0,"offset":0,"timestamp":1,
               "value":"not base64!","headers":[]}]}}"#,
        ));
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
            proptest::prop_assert_eq!(decode_base64(&encoded).ok(), Some(bytes));
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
