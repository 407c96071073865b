//! JSON written by hand into a buffer, for the envelopes every record goes through
//! (`relay`, `flat`): the same bytes serde_json writes for the same values, without its
//! serializer's per-call dispatch and its byte-by-byte string escaping. A string that
//! needs no escape (nearly all: column names, ids, table names, timestamps) is copied
//! whole after one vectorised check.

use serde_json::value::RawValue;

/// Whether any byte of `bytes` must be escaped in a JSON string: `"`, `\` or a control
/// character (what serde_json escapes; DEL and non-ASCII are written as they are).
/// Eight bytes at a time, as one word: each test below says exactly whether some byte of
/// the word is zero (after the XOR), or below 0x20.
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let zero_byte = |w: u64| w.wrapping_sub(ONES) & !w & HIGH;
    let escaped = |w: u64| {
        zero_byte(w ^ (ONES * u64::from(b'"')))
            | zero_byte(w ^ (ONES * u64::from(b'\\')))
            | (w.wrapping_sub(ONES * 0x20) & !w & HIGH)
            != 0
    };
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let mut eight = [0u8; 8];
        eight.copy_from_slice(word);
        if escaped(u64::from_le_bytes(eight)) {
            return true;
        }
    }
    // The rest padded with a letter, which needs no escape.
    let rest = words.remainder();
    let mut eight = [b'a'; 8];
    eight[..rest.len()].copy_from_slice(rest);
    escaped(u64::from_le_bytes(eight))
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// `text` as a JSON string, escaped as serde_json escapes it.
pub(crate) fn string(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    if needs_escape(text.as_bytes()) {
        for &b in text.as_bytes() {
            match b {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                0x08 => out.extend_from_slice(b"\\b"),
                0x0c => out.extend_from_slice(b"\\f"),
                0..=0x1f => out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 0xf)],
                ]),
                _ => out.push(b),
            }
        }
    } else {
        out.extend_from_slice(text.as_bytes());
    }
    out.push(b'"');
}

/// A JSON value's text as it is.
pub(crate) fn raw(out: &mut Vec<u8>, value: &RawValue) {
    out.extend_from_slice(value.get().as_bytes());
}

/// A string, or `null`.
pub(crate) fn string_or_null(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(text) => string(out, text),
        None => out.extend_from_slice(b"null"),
    }
}

/// A value's text, or `null`.
pub(crate) fn raw_or_null(out: &mut Vec<u8>, value: Option<&RawValue>) {
    match value {
        Some(value) => raw(out, value),
        None => out.extend_from_slice(b"null"),
    }
}

/// An integer.
pub(crate) fn int(out: &mut Vec<u8>, value: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// `"name":` after a comma unless it is an object's first field.
pub(crate) fn field(out: &mut Vec<u8>, first: bool, name: &str) {
    if !first {
        out.push(b',');
    }
    string(out, name);
    out.push(b':');
}

/// JSON text the envelope writes as it is: its own punctuation and field names, as
/// literals (`",\"op\":"`).
pub(crate) fn literal(out: &mut Vec<u8>, text: &'static str) {
    out.extend_from_slice(text.as_bytes());
}

/// A JSON array of strings.
pub(crate) fn strings(out: &mut Vec<u8>, items: &[&str]) {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, item);
    }
    out.push(b']');
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Any string is written exactly as serde_json writes it: control characters,
        /// quotes, backslashes, DEL and non-ASCII text at any position, runs longer and
        /// shorter than the check's 8-byte word.
        #[test]
        fn strings_are_written_as_serde_json_writes_them(
            text in "[a-z\"\\\\\u{0}-\u{1f}\u{7f}\u{e9}\u{1f600} ]{0,70}",
        ) {
            let mut out = Vec::new();
            string(&mut out, &text);
            let expected = serde_json::to_string(&text).expect("a string serialises");
            proptest::prop_assert_eq!(String::from_utf8(out).expect("UTF-8"), expected);
        }
    }

    /// Every byte below 0x20, and the two others that must be escaped, found wherever
    /// they sit in a word or the padded rest; no other byte ever is.
    #[test]
    fn every_escaped_byte_is_found_at_every_position() {
        for b in (0u8..0x20).chain([b'"', b'\\']) {
            for len in [1, 7, 8, 9, 15, 16, 17, 40] {
                for at in 0..len {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = b;
                    assert!(needs_escape(&bytes), "{b:#x} at {at} of {len}");
                }
            }
        }
        for b in (0x20u8..=0xff).filter(|b| *b != b'"' && *b != b'\\') {
            for len in [1, 7, 8, 9, 17] {
                for at in 0..len {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = b;
                    assert!(!needs_escape(&bytes), "{b:#x} at {at} of {len}");
                }
            }
        }
        assert!(!needs_escape(b""));
    }
}
