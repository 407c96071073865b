//! Personal data: keyed pseudonyms (`hash`) and cut text (`truncate`).
//!
//! A pseudonym is the HMAC-SHA-256 of the value under the relay's hash key, in lower-case
//! hex: the same value gives the same token in every table, invocation and function that
//! shares the key, so joins still work, and nobody without the key can test a guess.
//! What is hashed: a string's content (so `"42"` and `42` give one token), a number or
//! boolean as written, an object or array as its JSON text. `null` stays `null`.

use std::borrow::Cow;
use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::value::RawValue;
use sha2::Sha256;

use super::coerce::{string_of, Kind};

/// The fewest key bytes accepted: a shorter key can be found by trying keys.
pub const MIN_HASH_KEY_BYTES: usize = 16;

/// The hash key of local runs (`invoke`, `replay`, `check-routes` outside Lambda) when
/// `RELAY_HASH_KEY` is unset, and of the golden files. It is published here, so its
/// pseudonyms hide nothing: inside Lambda an unset key is a configuration error instead.
pub const LOCAL_HASH_KEY: &[u8] = b"cdc-relay local runs only: this key is not a secret";

/// The key of the `hash` pseudonyms. `Debug` never shows it.
#[derive(Clone)]
pub struct HashKey {
    /// The keyed HMAC state, cloned per value (the key schedule is done once).
    keyed: Hmac<Sha256>,
}

impl fmt::Debug for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HashKey(<redacted>)")
    }
}

impl HashKey {
    /// A key from its bytes (at least [`MIN_HASH_KEY_BYTES`]). The error never quotes it.
    pub fn new(key: &[u8]) -> Result<HashKey, String> {
        if key.len() < MIN_HASH_KEY_BYTES {
            return Err(format!(
                "the hash key has {} bytes; at least {MIN_HASH_KEY_BYTES} are needed",
                key.len()
            ));
        }
        let keyed = Hmac::<Sha256>::new_from_slice(key)
            .map_err(|_| "the hash key cannot key HMAC-SHA-256".to_owned())?;
        Ok(HashKey { keyed })
    }

    /// The token of some bytes: 64 lower-case hex digits.
    pub fn token(&self, bytes: &[u8]) -> String {
        hex::encode(self.digest(bytes))
    }

    fn digest(&self, bytes: &[u8]) -> [u8; 32] {
        let mut mac = self.keyed.clone();
        mac.update(bytes);
        mac.finalize().into_bytes().into()
    }

    /// The published key of local runs ([`LOCAL_HASH_KEY`]).
    pub fn local() -> HashKey {
        let keyed = Hmac::<Sha256>::new_from_slice(LOCAL_HASH_KEY)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        HashKey { keyed }
    }

    /// The pseudonym of a JSON value, as JSON text (`null` stays `null`).
    pub(crate) fn pseudonym(&self, value: &RawValue) -> Option<Box<RawValue>> {
        let text = value.get();
        let digest = match Kind::of(text) {
            Kind::Null => return None,
            Kind::String => match string_of(value) {
                Ok(content) => self.digest(content.as_bytes()),
                Err(_) => self.digest(text.as_bytes()),
            },
            _ => self.digest(text.as_bytes()),
        };
        // The quoted hex, written in place, then copied once into the value's String.
        let mut quoted = [b'"'; 66];
        hex::encode_to_slice(digest, &mut quoted[1..65])
            .expect("64 hex digits fit the 64 bytes between the quotes");
        let text = std::str::from_utf8(&quoted).expect("hex digits and quotes are ASCII");
        Some(crate::json::owned_raw_value(text.to_owned()))
    }
}

/// A string value cut to at most `max` characters (Unicode scalar values, so a UTF-8
/// character is never split), as JSON text; `None` when it is kept as it is (not a
/// string, or short enough).
pub(crate) fn truncated(value: &RawValue, max: usize) -> Option<String> {
    let text = value.get();
    if Kind::of(text) != Kind::String {
        return None;
    }
    // The JSON text is at least as long as its content in characters: a short text is
    // short content.
    if text.len() <= max + 2 {
        return None;
    }
    let content: Cow<'_, str> = string_of(value).ok()?;
    let cut = content.char_indices().nth(max).map(|(at, _)| at)?;
    serde_json::to_string(&content[..cut]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).expect("json")
    }

    /// The token is HMAC-SHA-256 (RFC 4231 test case 2 uses a 4-byte key, so the
    /// comparison is with the hmac crate directly under a 32-byte key), keyed, and equal
    /// for a string and the number it spells.
    #[test]
    fn pseudonyms_are_keyed_and_stable() {
        let key = HashKey::new(b"0123456789abcdef0123456789abcdef").expect("key");
        let pseudonym = |key: &HashKey, text: &str| {
            key.pseudonym(&raw(text))
                .map(|token| token.get().to_owned())
        };
        let mut mac =
            Hmac::<Sha256>::new_from_slice(b"0123456789abcdef0123456789abcdef").expect("key");
        mac.update(b"a@b.c");
        let expected = hex::encode(mac.finalize().into_bytes());
        assert_eq!(
            pseudonym(&key, "\"a@b.c\""),
            Some(format!("\"{expected}\""))
        );
        assert_eq!(
            pseudonym(&key, "\"a\\u0040b.c\""),
            pseudonym(&key, "\"a@b.c\""),
            "escapes do not change the token"
        );
        assert_eq!(pseudonym(&key, "42"), pseudonym(&key, "\"42\""));
        assert_eq!(pseudonym(&key, "null"), None);
        let other = HashKey::new(b"another key of enough bytes!").expect("key");
        assert_ne!(pseudonym(&other, "\"a@b.c\""), pseudonym(&key, "\"a@b.c\""));
        assert!(HashKey::new(b"short").is_err());
        assert_eq!(format!("{key:?}"), "HashKey(<redacted>)");
    }

    /// Characters, not bytes: a multi-byte character is never split.
    #[test]
    fn truncation_counts_characters() {
        assert_eq!(
            truncated(&raw("\"héllo wörld\""), 5).as_deref(),
            Some("\"héllo\"")
        );
        assert_eq!(
            truncated(&raw("\"한국어 텍스트\""), 2).as_deref(),
            Some("\"한국\"")
        );
        assert_eq!(truncated(&raw("\"short\""), 5), None);
        assert_eq!(
            truncated(&raw("\"a\\nb\\nc\""), 3).as_deref(),
            Some("\"a\\nb\"")
        );
        assert_eq!(truncated(&raw("\"😀😀😀\""), 1).as_deref(), Some("\"😀\""));
        assert_eq!(truncated(&raw("123456789"), 2), None, "numbers are kept");
    }
}
