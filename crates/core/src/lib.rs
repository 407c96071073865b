//! The pure core of cdc-relay: what a change record becomes, with no Kafka client, no
//! AWS SDK and no async runtime. The Lambda function, the local runner and the fuzz
//! targets all build on it.
//!
//! # Layout
//!
//! A record travels one way through these modules:
//!
//! - [`source`]: MSK `KafkaEvent` -> ordered [`source::SourceRecord`]s; base64 and headers.
//! - [`dms`]: DMS JSON -> [`dms::ChangeEvent`], borrowed: rows are raw JSON text per column.
//! - [`transform`]: the routes file (filters, pseudonyms, JSON Schemas of the output);
//!   change -> [`transform::OutMessage`]s.
//! - [`deadletter`]: poison records -> dead-letter messages with the reason and origin.
//! - [`generate`]: synthetic MSK events of DMS records (benchmarks, load tests).
//! - [`error`]: typed record and configuration errors (retryable or permanent).
//!
//! [`process`] is one record through the first three: what the pipeline runs per record.

pub mod deadletter;
pub mod dms;
pub mod error;
pub mod generate;
pub mod source;
pub mod transform;

pub use error::{ConfigError, RecordError, Stage};

use dms::Decoder;
use source::SourceRecord;
use transform::{SkipReason, Transformed, Transformer};

/// Decodes and transforms one record: base64, DMS JSON, routes. `table`: when `Some`,
/// receives the record's `schema.table` once it is known (for per-table counts).
pub fn process(
    decoder: &Decoder,
    transformer: &Transformer,
    record: &SourceRecord,
    cluster: &str,
    table: &mut Option<Option<String>>,
) -> Result<Transformed, RecordError> {
    let decoded = record.decode()?;
    let Some(value) = decoded.value.as_deref() else {
        return Ok(Transformed::Skipped(SkipReason::SourceTombstone));
    };
    let change = decoder.decode(value)?;
    let qualified = || format!("{}.{}", change.schema, change.table);
    if let Some(slot) = table {
        *slot = Some(qualified());
    }
    let position = record.position(cluster, decoded.key.as_deref());
    transformer
        .transform(position, &change)
        .map_err(|e| e.with_table(qualified()))
}
