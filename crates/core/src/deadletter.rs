//! Poison records -> dead-letter messages.
//!
//! A record that can never succeed (it does not decode, no route takes it under
//! `unrouted = "dlq"`, a key column is missing, a value does not coerce, the broker
//! rejects it as too large) must not block its partition. Under `on_poison = "dlq"` it
//! goes to the dead-letter topic with its original key and headers, its event id, and
//! headers saying why and where from, so it can be inspected and replayed.
//!
//! A dead letter is safe to keep: by default (`dead_letter_value = "redacted"`) the
//! columns its route excludes (or does not include) are removed from `data` and the
//! before-image, and the columns it masks are masked, exactly as in the routed event;
//! every other byte of the value is kept as it arrived. A value too large for the broker
//! is cut to fit, with headers giving the whole value's size and SHA-256, so a dead
//! letter can never block its partition.

use std::borrow::Cow;
use std::sync::Arc;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::dms::{Column, Row};
use crate::error::RecordError;
use crate::source::{EventOrigin, SourceRecord};
use crate::transform::routes::DeadLetterValue;
use crate::transform::{dead_letter_id, header, OutMessage, Routes, MASK};

/// Room kept in a dead letter for Kafka's per-record framing, beyond key, value and headers.
const RECORD_OVERHEAD: usize = 512;

/// The largest dead letter, whatever `message.max.bytes` says: a topic's own limit
/// (`max.message.bytes`, 1 MiB by default on MSK) may be smaller than the producer's,
/// and a dead letter must never be refused for its size.
const DEAD_LETTER_MAX_BYTES: usize = 1_000_000;

/// The prefix of the relay's own header names (the record's are dropped when they use it).
const RELAY_HEADER_PREFIX: &str = "relay-";

/// The largest key a dead letter keeps; a longer one is replaced by its SHA-256 (hex).
const DEAD_LETTER_MAX_KEY: usize = 4096;

/// How dead letters are made: where they go, what their value keeps, how large they may be.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetters<'a> {
    /// The dead-letter topic.
    pub topic: &'a Arc<str>,
    /// The routes, whose excluded and masked columns a redacted value leaves out or masks.
    pub routes: &'a Routes,
    /// The DMS before-image field, redacted like `data`.
    pub before_field: &'a str,
    /// Largest message the producer may send (`message.max.bytes`).
    pub max_bytes: usize,
}

/// The dead-letter message for `record`, which failed with `error`.
pub fn dead_letter(
    letters: DeadLetters<'_>,
    record: &SourceRecord,
    error: &RecordError,
    origin: &EventOrigin,
) -> OutMessage {
    let original = record.original_parts();
    let key = original.key.map(|key| {
        if key.len() > DEAD_LETTER_MAX_KEY {
            hex::encode(Sha256::digest(&key)).into_bytes()
        } else {
            key
        }
    });
    let mut withheld = None;
    let (value, kept) = match (&original.value, letters.routes.dead_letter_value) {
        (Some(value), DeadLetterValue::Redacted) => {
            match redacted_value(value, letters.routes, letters.before_field) {
                Some(redacted) => (Some(redacted.into_owned()), "redacted"),
                // Not a DMS record whose table can be read: which columns to remove is
                // unknown, so none of the value is kept (when any route removes any).
                None if !letters.routes.redacts_columns() => (original.value.clone(), "original"),
                // An empty value, not none: a dead letter is never a tombstone.
                None => {
                    withheld = Some(value.clone());
                    (Some(Vec::new()), "withheld")
                }
            }
        }
        _ => (original.value.clone(), "original"),
    };
    let cluster = origin.cluster();
    let position = record.position(&cluster, None);
    // The record's own headers, except any named like the relay's (a dead letter
    // replayed into the source would otherwise carry two `relay-error`s).
    let mut headers: Vec<(Cow<'static, str>, Vec<u8>)> = original
        .headers
        .into_iter()
        .filter(|(name, _)| !name.starts_with(RELAY_HEADER_PREFIX))
        .map(|(name, bytes)| (Cow::Owned(name), bytes))
        .collect();
    headers.extend([
        (
            Cow::Borrowed(header::EVENT_ID),
            dead_letter_id(position).into_bytes(),
        ),
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
        (
            Cow::Borrowed(header::DEAD_LETTER_VALUE),
            kept.as_bytes().to_vec(),
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
    if let Some(value) = withheld {
        headers.extend(size_and_digest(&value));
    }
    let max_bytes = letters.max_bytes.min(DEAD_LETTER_MAX_BYTES);
    let value = fit(
        value.unwrap_or_default(),
        key.as_deref(),
        &mut headers,
        max_bytes,
    );
    // A source tombstone stays a tombstone; anything else keeps a value.
    let value = (original.value.is_some()).then_some(value);
    OutMessage {
        topic: letters.topic.clone(),
        key,
        value,
        headers: headers.into_iter().collect(),
    }
}

/// The headers giving a value's size and SHA-256.
fn size_and_digest(value: &[u8]) -> [(Cow<'static, str>, Vec<u8>); 2] {
    [
        (
            Cow::Borrowed(header::ORIGINAL_SIZE),
            value.len().to_string().into_bytes(),
        ),
        (
            Cow::Borrowed(header::ORIGINAL_SHA256),
            hex::encode(Sha256::digest(value)).into_bytes(),
        ),
    ]
}

/// Cuts `value` so that key, value and headers fit in `max_bytes`, adding the headers
/// that say it was cut and what the whole value was. When the record's own headers
/// leave no room, they are dropped (the relay's headers say where it came from).
fn fit(
    value: Vec<u8>,
    key: Option<&[u8]>,
    headers: &mut Vec<(Cow<'static, str>, Vec<u8>)>,
    max_bytes: usize,
) -> Vec<u8> {
    let framing = |headers: &[(Cow<'static, str>, Vec<u8>)]| {
        RECORD_OVERHEAD
            + key.map_or(0, <[u8]>::len)
            + headers
                .iter()
                .map(|(n, v)| n.len() + v.len() + 8)
                .sum::<usize>()
    };
    if framing(headers) + value.len() <= max_bytes {
        return value;
    }
    if value.is_empty() {
        // Only the record's own headers are too large: keep the relay's.
        headers.retain(|(name, _)| name.starts_with(RELAY_HEADER_PREFIX));
        return value;
    }
    headers.push((Cow::Borrowed(header::TRUNCATED), b"true".to_vec()));
    headers.extend(size_and_digest(&value));
    if framing(headers) > max_bytes / 2 {
        headers.retain(|(name, _)| name.starts_with(RELAY_HEADER_PREFIX));
    }
    let room = max_bytes.saturating_sub(framing(headers));
    let mut value = value;
    value.truncate(room);
    value
}

/// The DMS record `value` with its route's excluded columns removed and masked columns
/// masked in `data` and the before-image; every other member byte for byte as it came.
/// `Cow::Borrowed` when the route removes or masks nothing; `None` when the value is not
/// a JSON object whose `metadata` names the table (nothing can be known to redact).
pub fn redacted_value<'v>(
    value: &'v [u8],
    routes: &Routes,
    before_field: &str,
) -> Option<Cow<'v, [u8]>> {
    let text = std::str::from_utf8(value).ok()?;
    let document: Row<'_> = serde_json::from_str(text).ok()?;
    let metadata = document.get("metadata")?;
    let names: TableNames = serde_json::from_str(metadata.get()).ok()?;
    let qualified = format!("{}.{}", names.schema?, names.table?);
    let Some(route) = routes.route_for(&qualified) else {
        return Some(Cow::Borrowed(value));
    };
    if !route.redacts() {
        return Some(Cow::Borrowed(value));
    }
    let mut out = String::with_capacity(text.len());
    out.push('{');
    for (i, Column { name, value: raw }) in document.columns.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_name(&mut out, name);
        let row = if (name == "data" || name == before_field) && raw.get() != "null" {
            // A row that is not an object (an array, a string) cannot be told apart into
            // columns: none of the value is kept.
            Some(serde_json::from_str::<Row<'_>>(raw.get()).ok()?)
        } else {
            None
        };
        match row {
            Some(row) => {
                out.push('{');
                let mut first = true;
                for Column {
                    name: column,
                    value: cell,
                } in &row.columns
                {
                    let plan = route.plan(column);
                    if !plan.keep {
                        continue;
                    }
                    if !first {
                        out.push(',');
                    }
                    first = false;
                    push_name(&mut out, column);
                    // A hashed column's dead letter is masked: the value is personal
                    // data, and a dead letter is read by people, not joined.
                    if (plan.mask || plan.hash) && cell.get() != "null" {
                        out.push('"');
                        out.push_str(MASK);
                        out.push('"');
                    } else {
                        out.push_str(cell.get());
                    }
                }
                out.push('}');
            }
            None => out.push_str(raw.get()),
        }
    }
    out.push('}');
    Some(Cow::Owned(out.into_bytes()))
}

fn push_name(out: &mut String, name: &str) {
    // Serialising a string to JSON cannot fail.
    out.push_str(&serde_json::to_string(name).unwrap_or_default());
    out.push(':');
}

/// `metadata`'s table names.
#[derive(Deserialize)]
struct TableNames<'a> {
    #[serde(rename = "schema-name", borrow)]
    schema: Option<Cow<'a, str>>,
    #[serde(rename = "table-name", borrow)]
    table: Option<Cow<'a, str>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &str = r#"
[[route]]
table = "public.orders"
topic = "orders"
exclude = ["note"]
mask = ["email"]
[[route]]
table = "public.users"
topic = "users"
include = ["id"]
"#;

    fn routes() -> Routes {
        Routes::parse(ROUTES, "test").expect("valid routes")
    }

    /// Excluded columns go, masked ones are masked, in `data` and the before-image;
    /// every other value keeps its exact text (numbers included).
    #[test]
    fn redaction_follows_the_route_and_keeps_other_bytes() {
        let value = br#"{"data":{"id":12345678901234567.891,"email":"a@b.c","note":"secret","n":null},"before-image":{"email":"old@b.c","note":"x"},"metadata":{"schema-name":"public","table-name":"orders","operation":"update"}}"#;
        let out = redacted_value(value, &routes(), "before-image").expect("readable");
        assert_eq!(
            std::str::from_utf8(&out).expect("utf-8"),
            r#"{"data":{"id":12345678901234567.891,"email":"***","n":null},"before-image":{"email":"***"},"metadata":{"schema-name":"public","table-name":"orders","operation":"update"}}"#
        );
        let users = br#"{"data":{"id":1,"password_hash":"x"},"metadata":{"schema-name":"public","table-name":"users"}}"#;
        let out = redacted_value(users, &routes(), "before-image").expect("readable");
        assert!(!String::from_utf8_lossy(&out).contains("password_hash"));
    }

    /// A table whose route removes nothing, and a value that is not DMS JSON, are left alone.
    #[test]
    fn nothing_to_redact_or_unreadable() {
        let other =
            br#"{"data":{"x":1.50},"metadata":{"schema-name":"public","table-name":"other"}}"#;
        assert!(matches!(
            redacted_value(other, &routes(), "before-image"),
            Some(Cow::Borrowed(_))
        ));
        assert!(redacted_value(b"not json", &routes(), "before-image").is_none());
        // A row that is not an object cannot be redacted column by column: withheld.
        for data in [r#"[{"id":1,"password_hash":"x"}]"#, r#""password_hash=x""#] {
            let users = format!(
                r#"{{"data":{data},"metadata":{{"schema-name":"public","table-name":"users"}}}}"#
            );
            assert!(redacted_value(users.as_bytes(), &routes(), "before-image").is_none());
            let before = format!(
                r#"{{"data":null,"before-image":{data},"metadata":{{"schema-name":"public","table-name":"users"}}}}"#
            );
            assert!(redacted_value(before.as_bytes(), &routes(), "before-image").is_none());
        }
        let null_row = br#"{"data":null,"metadata":{"schema-name":"public","table-name":"users"}}"#;
        assert!(redacted_value(null_row, &routes(), "before-image").is_some());
        assert!(redacted_value(br#"{"data":{}}"#, &routes(), "before-image").is_none());
    }

    /// Record headers too large to leave room are dropped; the relay's stay.
    #[test]
    fn oversized_record_headers_are_dropped() {
        let mut headers = vec![
            (Cow::Borrowed("big"), vec![b'h'; 3_000]),
            (Cow::Borrowed(header::SOURCE_OFFSET), b"7".to_vec()),
        ];
        let cut = fit(vec![b'x'; 5_000], None, &mut headers, 4_000);
        assert!(
            headers.iter().all(|(n, _)| n.starts_with("relay-")),
            "{headers:?}"
        );
        assert!(!cut.is_empty());
    }

    /// A value too large for the broker is cut to fit, with its size and SHA-256.
    #[test]
    fn oversized_values_are_cut_to_fit() {
        let mut headers = vec![(Cow::Borrowed("h"), b"v".to_vec())];
        let value = vec![b'x'; 5_000];
        let cut = fit(value.clone(), Some(b"k"), &mut headers, 2_000);
        let total = cut.len()
            + 1
            + headers
                .iter()
                .map(|(n, v)| n.len() + v.len() + 8)
                .sum::<usize>();
        assert!(total + RECORD_OVERHEAD <= 2_000, "{total}");
        assert!(value.starts_with(&cut));
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        };
        assert_eq!(get(header::TRUNCATED).as_deref(), Some("true"));
        assert_eq!(get(header::ORIGINAL_SIZE).as_deref(), Some("5000"));
        assert_eq!(
            get(header::ORIGINAL_SHA256),
            Some(hex::encode(Sha256::digest(&value)))
        );
        let mut headers = Vec::new();
        assert_eq!(fit(b"small".to_vec(), None, &mut headers, 2_000), b"small");
        assert!(headers.is_empty());
    }
}
