//! The pure core of cdc-relay: what a change record becomes, with no Kafka client, no
//! AWS SDK and no async runtime. The Lambda function, the local runner and the fuzz
//! targets all build on it.
//!
//! # Layout
//!
//! A record travels one way through these modules:
//!
//! - [`source`]: MSK event bytes -> ordered [`source::SourceRecord`]s; base64 and headers.
//! - [`dms`]: DMS JSON -> [`dms::ChangeEvent`], borrowed: rows are raw JSON text per column.
//! - [`transform`]: the routes file (filters, pseudonyms, JSON Schemas of the output);
//!   change -> [`transform::OutMessage`]s.
//! - [`deadletter`]: poison records -> dead-letter messages with the reason and origin.
//! - [`generate`]: synthetic MSK events of DMS records (benchmarks, load tests).
//! - [`error`]: typed record and configuration errors (retryable or permanent).
//! - `json` (private): the validating JSON scanner `source` and `dms` read with.
//!
//! [`process`] is one record through the first three: what the pipeline runs per record.

// No unsafe code of its own: what is unsafe runs in its dependencies (base64-simd's SIMD
// decoder among them), which the fuzz targets reach under AddressSanitizer.
#![forbid(unsafe_code)]

pub mod deadletter;
pub mod dms;
pub mod error;
pub mod generate;
mod json;
pub mod source;
pub mod transform;

pub use error::{ConfigError, RecordError, Stage};

use dms::Decoder;
use source::SourceRecord;
use transform::{SkipReason, Transformed, Transformer};

/// What [`process`] made of one record.
#[derive(Debug)]
pub struct Processed {
    /// Its messages, why it is skipped, or its error.
    pub result: Result<Transformed, RecordError>,
    /// Its `schema.table` once known, when asked for (per-table counts); `None` when
    /// not asked for or when the record failed before its table was known.
    pub table: Option<String>,
}

/// Decodes and transforms one record: base64, DMS JSON, routes. `with_table`: also
/// name the record's table ([`Processed::table`]).
pub fn process(
    decoder: &Decoder,
    transformer: &Transformer,
    record: &SourceRecord,
    cluster: &str,
    with_table: bool,
) -> Processed {
    let mut table = None;
    let result = caught(|| {
        transform_record(
            decoder,
            transformer,
            record,
            cluster,
            with_table,
            &mut table,
        )
    })
    .unwrap_or_else(|Panicked| {
        // The record's table, for its route's `on_poison` and the per-table counts:
        // read again without the routes (itself caught, should the decoder be what
        // panicked).
        let qualified = caught_table(decoder, record);
        if with_table {
            table.clone_from(&qualified);
        }
        let error = Panicked::error();
        Err(match qualified {
            Some(qualified) => error.with_table(qualified),
            None => error,
        })
    });
    Processed { result, table }
}

/// A panic caught by [`caught`].
#[derive(Debug)]
struct Panicked;

impl Panicked {
    /// The permanent error of a record the relay panicked on: the record is
    /// dead-lettered (or skipped, as its route's `on_poison` says) instead of failing
    /// every record of its chunk on every retry, which under `serve` (no retry cap)
    /// would stop its partitions for good. The panic's own message goes to the log as
    /// every panic's does, not into the error: it may quote the record's values, which a
    /// dead letter's headers must not carry.
    fn error() -> RecordError {
        RecordError::permanent(
            Stage::Transform,
            "the relay panicked on this record (a defect: please report it with the panic \
             in the log)",
        )
    }
}

/// Runs `work`, catching a panic in it (a defect of the relay that this record's input
/// meets). The decoder and the transformer hold no state a panic could leave half
/// written (the id prefix cache hashes a new prefix before it writes its entry, a row
/// shape is remembered only once it is worked out, and the metadata key order a reader
/// guesses from is written whole, and only checked guesses are made from it). The
/// scratch a thread keeps between records is safe too: its lists are kept empty (each is
/// emptied before it is kept), its buffers are emptied before each use, and no pool is
/// borrowed while other code runs.
fn caught<T>(work: impl FnOnce() -> T) -> Result<T, Panicked> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).map_err(|_| Panicked)
}

/// The record's `schema.table`, if its DMS document reads; `None` if reading it panics.
fn caught_table(decoder: &Decoder, record: &SourceRecord) -> Option<String> {
    caught(|| {
        let decoded = record.decode().ok()?;
        let change = decoder.decode(decoded.value.as_deref()?).ok()?;
        Some(format!("{}.{}", change.schema, change.table))
    })
    .ok()
    .flatten()
}

fn transform_record(
    decoder: &Decoder,
    transformer: &Transformer,
    record: &SourceRecord,
    cluster: &str,
    with_table: bool,
    table: &mut Option<String>,
) -> Result<Transformed, RecordError> {
    let mut buffers = Buffers::take();
    let Buffers { key, value } = &mut buffers;
    // The key first, as `SourceRecord::decode` reads them (the same error when both fail).
    let key = record.key_in(key)?;
    let Some(value) = record.value_in(value)? else {
        return Ok(Transformed::Skipped(SkipReason::SourceTombstone));
    };
    let change = decoder.decode(value)?;
    let qualified = || format!("{}.{}", change.schema, change.table);
    if with_table {
        *table = Some(qualified());
    }
    let position = record.position(cluster, key);
    transformer
        .transform(position, &change)
        .map_err(|e| e.with_table(qualified()))
}

/// The buffers a record's base64 key and value are decoded into: one pair per thread,
/// taken for a record and given back after it (a thread decodes one record at a time),
/// so decoding allocates nothing once they have grown to the records' size.
struct Buffers {
    key: Vec<u8>,
    value: Vec<u8>,
}

/// A value buffer that grew past this is not kept (a large value now and then does not
/// hold its memory on every thread): with the key's, a thread keeps at most 260 KiB here.
const BUFFER_KEPT_MAX: usize = 256 * 1024;

/// The same for the key buffer: a record's key is a few columns' values.
const KEY_BUFFER_KEPT_MAX: usize = 4 * 1024;

thread_local! {
    /// The thread's key and value buffers, between records.
    static BUFFERS: std::cell::Cell<(Vec<u8>, Vec<u8>)> =
        const { std::cell::Cell::new((Vec::new(), Vec::new())) };
}

impl Buffers {
    fn take() -> Buffers {
        let (key, value) = BUFFERS.try_with(std::cell::Cell::take).unwrap_or_default();
        Buffers { key, value }
    }
}

impl Drop for Buffers {
    /// Given back to the thread (dropped instead when one grew too large).
    fn drop(&mut self) {
        let keep = |buffer: &mut Vec<u8>, most: usize| {
            let mut buffer = std::mem::take(buffer);
            if buffer.capacity() > most {
                buffer = Vec::new();
            }
            buffer
        };
        let kept = (
            keep(&mut self.key, KEY_BUFFER_KEPT_MAX),
            keep(&mut self.value, BUFFER_KEPT_MAX),
        );
        // A thread being torn down keeps nothing.
        let _ = BUFFERS.try_with(|buffers| buffers.set(kept));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As Lambda hands a record over: base64 key and value in an MSK event.
    fn lambda_record(key: &[u8], value: &[u8]) -> SourceRecord {
        use base64::Engine;
        let base64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        let event = format!(
            r#"{{"records":{{"dms-0":[{{"topic":"dms","partition":0,"offset":1,"timestamp":1,"key":"{}","value":"{}","headers":[]}}]}}}}"#,
            base64(key),
            base64(value)
        );
        source::MskEvent::parse(event.into_bytes())
            .expect("a valid event")
            .records
            .remove(0)
    }

    fn emp_routes() -> Transformer {
        Transformer::new(
            transform::Routes::parse("[[route]]\ntable = \"hr.emp\"\ntopic = \"emp\"\n", "t")
                .expect("valid routes"),
        )
    }

    fn emp_insert(note: &str) -> String {
        format!(
            r#"{{"data":{{"id":1,"note":"{note}"}},"metadata":{{"record-type":"data","operation":"insert","schema-name":"hr","table-name":"emp"}}}}"#
        )
    }

    /// The thread's key and value buffers are given back after a record, grown to its
    /// size, and each is not kept once it outgrew its bound ([`KEY_BUFFER_KEPT_MAX`],
    /// [`BUFFER_KEPT_MAX`]).
    #[test]
    fn decoding_buffers_are_kept_unless_they_grew_too_large() {
        let kept = || {
            BUFFERS.with(|b| {
                let buffers = b.take();
                let capacities = (buffers.0.capacity(), buffers.1.capacity());
                b.set(buffers);
                capacities
            })
        };
        let transformed = |key: &[u8], value: &str| {
            let out = process(
                &Decoder::default(),
                &emp_routes(),
                &lambda_record(key, value.as_bytes()),
                "c",
                false,
            );
            assert!(
                matches!(out.result, Ok(Transformed::Messages(_))),
                "{:?}",
                out.result
            );
        };
        let small = emp_insert("short");
        transformed(b"hr.emp", &small);
        let (key, value) = kept();
        assert!(
            key >= 6 && value >= small.len(),
            "both buffers kept: {key}, {value}"
        );
        transformed(&vec![b'k'; KEY_BUFFER_KEPT_MAX + 1], &small);
        let (key, value) = kept();
        assert_eq!(key, 0, "a key buffer that outgrew its bound is dropped");
        assert!(value >= small.len(), "the value's is kept");
        transformed(b"hr.emp", &emp_insert(&"x".repeat(BUFFER_KEPT_MAX)));
        let (key, value) = kept();
        assert!(key >= 6, "the key's is kept");
        assert_eq!(value, 0, "a value buffer that outgrew its bound is dropped");
    }

    /// A record whose key and value are both not base64 fails with the key's error, as
    /// `SourceRecord::decode` reads them: the key first.
    #[test]
    fn a_record_with_both_parts_invalid_fails_on_its_key() {
        let event = r#"{"records":{"dms-0":[{"topic":"dms","partition":0,"offset":1,"timestamp":1,"key":"no key!","value":"no value!","headers":[]}]}}"#;
        let record = source::MskEvent::parse(event.as_bytes().to_vec())
            .expect("a valid event")
            .records
            .remove(0);
        let out = process(&Decoder::default(), &emp_routes(), &record, "c", false);
        let error = out.result.expect_err("not base64");
        assert!(
            error.to_string().contains("key is not valid base64"),
            "{error}"
        );
        assert_eq!(Some(error), record.decode().err());
    }

    /// A panic while decoding or transforming is the record's permanent error (so it
    /// is dead-lettered), without the panic's message (it may quote values); a result
    /// passes through.
    #[test]
    fn a_panic_while_transforming_is_the_records_permanent_error() {
        let secret = "kim@example.com";
        assert!(matches!(caught(|| 7), Ok(7)));
        assert!(caught(|| panic!("byte index 3 of {secret:?}")).is_err());
        let error = Panicked::error();
        assert!(!error.is_retryable());
        assert!(!error.to_string().contains(secret), "{error}");
    }

    /// The table of a record the relay panicked on is read again, for its route's
    /// `on_poison` and the per-table counts; a record that does not read has none.
    #[test]
    fn the_table_of_a_record_panicked_on_is_read_again() {
        let record = |value: Option<&[u8]>| SourceRecord {
            batch_partition: std::sync::Arc::from("dms-0"),
            topic: std::sync::Arc::from("dms"),
            partition: 0,
            offset: 1,
            timestamp_ms: 0,
            key: None,
            value: value.map(|v| source::Payload::Bytes(v.to_vec())),
            headers: Vec::new(),
        };
        let doc = br#"{"data":{"id":1},"metadata":{"record-type":"data","operation":"insert","schema-name":"hr","table-name":"emp"}}"#;
        let decoder = Decoder::default();
        assert_eq!(
            caught_table(&decoder, &record(Some(doc))).as_deref(),
            Some("hr.emp")
        );
        assert_eq!(caught_table(&decoder, &record(Some(b"{"))), None);
        assert_eq!(caught_table(&decoder, &record(None)), None);
    }
}
