//! What a batch shows of itself: the trace headers carried onto every message, and the
//! problem log of a record that failed or was poison (its value only with
//! `log_values`, redacted as its dead letter would be).

use crate::deadletter::redacted_value;
use crate::error::RecordError;
use crate::source::SourceRecord;
use crate::transform::Transformed;

use super::Pipeline;

/// Header carrying the W3C trace context from source record to downstream message.
pub const TRACEPARENT: &str = "traceparent";
/// Header carrying the Lambda invocation's X-Ray trace id.
pub const XRAY_TRACE_ID: &str = "x-amzn-trace-id";

/// Longest record value written to a problem log with `log_values` (bytes).
const LOGGED_VALUE_MAX: usize = 4096;

impl Pipeline {
    /// A record's value as a problem log may show it: redacted as its dead letter
    /// would be (unless `dead_letter_value = "original"`).
    pub(super) fn loggable_value(&self, record: &SourceRecord) -> String {
        logged_value(record, |value| {
            match self.transformer.routes().dead_letter_value {
                crate::transform::routes::DeadLetterValue::Original => {
                    Some(std::borrow::Cow::Borrowed(value))
                }
                crate::transform::routes::DeadLetterValue::Redacted => redacted_value(
                    value,
                    self.transformer.routes(),
                    self.decoder.before_field(),
                )
                .or_else(|| {
                    (!self.transformer.routes().redacts_columns())
                        .then_some(std::borrow::Cow::Borrowed(value))
                }),
            }
        })
    }
}

/// Carries the source record's W3C `traceparent` and the invocation's X-Ray trace id
/// onto every message made from it. A message that has such a header already (an
/// outbox row's own trace context, placed by its route) keeps that one alone: two
/// headers of one name leave a reader to pick either.
pub(super) fn traced(
    result: Result<Transformed, RecordError>,
    record: &SourceRecord,
    xray: Option<&[u8]>,
) -> Result<Transformed, RecordError> {
    let Ok(Transformed::Messages(mut messages)) = result else {
        return result;
    };
    let traceparent = record
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(TRACEPARENT))
        .map(|(_, bytes)| bytes.as_slice());
    for message in &mut messages {
        let has = |name: &str| {
            message
                .headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name))
        };
        let tp = traceparent.filter(|_| !has(TRACEPARENT));
        let id = xray.filter(|_| !has(XRAY_TRACE_ID));
        if let Some(tp) = tp {
            message.headers.push(TRACEPARENT, tp);
        }
        if let Some(id) = id {
            message.headers.push(XRAY_TRACE_ID, id);
        }
    }
    Ok(Transformed::Messages(messages))
}

/// Logs a record that failed or was poison: where it is and why, never its content
/// unless `value` (then its value as [`Pipeline::loggable_value`] shows it).
pub(super) fn log_failure(record: &SourceRecord, error: &RecordError, value: Option<String>) {
    let table = error.table.as_deref().unwrap_or("-");
    if let Some(value) = value {
        tracing::warn!(
            topic = %record.topic, partition = record.partition, offset = record.offset,
            table, stage = %error.stage, retryable = error.retryable,
            error = %error.message, value = %value, "record failed"
        );
    } else {
        tracing::warn!(
            topic = %record.topic, partition = record.partition, offset = record.offset,
            table, stage = %error.stage, retryable = error.retryable,
            error = %error.message, "record failed"
        );
    }
}

/// The record's value as text for a problem log, after `redact` (`None`: the value
/// cannot be read as a DMS record, so nothing of it is shown): lossy UTF-8, cut at a
/// character boundary after [`LOGGED_VALUE_MAX`] bytes.
fn logged_value(
    record: &SourceRecord,
    redact: impl FnOnce(&[u8]) -> Option<std::borrow::Cow<'_, [u8]>>,
) -> String {
    let value = match record.decode() {
        Ok(decoded) => decoded.value,
        Err(_) => return "<not base64>".to_owned(),
    };
    let Some(bytes) = value else {
        return "<null>".to_owned();
    };
    let Some(bytes) = redact(&bytes) else {
        return "<not a DMS record: not shown>".to_owned();
    };
    let text = String::from_utf8_lossy(&bytes);
    if text.len() <= LOGGED_VALUE_MAX {
        return text.into_owned();
    }
    let mut end = LOGGED_VALUE_MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::transform::{MessageHeaders, OutMessage};

    fn message(headers: &[(&'static str, &[u8])]) -> OutMessage {
        let mut list = MessageHeaders::with_capacity(4, 64);
        for (name, value) in headers {
            list.push(*name, value);
        }
        OutMessage {
            topic: Arc::from("out"),
            key: Some(b"k".to_vec()),
            value: Some(b"{}".to_vec()),
            headers: list,
        }
    }

    /// The record's trace context reaches each message once; a message whose route
    /// placed its own (an outbox row's `traceparent`) keeps that one alone.
    #[test]
    fn a_message_keeps_the_trace_context_it_has() {
        let record = SourceRecord {
            batch_partition: Arc::from("src-0"),
            topic: Arc::from("src"),
            partition: 0,
            offset: 1,
            timestamp_ms: 0,
            key: None,
            value: None,
            headers: vec![("traceparent".to_owned(), b"00-record-01".to_vec())],
        };
        let messages = vec![
            message(&[]),
            message(&[
                ("traceparent", b"00-outbox-01"),
                ("x-amzn-trace-id", b"Root=row"),
            ]),
        ];
        let Ok(Transformed::Messages(out)) = traced(
            Ok(Transformed::Messages(messages)),
            &record,
            Some(b"Root=lambda"),
        ) else {
            panic!("messages expected");
        };
        let all = |m: &OutMessage, name: &str| -> Vec<Vec<u8>> {
            m.headers
                .iter()
                .filter(|(n, _)| *n == name)
                .map(|(_, v)| v.to_vec())
                .collect()
        };
        assert_eq!(all(&out[0], TRACEPARENT), [b"00-record-01".to_vec()]);
        assert_eq!(all(&out[0], XRAY_TRACE_ID), [b"Root=lambda".to_vec()]);
        assert_eq!(all(&out[1], TRACEPARENT), [b"00-outbox-01".to_vec()]);
        assert_eq!(all(&out[1], XRAY_TRACE_ID), [b"Root=row".to_vec()]);
    }
}
