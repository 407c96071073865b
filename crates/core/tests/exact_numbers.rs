//! Numbers leave exactly as they came: a value no route coerces is copied byte for byte,
//! and a coercion either gives the exact value or refuses. Nothing goes through a float.

use cdc_relay_core::dms::Decoder;
use cdc_relay_core::source::SourcePosition;
use cdc_relay_core::transform::{Routes, Transformed, Transformer};
use proptest::prelude::*;
use serde_json::value::RawValue;

const POS: SourcePosition<'static> = SourcePosition {
    cluster: "c",
    timestamp_ms: 0,
    topic: "dms",
    partition: 0,
    offset: 1,
    kafka_key: None,
};

/// A route that renames, masks and coerces other columns, so the number passes through
/// a route that does work, and one that coerces `n` itself.
fn transformer(coercion: Option<&str>) -> Transformer {
    let types = coercion.map_or_else(String::new, |c| format!("n = \"{c}\"\n"));
    let routes = format!(
        "[[route]]\ntable = \"public.t\"\ntopics = [\"a\", \"b\"]\nkey = [\"id\"]\nmask = [\"secret\"]\nrename = {{ id = \"ident\" }}\n[route.types]\nid = \"int\"\n{types}"
    );
    Transformer::new(Routes::parse(&routes, "exact").expect("valid routes"))
}

/// The JSON text of column `n` in every message made from a record whose `n` is `number`
/// (`None`: the record failed, with the error).
fn relayed(transformer: &Transformer, number: &str) -> Result<Vec<String>, String> {
    let doc = format!(
        r#"{{"data":{{"id":7,"n":{number},"secret":"s"}},"metadata":{{"record-type":"data","operation":"insert","schema-name":"public","table-name":"t"}}}}"#
    );
    let event = Decoder::default()
        .decode(doc.as_bytes())
        .map_err(|e| e.to_string())?;
    match transformer.transform(POS, &event) {
        Ok(Transformed::Messages(messages)) => Ok(messages
            .iter()
            .map(|m| {
                let value = m.value.as_deref().expect("an event");
                #[derive(serde::Deserialize)]
                struct Envelope<'a> {
                    #[serde(borrow)]
                    data: std::collections::BTreeMap<String, &'a RawValue>,
                }
                let envelope: Envelope<'_> = serde_json::from_slice(value).expect("JSON");
                envelope.data["n"].get().to_owned()
            })
            .collect()),
        Ok(skipped) => Err(format!("{skipped:?}")),
        Err(e) => Err(e.to_string()),
    }
}

/// Any JSON number literal: up to 60 integer digits, 40 fraction digits, an exponent.
fn number() -> impl Strategy<Value = String> {
    "-?(0|[1-9][0-9]{0,59})(\\.[0-9]{1,40})?([eE][+-]?[0-9]{1,4})?"
}

/// The examples a new user tried: each leaves as it came, with and without `float`
/// and `decimal` coercion.
#[test]
fn the_examples_keep_every_digit() {
    for number in [
        "12345678901234567.891",
        "123456789012345678901234567890",
        "19.90",
        "1E+400",
        "-0.000000000000000000000000000001",
    ] {
        assert_eq!(
            relayed(&transformer(None), number),
            Ok(vec![number.to_owned(); 2])
        );
        assert_eq!(
            relayed(&transformer(Some("float")), number),
            Ok(vec![number.to_owned(); 2])
        );
        assert_eq!(
            relayed(&transformer(Some("decimal")), number),
            Ok(vec![format!("\"{number}\""); 2])
        );
    }
}

/// An integer too large for 64 bits is refused by `int`, naming the column; never rounded.
#[test]
fn int_refuses_what_does_not_fit() {
    let err = relayed(&transformer(Some("int")), "123456789012345678901234567890")
        .expect_err("does not fit");
    assert!(
        err.contains("column \"n\"") && err.contains("64 bits"),
        "{err}"
    );
    assert_eq!(
        relayed(&transformer(Some("int")), "18446744073709551615"),
        Ok(vec!["18446744073709551615".to_owned(); 2])
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Pass-through, `float` and `decimal` keep the number's text exactly.
    #[test]
    fn numbers_pass_through_byte_for_byte(number in number()) {
        prop_assert_eq!(relayed(&transformer(None), &number), Ok(vec![number.clone(); 2]));
        prop_assert_eq!(relayed(&transformer(Some("float")), &number), Ok(vec![number.clone(); 2]));
        prop_assert_eq!(
            relayed(&transformer(Some("decimal")), &number),
            Ok(vec![format!("\"{number}\""); 2])
        );
    }

    /// `int` gives exactly the integer a literal stands for, however it is written (a
    /// fraction of zeros, an exponent, a number in a string), when it fits i64 or u64,
    /// and refuses otherwise; a literal with a non-zero fraction is refused.
    #[test]
    fn int_is_exact(
        value in -(1i128 << 66)..(1i128 << 66),
        zeros in 0usize..4,
        shift in 0u32..4,
        quoted in any::<bool>(),
        fraction in any::<bool>(),
    ) {
        // `value` written as digits with `shift` of them moved behind the point and an
        // exponent that moves them back, plus `zeros` trailing zeros after the point.
        let digits = value.unsigned_abs().to_string();
        let sign = if value < 0 { "-" } else { "" };
        let split = digits.len().saturating_sub(shift as usize);
        let (int, frac) = digits.split_at(split);
        let int = if int.is_empty() { "0" } else { int };
        let frac = format!("{frac}{}", "0".repeat(zeros));
        let mut text = format!("{sign}{int}");
        if !frac.is_empty() || fraction {
            text.push('.');
            text.push_str(if frac.is_empty() { "0" } else { &frac });
        }
        if fraction {
            text.push('5');
        }
        if shift > 0 {
            text.push_str(&format!("e{}", digits.len() - split));
        }
        let input = if quoted { format!("\"{text}\"") } else { text.clone() };
        let got = relayed(&transformer(Some("int")), &input);
        let fits = i64::try_from(value).is_ok() || u64::try_from(value).is_ok();
        if fraction || !fits {
            prop_assert!(got.is_err(), "{} gave {:?}", input, got);
        } else {
            prop_assert_eq!(got, Ok(vec![value.to_string(); 2]), "{}", input);
        }
    }
}
