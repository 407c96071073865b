//! Poison records -> dead-letter messages.
//!
//! A record that can never succeed (it does not decode, no route takes it under
//! `unrouted = "dlq"`, a key column is missing, a value does not coerce, the broker
//! rejects it as too large) must not block its partition. Under `on_poison = "dlq"` it
//! goes to the dead-letter topic with its original key and headers, its event id, and
//! headers saying why and where from, so it can be inspected and replayed. When its
//! route redacts columns, its key (DMS's partition key, which may hold them) is replaced
//! by its pseudonym under the hash key (else by its own id), and
//! `metadata.partition-key-value` is masked.
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
use serde_json::value::RawValue;
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

/// The largest `relay-error` or `relay-table` a dead letter carries; a longer one is cut
/// ([`capped`]).
const DEAD_LETTER_MAX_HEADER: usize = 4096;

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
    let cluster = origin.cluster();
    let position = record.position(&cluster, None);
    let id = dead_letter_id(position);
    let mut withheld = None;
    // Whether the route took columns out of the value: the record's key (DMS's
    // partition key, often the primary key's values) may hold them too.
    let mut redacted_columns = false;
    let (value, kept) = match (&original.value, letters.routes.dead_letter_value) {
        (Some(value), DeadLetterValue::Redacted) => {
            match redacted_value(value, letters.routes, letters.before_field) {
                Some(redacted) => {
                    redacted_columns = matches!(redacted, Cow::Owned(_));
                    (Some(redacted.into_owned()), "redacted")
                }
                // Not a DMS record whose table can be read: which columns to remove is
                // unknown, so none of the value is kept (when any route removes any).
                None if !letters.routes.redacts_columns() => (original.value.clone(), "original"),
                // An empty value, not none: a dead letter is never a tombstone.
                None => {
                    withheld = Some(value.clone());
                    redacted_columns = true;
                    (Some(Vec::new()), "withheld")
                }
            }
        }
        // A tombstone's table cannot be read: its key is withheld as an unreadable
        // value is, when some route redacts columns.
        (None, DeadLetterValue::Redacted) => {
            redacted_columns = letters.routes.redacts_columns();
            (None, "original")
        }
        _ => (original.value.clone(), "original"),
    };
    let key_withheld = redacted_columns && original.key.is_some();
    let key = match original.key {
        // A key that may carry what the value leaves out: its pseudonym under the
        // routes' hash key (one entity, one key: order and compaction as before), else
        // the dead letter's own id (never null, unique, stable across retries).
        Some(key) if redacted_columns => Some(match letters.routes.hash_key() {
            Some(hash_key) => hash_key.token(&key).into_bytes(),
            None => id.as_bytes().to_vec(),
        }),
        Some(key) if key.len() > DEAD_LETTER_MAX_KEY => {
            Some(hex::encode(Sha256::digest(&key)).into_bytes())
        }
        key => key,
    };
    // The record's own headers, except any named like the relay's (a dead letter
    // replayed into the source would otherwise carry two `relay-error`s).
    let mut headers: Vec<(Cow<'static, str>, Vec<u8>)> = original
        .headers
        .into_iter()
        .filter(|(name, _)| !name.starts_with(RELAY_HEADER_PREFIX))
        .map(|(name, bytes)| (Cow::Owned(name), bytes))
        .collect();
    headers.extend([
        (Cow::Borrowed(header::EVENT_ID), id.into_bytes()),
        (
            Cow::Borrowed(header::ERROR),
            capped(error.message.as_bytes()),
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
        headers.push((Cow::Borrowed(header::TABLE), capped(table.as_bytes())));
    }
    if key_withheld {
        headers.push((Cow::Borrowed(header::DEAD_LETTER_KEY), b"withheld".to_vec()));
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

/// A relay header's text from the record (its error, its table name), cut to
/// [`DEAD_LETTER_MAX_HEADER`] bytes with the SHA-256 of the whole: a header of any size
/// could keep the dead letter over the broker's limit, and the partition behind it.
fn capped(text: &[u8]) -> Vec<u8> {
    if text.len() <= DEAD_LETTER_MAX_HEADER {
        return text.to_vec();
    }
    let digest = hex::encode(Sha256::digest(text));
    let suffix = format!("... (cut from {} bytes; sha256 {digest})", text.len());
    let mut cut = DEAD_LETTER_MAX_HEADER - suffix.len();
    // At a character's start: the header stays UTF-8 when the text was.
    while cut > 0 && text.get(cut).is_some_and(|b| (0x80..0xc0).contains(b)) {
        cut -= 1;
    }
    let mut out = text[..cut].to_vec();
    out.extend_from_slice(suffix.as_bytes());
    out
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
    // A member given twice: which one a reader takes (the table's names, the row) is
    // not known, so nothing of the value can be said to be redacted.
    let mut names: Vec<&str> = document.columns.iter().map(|c| &*c.name).collect();
    names.sort_unstable();
    if names.windows(2).any(|pair| pair[0] == pair[1]) {
        return None;
    }
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
        if name == "metadata" {
            out.push_str(&redacted_metadata(raw)?);
            continue;
        }
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

/// `metadata` with `partition-key-value` masked: with DMS's `IncludePartitionValue` it
/// holds the partition key's values (the primary key's, by default), which may be
/// columns the route masks, hashes or removes.
fn redacted_metadata(metadata: &RawValue) -> Option<Cow<'_, str>> {
    let fields: Row<'_> = serde_json::from_str(metadata.get()).ok()?;
    let sensitive =
        |c: &Column<'_, Cow<'_, str>>| c.name == PARTITION_KEY_VALUE && c.value.get() != "null";
    if !fields.columns.iter().any(sensitive) {
        return Some(Cow::Borrowed(metadata.get()));
    }
    let mut out = String::with_capacity(metadata.get().len());
    out.push('{');
    for (i, column) in fields.columns.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_name(&mut out, &column.name);
        if sensitive(column) {
            out.push('"');
            out.push_str(MASK);
            out.push('"');
        } else {
            out.push_str(column.value.get());
        }
    }
    out.push('}');
    Some(Cow::Owned(out))
}

/// The metadata field holding the record's partition key values.
const PARTITION_KEY_VALUE: &str = "partition-key-value";

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

    fn record(value: &str, key: &str) -> SourceRecord {
        SourceRecord {
            batch_partition: "src-0".into(),
            topic: "src".into(),
            partition: 0,
            offset: 5,
            timestamp_ms: 1_700_000_000_000,
            key: Some(crate::source::Payload::Bytes(key.as_bytes().to_vec())),
            value: Some(crate::source::Payload::Bytes(value.as_bytes().to_vec())),
            headers: Vec::new(),
        }
    }

    fn letter_of(routes: &Routes, record: &SourceRecord, error: &RecordError) -> OutMessage {
        let topic: Arc<str> = "dlq".into();
        let letters = DeadLetters {
            topic: &topic,
            routes,
            before_field: "before-image",
            max_bytes: 1_000_000,
        };
        dead_letter(letters, record, error, &EventOrigin::default())
    }

    fn header_of<'m>(message: &'m OutMessage, name: &str) -> Option<&'m [u8]> {
        message
            .headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }

    /// A member given twice (two `metadata`, the second naming a table no route
    /// redacts) cannot hide a routed table's values: the value is withheld.
    #[test]
    fn a_repeated_member_withholds_the_value() {
        let twice = r#"{"data":{"id":1,"email":"kim@example.com"},"metadata":{"schema-name":"public","table-name":"orders"},"metadata":{"schema-name":"x","table-name":"y"}}"#;
        assert!(redacted_value(twice.as_bytes(), &routes(), "before-image").is_none());
        let error = RecordError::permanent(crate::error::Stage::Dms, "duplicate field `metadata`");
        let letter = letter_of(&routes(), &record(twice, "k"), &error);
        assert_eq!(
            header_of(&letter, header::DEAD_LETTER_VALUE),
            Some(&b"withheld"[..])
        );
        assert!(
            !String::from_utf8_lossy(letter.value.as_deref().unwrap_or_default())
                .contains("kim@example.com")
        );
    }

    /// DMS's partition key (the record's Kafka key, and `partition-key-value` with
    /// `IncludePartitionValue`) may hold the very columns the route masks: a redacted
    /// dead letter masks the one, and keys by the key's pseudonym under the hash key
    /// (else by its own id) instead of the other. A value kept as it came keeps its key.
    #[test]
    fn a_redacted_dead_letter_withholds_the_partition_key() {
        let value = r#"{"data":{"id":1,"email":"kim@example.com"},"metadata":{"partition-key-type":"primary-key","partition-key-value":"kim@example.com","schema-name":"public","table-name":"orders"}}"#;
        let error = RecordError::permanent(crate::error::Stage::Transform, "does not coerce");
        let letter = letter_of(&routes(), &record(value, "kim@example.com"), &error);
        let text =
            String::from_utf8_lossy(letter.value.as_deref().unwrap_or_default()).into_owned();
        assert!(text.contains(r#""partition-key-value":"***""#), "{text}");
        assert!(!text.contains("kim@"), "{text}");
        assert_eq!(letter.key.as_deref(), header_of(&letter, header::EVENT_ID));
        assert_eq!(
            header_of(&letter, header::DEAD_LETTER_KEY),
            Some(&b"withheld"[..])
        );
        // With a hash key: the key's pseudonym, the same for every dead letter of it.
        let mut hashing = routes();
        hashing
            .set_hash_key(Some(crate::transform::HashKey::local()))
            .expect("a hash key");
        let letter = letter_of(&hashing, &record(value, "kim@example.com"), &error);
        let token = crate::transform::HashKey::local().token(b"kim@example.com");
        assert_eq!(letter.key.as_deref(), Some(token.as_bytes()));
        // A tombstone's table is unknown: its key is withheld too.
        let mut tombstone = record(value, "kim@example.com");
        tombstone.value = None;
        let letter = letter_of(&routes(), &tombstone, &error);
        assert_eq!(letter.key.as_deref(), header_of(&letter, header::EVENT_ID));
        assert_eq!(letter.value, None);
        // A table whose route redacts nothing: key and value as they came.
        let other = value.replace(r#""orders""#, r#""other""#);
        let letter = letter_of(&routes(), &record(&other, "kim@example.com"), &error);
        assert_eq!(letter.key.as_deref(), Some(&b"kim@example.com"[..]));
        assert_eq!(letter.value.as_deref(), Some(other.as_bytes()));
        assert_eq!(header_of(&letter, header::DEAD_LETTER_KEY), None);
    }

    /// A table name of any length (DMS copies it from the source) cannot keep a dead
    /// letter over the broker's limit: `relay-table` and `relay-error` are cut, with the
    /// whole's SHA-256, and the dead letter fits.
    #[test]
    fn a_huge_table_name_still_fits() {
        let table = format!("public.{}", "t".repeat(600_000));
        let value = format!(
            r#"{{"data":{{"id":1}},"metadata":{{"schema-name":"public","table-name":"{}"}}}}"#,
            &table[7..]
        );
        let error = RecordError::permanent(
            crate::error::Stage::Transform,
            format!("no route for table {table}"),
        )
        .with_table(table.clone());
        let letter = letter_of(
            &Routes::parse("", "test").expect("routes"),
            &record(&value, "k"),
            &error,
        );
        let size = RECORD_OVERHEAD
            + letter.key.as_deref().map_or(0, <[u8]>::len)
            + letter.value.as_deref().map_or(0, <[u8]>::len)
            + letter
                .headers
                .iter()
                .map(|(n, v)| n.len() + v.len() + 8)
                .sum::<usize>();
        assert!(size <= DEAD_LETTER_MAX_BYTES, "{size}");
        let cut =
            String::from_utf8_lossy(header_of(&letter, header::TABLE).expect("table")).into_owned();
        assert!(cut.len() <= DEAD_LETTER_MAX_HEADER, "{}", cut.len());
        assert!(
            cut.ends_with(&format!(
                "sha256 {})",
                hex::encode(Sha256::digest(table.as_bytes()))
            )),
            "{cut}"
        );
        assert!(header_of(&letter, header::ERROR).expect("error").len() <= DEAD_LETTER_MAX_HEADER);
        // Cut at a character's start: multi-byte names stay UTF-8.
        let wide = "가".repeat(5_000);
        assert!(std::str::from_utf8(&capped(wide.as_bytes())).is_ok());
        assert_eq!(capped(b"public.orders"), b"public.orders");
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
