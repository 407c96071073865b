//! Poison records -> dead-letter messages.
//!
//! A record that can never succeed (it does not decode, no route takes it under
//! `unrouted = "dlq"`, a key column is missing, a value does not coerce, the broker
//! rejects it as too large) must not block its partition. Under `on_poison = "dlq"` it
//! goes to the dead-letter topic exactly as it arrived (key, value and headers, decoded
//! from base64 when they decode, else the base64 text itself) with headers saying why
//! and where from, so it can be inspected and replayed.

use std::borrow::Cow;
use std::sync::Arc;

use crate::error::RecordError;
use crate::source::{EventOrigin, SourceRecord};
use crate::transform::{header, OutMessage};

/// The dead-letter message for `record`, which failed with `error`.
pub fn dead_letter(
    topic: &Arc<str>,
    record: &SourceRecord,
    error: &RecordError,
    origin: &EventOrigin,
) -> OutMessage {
    let original = record.original_parts();
    let (key, value) = (original.key, original.value);
    let mut headers: Vec<(Cow<'static, str>, Vec<u8>)> = original
        .headers
        .into_iter()
        .map(|(name, bytes)| (Cow::Owned(name), bytes))
        .collect();
    headers.extend([
        (
            Cow::Borrowed(header::ERROR),
            error.message.as_bytes().to_vec(),
        ),
        (
            Cow::Borrowed(header::ERROR_STAGE),
            error.stage.as_str().as_bytes().to_vec(),
        ),
        (
            Cow::Borrowed(header::SOURCE_TOPIC),
            record.topic.as_bytes().to_vec(),
        ),
        (
            Cow::Borrowed(header::SOURCE_PARTITION),
            record.partition.to_string().into_bytes(),
        ),
        (
            Cow::Borrowed(header::SOURCE_OFFSET),
            record.offset.to_string().into_bytes(),
        ),
    ]);
    if let Some(table) = &error.table {
        headers.push((Cow::Borrowed(header::TABLE), table.as_bytes().to_vec()));
    }
    if let Some(arn) = &origin.event_source_arn {
        headers.push((
            Cow::Borrowed(header::EVENT_SOURCE_ARN),
            arn.as_bytes().to_vec(),
        ));
    }
    OutMessage {
        topic: topic.clone(),
        key,
        value,
        headers,
    }
}
