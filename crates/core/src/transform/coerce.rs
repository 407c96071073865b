//! Column coercions (`[route.types]`): DMS renders values per source and not always as
//! consumers want them (numbers as strings, timestamps without zone, LOBs as `0x` hex).
//!
//! Every coercion keeps `null` as `null`. A value that does not coerce is an error for
//! the record, never a panic, and the error never contains the value (row values are
//! customer data).
//!
//! Coercions work on the value's JSON text and never go through binary floating point:
//! `int` gives the exact integer or refuses, `float` and `decimal` keep every digit.
//! A value that is already what the coercion asks for is returned as the same text.

use std::borrow::Cow;

use base64::Engine;
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;

/// A coercion named in `[route.types]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Coercion {
    /// A JSON integer that fits i64 or u64 exactly; from integers, numbers with an
    /// integral value (`3.0`, `1.2E+3`) and numeric strings. Anything else, including an
    /// integer too large for 64 bits, is refused: never rounded.
    Int,
    /// A JSON number; from numbers (kept as written) and numeric strings (every digit kept).
    Float,
    /// An exact decimal kept as a string (no binary floating point on the way).
    Decimal,
    /// `true`/`false`; from booleans, 0/1 and `true|false|t|f|yes|no|y|n|1|0` strings.
    Bool,
    /// An RFC 3339 UTC string; from RFC 3339 with any offset, `YYYY-MM-DD HH:MM:SS[.f]`
    /// (read as UTC, as DMS writes it) and dates (`YYYY-MM-DD`, midnight UTC).
    Timestamp,
    /// A JSON value parsed from a string column (PostgreSQL json/jsonb arrive as strings).
    Json,
    /// Base64 of a hex string (DMS RAW/LOB values, `0x` prefix optional).
    Hex,
}

impl Coercion {
    /// The name used in the routes file.
    pub fn as_str(self) -> &'static str {
        match self {
            Coercion::Int => "int",
            Coercion::Float => "float",
            Coercion::Decimal => "decimal",
            Coercion::Bool => "bool",
            Coercion::Timestamp => "timestamp",
            Coercion::Json => "json",
            Coercion::Hex => "hex",
        }
    }

    /// Applies the coercion to a value's JSON text and returns the new JSON text
    /// (borrowed when unchanged). `Err` carries a value-free reason.
    pub fn apply(self, value: &RawValue) -> Result<Cow<'_, str>, &'static str> {
        let text = value.get();
        let kind = Kind::of(text);
        if kind == Kind::Null {
            return Ok(Cow::Borrowed(text));
        }
        match self {
            Coercion::Int => match kind {
                Kind::Number => {
                    exact_integer(text).map(|i| i.map_or(Cow::Borrowed(text), Cow::Owned))
                }
                Kind::String => {
                    let s = string_of(value)?;
                    exact_integer(s.trim())
                        .map(|i| Cow::Owned(i.unwrap_or_else(|| s.trim().to_owned())))
                }
                _ => Err("not an integer"),
            },
            Coercion::Float => match kind {
                Kind::Number => Ok(Cow::Borrowed(text)),
                Kind::String => number_text(string_of(value)?.trim()).map(Cow::Owned),
                _ => Err("not a number"),
            },
            Coercion::Decimal => match kind {
                Kind::Number => Ok(Cow::Owned(format!("\"{text}\""))),
                Kind::String => {
                    let s = string_of(value)?;
                    let trimmed = s.trim();
                    let lit = literal(trimmed).ok_or("not a decimal number")?;
                    if let Some(written) = decimal_text(trimmed, &lit) {
                        Ok(Cow::Owned(format!("\"{written}\"")))
                    } else if trimmed.len() + 2 == text.len() {
                        // Already a bare decimal in a string: the same text.
                        Ok(Cow::Borrowed(text))
                    } else {
                        Ok(Cow::Owned(format!("\"{trimmed}\"")))
                    }
                }
                _ => Err("not a decimal number"),
            },
            Coercion::Bool => match (kind, text) {
                (Kind::Bool, _) => Ok(Cow::Borrowed(text)),
                (Kind::Number, "0") => Ok(Cow::Borrowed("false")),
                (Kind::Number, "1") => Ok(Cow::Borrowed("true")),
                (Kind::String, _) => match string_of(value)?.trim().to_ascii_lowercase().as_str() {
                    "true" | "t" | "yes" | "y" | "1" => Ok(Cow::Borrowed("true")),
                    "false" | "f" | "no" | "n" | "0" => Ok(Cow::Borrowed("false")),
                    _ => Err("not a boolean"),
                },
                _ => Err("not a boolean"),
            },
            Coercion::Timestamp => match kind {
                Kind::String => {
                    to_timestamp(string_of(value)?.trim()).map(|t| Cow::Owned(format!("\"{t}\"")))
                }
                _ => Err("timestamp needs a string"),
            },
            Coercion::Json => match kind {
                Kind::String => {
                    let s = string_of(value)?;
                    let inner: &RawValue =
                        serde_json::from_str(&s).map_err(|_| "string is not valid JSON")?;
                    // serde_json reads an escape's four digits, not whether they pair.
                    crate::json::check_unicode_escapes(inner.get())?;
                    Ok(Cow::Owned(inner.get().to_owned()))
                }
                _ => Ok(Cow::Borrowed(text)),
            },
            Coercion::Hex => match kind {
                Kind::String => {
                    let s = string_of(value)?;
                    let digits = s
                        .strip_prefix("0x")
                        .or_else(|| s.strip_prefix("0X"))
                        .unwrap_or(&s);
                    let bytes = hex::decode(digits).map_err(|_| "not a hex string")?;
                    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
                    Ok(Cow::Owned(format!("\"{encoded}\"")))
                }
                _ => Err("hex needs a string"),
            },
        }
    }
}

/// The JSON type of a value's text, from its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Null,
    Bool,
    Number,
    String,
    Object,
    Array,
}

impl Kind {
    pub(crate) fn of(text: &str) -> Kind {
        match text.as_bytes().first() {
            Some(b'n') | None => Kind::Null,
            Some(b't' | b'f') => Kind::Bool,
            Some(b'"') => Kind::String,
            Some(b'{') => Kind::Object,
            Some(b'[') => Kind::Array,
            Some(_) => Kind::Number,
        }
    }
}

/// The content of a JSON string value (borrowed unless it holds escapes).
pub(crate) fn string_of(value: &RawValue) -> Result<Cow<'_, str>, &'static str> {
    let text = value.get();
    if let Some(content) = plain_string(text) {
        return Ok(Cow::Borrowed(content));
    }
    serde_json::from_str::<&str>(text)
        .map(Cow::Borrowed)
        .or_else(|_| serde_json::from_str::<String>(value.get()).map(Cow::Owned))
        .map_err(|_| "not a string")
}

/// The content of `text`, one JSON value, when it is a string without a backslash: what
/// stands between its quotes. `None` for anything else (read it with serde_json).
pub(crate) fn plain_string(text: &str) -> Option<&str> {
    text.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .filter(|c| !c.contains('\\'))
}

/// A number literal taken apart: sign, integer digits, fraction digits, exponent.
struct Literal<'a> {
    negative: bool,
    int: &'a str,
    frac: &'a str,
    exponent: Option<&'a str>,
}

/// Reads a number as people and databases write it: an optional sign, digits with an
/// optional point (`.5`, `5.` too), an optional exponent. No `inf`, `NaN` or hex.
fn literal(s: &str) -> Option<Literal<'_>> {
    let (negative, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (mantissa, exponent) = match rest.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e)),
        None => (rest, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    (!(int.is_empty() && frac.is_empty()) && digits(int) && digits(frac) && exponent_ok).then_some(
        Literal {
            negative,
            int,
            frac,
            exponent,
        },
    )
}

/// A decimal as the published schema has it (`^-?[0-9]`): `.5` as `0.5`, `+5` as `5`,
/// `5.` as `5`, every digit and the exponent kept as written. `None` when `s` already is.
fn decimal_text(s: &str, lit: &Literal<'_>) -> Option<String> {
    let point_alone = lit.frac.is_empty() && s.split(['e', 'E']).next()?.ends_with('.');
    if !(s.starts_with('+') || lit.int.is_empty() || point_alone) {
        return None;
    }
    let exponent = s.find(['e', 'E']).map_or("", |at| &s[at..]);
    let int = if lit.int.is_empty() { "0" } else { lit.int };
    let point = if lit.frac.is_empty() { "" } else { "." };
    let sign = if lit.negative { "-" } else { "" };
    Some(format!("{sign}{int}{point}{}{exponent}", lit.frac))
}

/// The most digits an exact 64-bit integer has (u64::MAX has 20).
const MAX_INT_DIGITS: usize = 20;

/// The exact integer a number literal stands for, if it fits i64 or u64: `None` when
/// `text` is already that integer written canonically, else its canonical digits.
fn exact_integer(text: &str) -> Result<Option<String>, &'static str> {
    // The common case: already a plain integer of at most 18 digits (fits i64 and u64).
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    if !unsigned.is_empty()
        && unsigned.len() <= 18
        && unsigned.bytes().all(|b| b.is_ascii_digit())
        && (unsigned == "0" || !unsigned.starts_with('0'))
        && text != "-0"
    {
        return Ok(None);
    }
    let lit = literal(text).ok_or("not an integer")?;
    let exponent: i64 = match lit.exponent {
        None => 0,
        Some(e) => e.parse().map_err(|_| "not an exact 64-bit integer")?,
    };
    let mut digits = String::with_capacity(MAX_INT_DIGITS + 1);
    digits.push_str(lit.int);
    digits.push_str(lit.frac);
    let shift = exponent
        .checked_sub(lit.frac.len() as i64)
        .ok_or("not an exact 64-bit integer")?;
    if shift < 0 {
        let cut = digits
            .len()
            .saturating_sub(usize::try_from(shift.unsigned_abs()).unwrap_or(usize::MAX));
        if !digits[cut..].bytes().all(|b| b == b'0') {
            return Err("not an integer (has a fraction)");
        }
        digits.truncate(cut);
    }
    let significant = digits.trim_start_matches('0');
    if significant.is_empty() {
        return Ok((text != "0").then(|| "0".to_owned()));
    }
    let zeros = usize::try_from(shift.max(0)).map_err(|_| "not an exact 64-bit integer")?;
    if significant.len() + zeros > MAX_INT_DIGITS {
        return Err("integer does not fit 64 bits");
    }
    let mut canonical = String::with_capacity(MAX_INT_DIGITS + 1);
    if lit.negative {
        canonical.push('-');
    }
    canonical.push_str(significant);
    canonical.extend(std::iter::repeat_n('0', zeros));
    let fits = if lit.negative {
        canonical.parse::<i64>().is_ok()
    } else {
        canonical.parse::<u64>().is_ok()
    };
    if !fits {
        return Err("integer does not fit 64 bits");
    }
    Ok((canonical != text).then_some(canonical))
}

/// A numeric string as a JSON number literal, every digit kept: `+5` -> `5`, `.5` ->
/// `0.5`, `5.` -> `5`, `007` -> `7`.
fn number_text(s: &str) -> Result<String, &'static str> {
    let lit = literal(s).ok_or("not a number")?;
    let mut out = String::with_capacity(s.len() + 1);
    if lit.negative {
        out.push('-');
    }
    let int = lit.int.trim_start_matches('0');
    out.push_str(if int.is_empty() { "0" } else { int });
    if !lit.frac.is_empty() {
        out.push('.');
        out.push_str(lit.frac);
    }
    if let Some(e) = lit.exponent {
        out.push('e');
        out.push_str(e);
    }
    Ok(out)
}

fn to_timestamp(s: &str) -> Result<String, &'static str> {
    let t = parse_timestamp(s)?;
    // RFC 3339 has four-digit years: chrono would write `+12345-…` or `-0001-…`.
    if !(0..=9999).contains(&t.year()) {
        return Err("a year outside 0000-9999, which RFC 3339 cannot write");
    }
    Ok(t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

/// A timestamp as DMS writes them, in RFC 3339 UTC; `None` when it is not one.
pub(crate) fn rfc3339(s: &str) -> Option<String> {
    to_timestamp(s).ok()
}

/// Microseconds since the epoch of a timestamp as DMS writes them (RFC 3339, or
/// `YYYY-MM-DD HH:MM:SS[.f]` read as UTC); `None` when it is not one. Finer digits are
/// cut, never rounded.
pub(crate) fn epoch_micros(s: &str) -> Option<i64> {
    parse_timestamp(s).ok().map(|t| t.timestamp_micros())
}

fn parse_timestamp(s: &str) -> Result<DateTime<Utc>, &'static str> {
    let utc: DateTime<Utc> = if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        t.with_timezone(&Utc)
    } else if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f") {
        t.and_utc()
    } else if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f") {
        t.and_utc()
    } else if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        d.and_hms_opt(0, 0, 0).ok_or("not a timestamp")?.and_utc()
    } else {
        return Err("not a timestamp");
    };
    Ok(utc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).expect("test value is JSON")
    }

    fn apply(coercion: Coercion, text: &str) -> Result<String, &'static str> {
        coercion.apply(&raw(text)).map(Cow::into_owned)
    }

    /// A string's content is what serde_json reads, escapes or not; anything else is
    /// not a string. Borrowed when there is no escape.
    #[test]
    fn string_content_is_what_serde_json_reads() {
        for text in [
            r#""""#,
            r#""PAID""#,
            r#""a \"quoted\" word""#,
            r#""back\\slash""#,
            r#""\u00e9t\u00e9 \ud83d\ude00""#,
            r#""été 😀""#,
            r#""tab\there""#,
        ] {
            let expected: String = serde_json::from_str(text).expect("a JSON string");
            let value = raw(text);
            let content = string_of(&value).expect("a string");
            assert_eq!(content, expected, "{text}");
            assert_eq!(
                matches!(content, Cow::Borrowed(_)),
                !text.contains('\\'),
                "{text}"
            );
        }
        for text in ["42", "null", "true", r#"["a"]"#, r#"{"a":"b"}"#] {
            assert!(string_of(&raw(text)).is_err(), "{text}");
        }
    }

    /// Each coercion's accepted inputs and outputs, as JSON text.
    #[test]
    fn coercions() {
        let ok = [
            (Coercion::Int, r#""42""#, "42"),
            (Coercion::Int, r#"" -7 ""#, "-7"),
            (Coercion::Int, "3.0", "3"),
            (Coercion::Int, "42", "42"),
            (Coercion::Int, r#""1.2E+3""#, "1200"),
            (Coercion::Int, "1.5e1", "15"),
            (Coercion::Int, "-0.0", "0"),
            (
                Coercion::Int,
                r#""18446744073709551615""#,
                "18446744073709551615",
            ),
            (
                Coercion::Int,
                "-9223372036854775808",
                "-9223372036854775808",
            ),
            (Coercion::Int, r#"" +12300e-2 ""#, "123"),
            (Coercion::Int, r#""007""#, "7"),
            (
                Coercion::Int,
                "1.8446744073709551615e19",
                "18446744073709551615",
            ),
            (Coercion::Float, r#""19.90""#, "19.90"),
            (Coercion::Float, "19.90", "19.90"),
            (Coercion::Float, r#""+.5""#, "0.5"),
            (
                Coercion::Timestamp,
                r#""9999-12-31 23:59:59""#,
                r#""9999-12-31T23:59:59Z""#,
            ),
            (
                Coercion::Timestamp,
                r#""0000-01-01""#,
                r#""0000-01-01T00:00:00Z""#,
            ),
            (
                Coercion::Float,
                r#""12345678901234567.891""#,
                "12345678901234567.891",
            ),
            (Coercion::Decimal, r#""19.90""#, r#""19.90""#),
            (Coercion::Decimal, "12.5", r#""12.5""#),
            (
                Coercion::Decimal,
                "12345678901234567.891",
                r#""12345678901234567.891""#,
            ),
            (Coercion::Decimal, r#""-1.5e-3""#, r#""-1.5e-3""#),
            // As the published schema has a decimal: a digit first, after any minus.
            (Coercion::Decimal, r#"".5""#, r#""0.5""#),
            (Coercion::Decimal, r#"" -.50 ""#, r#""-0.50""#),
            (Coercion::Decimal, r#""+5""#, r#""5""#),
            (Coercion::Decimal, r#""5.""#, r#""5""#),
            (Coercion::Decimal, r#""+.5E+3""#, r#""0.5E+3""#),
            (Coercion::Bool, r#""t""#, "true"),
            (Coercion::Bool, "0", "false"),
            (Coercion::Bool, "true", "true"),
            (
                Coercion::Timestamp,
                r#""2024-07-29T09:58:17.98367+09:00""#,
                r#""2024-07-29T00:58:17.983670Z""#,
            ),
            (
                Coercion::Timestamp,
                r#""2024-07-29 00:58:17""#,
                r#""2024-07-29T00:58:17Z""#,
            ),
            (
                Coercion::Timestamp,
                r#""2015-10-17""#,
                r#""2015-10-17T00:00:00Z""#,
            ),
            (Coercion::Json, r#""{\"a\":[1.50]}""#, r#"{"a":[1.50]}"#),
            (Coercion::Hex, r#""0x48656C6C6F""#, r#""SGVsbG8=""#),
            (Coercion::Hex, r#""48656c6c6f""#, r#""SGVsbG8=""#),
            (Coercion::Int, "null", "null"),
        ];
        for (coercion, input, expected) in ok {
            assert_eq!(
                apply(coercion, input).as_deref(),
                Ok(expected),
                "{coercion:?} {input}"
            );
        }
    }

    /// Values that do not coerce are errors, and the reason never echoes the value.
    /// Integers beyond 64 bits are refused, never rounded.
    #[test]
    fn failures_do_not_leak_values() {
        let bad = [
            (Coercion::Int, r#""twelve-secret""#),
            (Coercion::Int, "1.5"),
            (Coercion::Int, "true"),
            (Coercion::Int, "18446744073709551616"),
            (Coercion::Int, "-9223372036854775809"),
            (Coercion::Int, "123456789012345678901234567890"),
            (Coercion::Int, "1e400"),
            (Coercion::Int, "1e-99999999999999999999"),
            (Coercion::Int, "1.8446744073709551616e19"),
            (Coercion::Int, "12301e-2"),
            (Coercion::Float, r#""NaN-secret""#),
            (Coercion::Float, r#""inf""#),
            (Coercion::Timestamp, r#""+12345-01-01 00:00:00""#),
            (Coercion::Timestamp, r#""-0001-01-01 00:00:00""#),
            (Coercion::Decimal, r#""1.2.3-secret""#),
            (Coercion::Decimal, r#"".""#),
            (Coercion::Bool, r#""maybe-secret""#),
            (Coercion::Timestamp, r#""yesterday-secret""#),
            (Coercion::Timestamp, "1700000000"),
            (Coercion::Json, r#""{secret""#),
            (Coercion::Json, r#""{\"a\":\"\\ud800-secret\"}""#),
            (Coercion::Hex, r#""0xZZsecret""#),
            (Coercion::Hex, r#""0xABC""#),
        ];
        for (coercion, input) in bad {
            let reason = apply(coercion, input).expect_err(&format!("{coercion:?} {input}"));
            assert!(!reason.contains("secret"));
        }
    }
}
