//! Column coercions (`[route.types]`): DMS renders values per source and not always as
//! consumers want them (numbers as strings, timestamps without zone, LOBs as `0x` hex).
//!
//! Every coercion keeps `null` as `null`. A value that does not coerce is an error for
//! the record, never a panic, and the error never contains the value (row values are
//! customer data).

use base64::Engine;
use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{Number, Value};

/// A coercion named in `[route.types]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Coercion {
    /// A JSON integer; from integers, integral floats and numeric strings.
    Int,
    /// A JSON number; from numbers and numeric strings.
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

    /// Applies the coercion. `Err` carries a value-free reason.
    pub fn apply(self, value: &Value) -> Result<Value, &'static str> {
        if value.is_null() {
            return Ok(Value::Null);
        }
        match self {
            Coercion::Int => to_int(value),
            Coercion::Float => to_float(value),
            Coercion::Decimal => to_decimal(value),
            Coercion::Bool => to_bool(value),
            Coercion::Timestamp => to_timestamp(value),
            Coercion::Json => match value {
                Value::String(s) => serde_json::from_str(s).map_err(|_| "string is not valid JSON"),
                other => Ok(other.clone()),
            },
            Coercion::Hex => match value {
                Value::String(s) => {
                    let digits = s
                        .strip_prefix("0x")
                        .or_else(|| s.strip_prefix("0X"))
                        .unwrap_or(s);
                    hex::decode(digits)
                        .map(|bytes| {
                            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
                        })
                        .map_err(|_| "not a hex string")
                }
                _ => Err("hex needs a string"),
            },
        }
    }
}

/// Largest integer a double holds exactly (2^53).
const EXACT_DOUBLE_INT: f64 = 9_007_199_254_740_992.0;

fn integral_float(f: f64) -> Result<Value, &'static str> {
    if f.is_finite() && f.fract() == 0.0 && f.abs() <= EXACT_DOUBLE_INT {
        Ok(Value::Number(Number::from(f as i64)))
    } else {
        Err("not an exact integer")
    }
}

fn to_int(value: &Value) -> Result<Value, &'static str> {
    match value {
        Value::Number(n) if n.is_i64() || n.is_u64() => Ok(value.clone()),
        Value::Number(n) => integral_float(n.as_f64().ok_or("not a number")?),
        Value::String(s) => {
            let s = s.trim();
            if let Ok(i) = s.parse::<i64>() {
                Ok(Value::Number(i.into()))
            } else if let Ok(u) = s.parse::<u64>() {
                Ok(Value::Number(u.into()))
            } else {
                // DMS writes big integers in scientific notation unless UseLargeIntegerValue.
                integral_float(s.parse::<f64>().map_err(|_| "not an integer")?)
            }
        }
        _ => Err("not an integer"),
    }
}

fn to_float(value: &Value) -> Result<Value, &'static str> {
    let f = match value {
        Value::Number(n) => n.as_f64().ok_or("not a number")?,
        Value::String(s) => s.trim().parse::<f64>().map_err(|_| "not a number")?,
        _ => return Err("not a number"),
    };
    Number::from_f64(f)
        .map(Value::Number)
        .ok_or("not a finite number")
}

fn is_decimal_literal(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (mantissa, exponent) = match s.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e)),
        None => (s, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    !(int.is_empty() && frac.is_empty()) && digits(int) && digits(frac) && exponent_ok
}

fn to_decimal(value: &Value) -> Result<Value, &'static str> {
    match value {
        Value::String(s) if is_decimal_literal(s.trim()) => Ok(Value::String(s.trim().to_owned())),
        Value::Number(n) => Ok(Value::String(n.to_string())),
        _ => Err("not a decimal number"),
    }
}

fn to_bool(value: &Value) -> Result<Value, &'static str> {
    match value {
        Value::Bool(_) => Ok(value.clone()),
        Value::Number(n) if n.as_i64() == Some(0) => Ok(Value::Bool(false)),
        Value::Number(n) if n.as_i64() == Some(1) => Ok(Value::Bool(true)),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "t" | "yes" | "y" | "1" => Ok(Value::Bool(true)),
            "false" | "f" | "no" | "n" | "0" => Ok(Value::Bool(false)),
            _ => Err("not a boolean"),
        },
        _ => Err("not a boolean"),
    }
}

fn to_timestamp(value: &Value) -> Result<Value, &'static str> {
    let Value::String(s) = value else {
        return Err("timestamp needs a string");
    };
    let s = s.trim();
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
    Ok(Value::String(
        utc.to_rfc3339_opts(SecondsFormat::AutoSi, true),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Each coercion's accepted inputs and outputs.
    #[test]
    fn coercions() {
        let ok = [
            (Coercion::Int, json!("42"), json!(42)),
            (Coercion::Int, json!(" -7 "), json!(-7)),
            (Coercion::Int, json!(3.0), json!(3)),
            (Coercion::Int, json!("1.2E+3"), json!(1200)),
            (
                Coercion::Int,
                json!("18446744073709551615"),
                json!(18_446_744_073_709_551_615_u64),
            ),
            (Coercion::Float, json!("19.90"), json!(19.9)),
            (Coercion::Decimal, json!("19.90"), json!("19.90")),
            (Coercion::Decimal, json!(12.5), json!("12.5")),
            (Coercion::Decimal, json!("-1.5e-3"), json!("-1.5e-3")),
            (Coercion::Bool, json!("t"), json!(true)),
            (Coercion::Bool, json!(0), json!(false)),
            (
                Coercion::Timestamp,
                json!("2024-07-29T09:58:17.98367+09:00"),
                json!("2024-07-29T00:58:17.983670Z"),
            ),
            (
                Coercion::Timestamp,
                json!("2024-07-29 00:58:17"),
                json!("2024-07-29T00:58:17Z"),
            ),
            (
                Coercion::Timestamp,
                json!("2015-10-17"),
                json!("2015-10-17T00:00:00Z"),
            ),
            (Coercion::Json, json!("{\"a\":[1]}"), json!({"a":[1]})),
            (Coercion::Hex, json!("0x48656C6C6F"), json!("SGVsbG8=")),
            (Coercion::Hex, json!("48656c6c6f"), json!("SGVsbG8=")),
            (Coercion::Int, Value::Null, Value::Null),
        ];
        for (coercion, input, expected) in ok {
            assert_eq!(coercion.apply(&input), Ok(expected), "{coercion:?} {input}");
        }
    }

    /// Values that do not coerce are errors, and the reason never echoes the value.
    #[test]
    fn failures_do_not_leak_values() {
        let bad = [
            (Coercion::Int, json!("twelve-secret")),
            (Coercion::Int, json!(1.5)),
            (Coercion::Int, json!(true)),
            (Coercion::Float, json!("NaN-secret")),
            (Coercion::Decimal, json!("1.2.3-secret")),
            (Coercion::Decimal, json!(".")),
            (Coercion::Bool, json!("maybe-secret")),
            (Coercion::Timestamp, json!("yesterday-secret")),
            (Coercion::Timestamp, json!(1_700_000_000)),
            (Coercion::Json, json!("{secret")),
            (Coercion::Hex, json!("0xZZsecret")),
            (Coercion::Hex, json!("0xABC")),
        ];
        for (coercion, input) in bad {
            let reason = coercion
                .apply(&input)
                .expect_err(&format!("{coercion:?} {input}"));
            assert!(!reason.contains("secret"));
        }
    }
}
