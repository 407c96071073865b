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
    let result = transform_record(
        decoder,
        transformer,
        record,
        cluster,
        with_table,
        &mut table,
    );
    Processed { result, table }
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
