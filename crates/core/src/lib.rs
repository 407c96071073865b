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
    });
    Processed { result, table }
}

/// Runs `transform`; a panic in it (a defect of the relay that this record's input
/// meets) is the record's permanent error, naming the panic: the record is
/// dead-lettered instead of failing every record of its chunk on every retry, which
/// under `serve` (no retry cap) would stop its partitions for good. The decoder and the
/// transformer hold no state a panic could leave half written (the id prefix cache
/// writes its key before its state).
fn caught(
    transform: impl FnOnce() -> Result<Transformed, RecordError>,
) -> Result<Transformed, RecordError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(transform)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("no message");
        Err(RecordError::permanent(
            Stage::Transform,
            format!("the relay panicked on this record (a defect: please report it): {what}"),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A panic while decoding or transforming is the record's permanent error (so it
    /// is dead-lettered), with the panic's message; a result passes through.
    #[test]
    fn a_panic_while_transforming_is_the_records_permanent_error() {
        let error = caught(|| panic!("index 7 out of range")).expect_err("an error");
        assert!(!error.is_retryable());
        assert!(
            error.to_string().contains("index 7 out of range"),
            "{error}"
        );
        let formatted = 7;
        let error = caught(|| panic!("index {formatted} out of range")).expect_err("an error");
        assert!(
            error.to_string().contains("index 7 out of range"),
            "{error}"
        );
        let skipped = caught(|| Ok(Transformed::Skipped(SkipReason::SourceTombstone)));
        assert!(matches!(
            skipped,
            Ok(Transformed::Skipped(SkipReason::SourceTombstone))
        ));
    }
}

fn transform_record(
    decoder: &Decoder,
    transformer: &Transformer,
    record: &SourceRecord,
    cluster: &str,
    with_table: bool,
    table: &mut Option<String>,
) -> Result<Transformed, RecordError> {
    let decoded = record.decode()?;
    let Some(value) = decoded.value.as_deref() else {
        return Ok(Transformed::Skipped(SkipReason::SourceTombstone));
    };
    let change = decoder.decode(value)?;
    let qualified = || format!("{}.{}", change.schema, change.table);
    if with_table {
        *table = Some(qualified());
    }
    let position = record.position(cluster, decoded.key.as_deref());
    transformer
        .transform(position, &change)
        .map_err(|e| e.with_table(qualified()))
}
