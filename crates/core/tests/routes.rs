//! The routes language on the core alone: schema drift, `changed_only`, and properties of
//! the decoder and the transform (filters, pseudonyms, truncation included) over generated
//! records and routes.

use std::collections::BTreeSet;

use cdc_relay_core::dms::{ChangeEvent, Decoder};
use cdc_relay_core::source::SourcePosition;
use cdc_relay_core::transform::{HashKey, Routes, SkipReason, Transformed, Transformer, MASK};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

fn change(op: &str, data: Value) -> ChangeEvent<'static> {
    let doc = json!({"data": data, "metadata": {"record-type": "data", "operation": op,
        "schema-name": "public", "table-name": "orders", "timestamp": "2024-11-21T00:00:00Z"}});
    // Decoded events borrow from their bytes; a test's few documents may live forever.
    let doc: &'static str = Box::leak(doc.to_string().into_boxed_str());
    Decoder::default()
        .decode(doc.as_bytes())
        .expect("valid DMS record")
}

const POS: SourcePosition<'static> = SourcePosition {
    cluster: "",
    timestamp_ms: 0,
    topic: "dms",
    partition: 0,
    offset: 1,
    kafka_key: None,
};

fn data_of(routes: &str, event: &ChangeEvent<'_>) -> Result<Value, String> {
    let transformer = Transformer::new(Routes::parse(routes, "drift").expect("valid routes"));
    match transformer.transform(POS, event) {
        Ok(Transformed::Messages(messages)) => {
            let value: Value =
                serde_json::from_slice(messages[0].value.as_deref().expect("value")).expect("json");
            Ok(value["data"].clone())
        }
        Ok(Transformed::Skipped(reason)) => Err(format!("skipped: {}", reason.as_str())),
        Err(e) => Err(e.to_string()),
    }
}

/// The ALTER/DROP promise: with `include`, an added column never appears and a dropped
/// one is omitted (or null with `missing = "null"`); without, an added column appears;
/// a dropped key column is a record error; a renamed table still matches a wildcard.
#[test]
fn schema_drift() {
    let include = "[[route]]\ntable = \"public.orders\"\ntopic = \"o\"\nkey = [\"id\"]\ninclude = [\"id\", \"status\", \"amount\"]\n";
    let open = "[[route]]\ntable = \"public.orders\"\ntopic = \"o\"\nkey = [\"id\"]\n";
    let before = change(
        "insert",
        json!({"id": 1, "status": "NEW", "amount": "5.00"}),
    );
    let added = change(
        "insert",
        json!({"id": 1, "status": "NEW", "amount": "5.00", "coupon": "X"}),
    );
    let dropped = change("insert", json!({"id": 1, "status": "NEW"}));
    let key_dropped = change("insert", json!({"status": "NEW", "amount": "5.00"}));

    let baseline = data_of(include, &before).expect("routed");
    assert_eq!(
        data_of(include, &added),
        Ok(baseline.clone()),
        "added column leaks through include"
    );
    assert_eq!(
        data_of(open, &added).expect("routed")["coupon"],
        "X",
        "added column appears without include"
    );
    assert_eq!(
        data_of(include, &dropped),
        Ok(json!({"id": 1, "status": "NEW"}))
    );
    let null_missing = format!("[defaults]\nmissing = \"null\"\n{include}");
    assert_eq!(
        data_of(&null_missing, &dropped),
        Ok(json!({"id": 1, "status": "NEW", "amount": null}))
    );
    let err = data_of(include, &key_dropped).expect_err("key column dropped");
    assert!(err.contains("key column \"id\""), "{err}");

    // A column renamed at the source: mapping the new name back keeps consumers whole.
    let renamed = change("insert", json!({"id": 1, "status": "NEW", "total": "5.00"}));
    let remapped = "[[route]]\ntable = \"public.orders\"\ntopic = \"o\"\nkey = [\"id\"]\ninclude = [\"id\", \"status\", \"total\"]\nrename = { total = \"amount\" }\n";
    assert_eq!(data_of(remapped, &renamed), Ok(baseline));

    // A renamed table: routes match on the new name; a wildcard keeps matching.
    let wildcard =
        "[defaults]\nunrouted = \"skip\"\n[[route]]\ntable = \"public.order*\"\ntopic = \"o\"\n";
    let doc = json!({"data": {"id": 1}, "metadata": {"record-type": "data", "operation": "insert",
        "schema-name": "public", "table-name": "orders_v2"}});
    let doc = doc.to_string();
    let moved = Decoder::default().decode(doc.as_bytes()).expect("valid");
    assert!(
        data_of(wildcard, &moved).is_ok(),
        "wildcard route stops matching a renamed table"
    );
}

fn column() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["id", "a", "b", "c", "d", "e", "email", "note"])
        .prop_map(str::to_owned)
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        any::<f64>().prop_map(|f| json!(f)),
        "[ -~]{0,12}".prop_map(Value::String),
        "\\PC{0,12}".prop_map(Value::String),
        "0x[0-9a-fA-F]{0,8}".prop_map(Value::String),
    ]
}

fn row() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(column(), value(), 0..8).prop_map(|m| m.into_iter().collect())
}

/// A random but valid route over the column alphabet.
#[derive(Debug, Clone)]
struct RouteSpec {
    include: Option<BTreeSet<String>>,
    exclude: BTreeSet<String>,
    mask: BTreeSet<String>,
    rename: Vec<(String, String)>,
    types: Vec<(String, &'static str)>,
    key: Option<Vec<String>>,
    hash: BTreeSet<String>,
    truncate: Vec<(String, usize)>,
}

impl RouteSpec {
    /// The spec as the routes accept it: a typed column and a key column are never
    /// truncated, a key column that is not hashed (its whole value is the key) is
    /// neither masked, excluded nor left out of `include`, and `include` names a column.
    fn legal(mut self) -> RouteSpec {
        let typed: BTreeSet<String> = self.types.iter().map(|(c, _)| c.clone()).collect();
        self.truncate.retain(|(c, _)| !typed.contains(c));
        for column in self.key.clone().into_iter().flatten() {
            self.truncate.retain(|(c, _)| *c != column);
            if self.hash.contains(&column) {
                continue;
            }
            self.mask.remove(&column);
            self.exclude.remove(&column);
            if let Some(include) = &mut self.include {
                include.insert(column);
            }
        }
        // An `include` naming no column is refused too.
        if self.include.as_ref().is_some_and(BTreeSet::is_empty) {
            self.include = None;
        }
        self
    }

    fn toml(&self) -> String {
        let list = |items: &mut dyn Iterator<Item = &String>| {
            items
                .map(|i| format!("{i:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut t = String::from("[[route]]\ntable = \"public.*\"\ntopic = \"out\"\n");
        if let Some(inc) = &self.include {
            t += &format!("include = [{}]\n", list(&mut inc.iter()));
        } else if !self.exclude.is_empty() {
            t += &format!("exclude = [{}]\n", list(&mut self.exclude.iter()));
        }
        t += &format!("mask = [{}]\n", list(&mut self.mask.iter()));
        if let Some(key) = &self.key {
            t += &format!("key = [{}]\n", list(&mut key.iter()));
        }
        let renames: Vec<String> = self
            .rename
            .iter()
            .map(|(f, to)| format!("{f:?} = {to:?}"))
            .collect();
        t += &format!("rename = {{ {} }}\n", renames.join(", "));
        t += &format!("hash = [{}]\n", list(&mut self.hash.iter()));
        let cuts: Vec<String> = self
            .truncate
            .iter()
            .map(|(c, n)| format!("{c:?} = {n}"))
            .collect();
        t += &format!("truncate = {{ {} }}\n", cuts.join(", "));
        t += "[route.types]\n";
        for (c, ty) in &self.types {
            t += &format!("{c:?} = {ty:?}\n");
        }
        t
    }
}

fn route_spec() -> impl Strategy<Value = RouteSpec> {
    let set = || prop::collection::btree_set(column(), 0..4);
    (
        prop::option::of(set()),
        set(),
        set(),
        prop::collection::btree_set(column(), 0..3),
        prop::collection::vec(
            (
                column(),
                prop::sample::select(vec![
                    "int",
                    "float",
                    "decimal",
                    "bool",
                    "timestamp",
                    "json",
                    "hex",
                ]),
            ),
            0..3,
        ),
        prop::option::of(prop::collection::vec(column(), 1..3)),
        set(),
        prop::collection::btree_map(column(), 1usize..6, 0..3),
    )
        .prop_map(
            |(include, exclude, mask, rename_from, types, key, hash, truncate)| {
                RouteSpec {
                    include,
                    exclude,
                    // A column is masked or hashed, never both (the routes refuse that).
                    hash: hash.difference(&mask).cloned().collect(),
                    mask,
                    truncate: truncate.into_iter().collect(),
                    // Targets outside the column alphabet never collide.
                    rename: rename_from
                        .into_iter()
                        .enumerate()
                        .map(|(i, c)| (c, format!("renamed_{i}")))
                        .collect(),
                    types: types
                        .into_iter()
                        .collect::<std::collections::BTreeMap<_, _>>()
                        .into_iter()
                        .collect(),
                    // `hash` needs `key` (the routes refuse it without one).
                    key: if key.is_none() && !hash.is_empty() {
                        Some(vec!["id".to_owned()])
                    } else {
                        key
                    },
                }
                .legal()
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any record through any route: no panic, the same output twice, and the mapped
    /// row honours include/exclude, rename and mask.
    #[test]
    fn transform_is_total_deterministic_and_respects_the_mapping(
        spec in route_spec(),
        data in row(),
        before in prop::option::of(row()),
        op in prop::sample::select(vec!["load", "insert", "update", "delete"]),
    ) {
        // Keyed by `id`: give most records one, so the mapping is checked, not the error.
        let mut data = data;
        if spec.key.as_deref() == Some(&["id".to_owned()][..]) && data.get("id").is_none_or(Value::is_null) {
            data.insert("id".to_owned(), json!(1));
        }
        let mut routes = Routes::parse(&spec.toml(), "prop").expect("generated routes are valid");
        routes.set_hash_key(Some(HashKey::local())).expect("a hash key");
        let transformer = Transformer::new(routes);
        let mut doc = json!({"data": data, "metadata": {"record-type": "data", "operation": op,
            "schema-name": "public", "table-name": "t"}});
        if let Some(b) = &before {
            doc["before-image"] = Value::Object(b.clone());
        }
        let doc = doc.to_string();
        let event = Decoder::default().decode(doc.as_bytes()).expect("valid DMS record");
        let first = transformer.transform(POS, &event);
        prop_assert_eq!(&first, &transformer.transform(POS, &event));
        let Ok(Transformed::Messages(messages)) = first else {
            // Errors (coercion, key) and skips are allowed; panics are not.
            return Ok(());
        };
        let renamed: std::collections::BTreeMap<&str, &str> =
            spec.rename.iter().map(|(f, t)| (t.as_str(), f.as_str())).collect();
        for m in messages {
            let Some(bytes) = m.value else { continue };
            let v: Value = serde_json::from_slice(&bytes).expect("json value");
            let out = v["data"].as_object().expect("data object");
            for (name, value) in out {
                let source = renamed.get(name.as_str()).copied().unwrap_or(name);
                prop_assert!(!spec.rename.iter().any(|(f, _)| f == name), "{} kept its old name", name);
                if let Some(inc) = &spec.include {
                    prop_assert!(inc.contains(source), "{} not included", source);
                } else {
                    prop_assert!(!spec.exclude.contains(source), "{} excluded", source);
                }
                if spec.mask.contains(source) && !value.is_null() {
                    prop_assert_eq!(value, &json!(MASK));
                }
                let coerced = spec.types.iter().any(|(c, _)| c == source);
                let input = &data[source];
                if coerced || input.is_null() || spec.mask.contains(source) {
                    continue;
                }
                // truncate, then hash: what the source value becomes, worked out here.
                let cut = spec.truncate.iter().find(|(c, _)| c == source).map(|(_, n)| *n);
                let expected_text = match (input, cut) {
                    (Value::String(text), Some(n)) => Value::String(text.chars().take(n).collect()),
                    _ => input.clone(),
                };
                if spec.hash.contains(source) {
                    let bytes = match &expected_text {
                        Value::String(text) => text.clone().into_bytes(),
                        other => other.to_string().into_bytes(),
                    };
                    prop_assert_eq!(value, &json!(HashKey::local().token(&bytes)), "{} is not its pseudonym", source);
                } else if !input.is_number() {
                    // (Numbers pass through as text: `exact_numbers.rs`; read back here
                    // through f64 they need not compare equal.)
                    prop_assert_eq!(value, &expected_text, "{} is not cut to its limit", source);
                }
                prop_assert!(data.contains_key(source), "{} is not a source column", source);
            }
        }
    }

    /// `filter = { op = [...] }` emits exactly what `operations = [...]` emits: the same
    /// messages for the operations it lists, nothing (counted as `filter`) for the others.
    #[test]
    fn an_op_filter_is_an_operations_list(
        ops in prop::sample::subsequence(vec!["load", "insert", "update", "delete"], 1..4),
        op in prop::sample::select(vec!["load", "insert", "update", "delete"]),
        data in row(),
    ) {
        let list = ops.iter().map(|o| format!("{o:?}")).collect::<Vec<_>>().join(", ");
        let route = |option: String| {
            Transformer::new(Routes::parse(&format!("[[route]]\ntable = \"public.*\"\ntopic = \"out\"\n{option}\n"), "prop").expect("valid"))
        };
        let filtered = route(format!("filter = {{ op = [{list}] }}"));
        let listed = route(format!("operations = [{list}]"));
        let doc = json!({"data": data, "metadata": {"record-type": "data", "operation": op,
            "schema-name": "public", "table-name": "t"}}).to_string();
        let event = Decoder::default().decode(doc.as_bytes()).expect("valid DMS record");
        let (a, b) = (filtered.transform(POS, &event), listed.transform(POS, &event));
        if ops.contains(&op) {
            prop_assert_eq!(a, b);
        } else {
            prop_assert_eq!(a, Ok(Transformed::Skipped(SkipReason::Filter)));
            prop_assert_eq!(b, Ok(Transformed::Skipped(SkipReason::Operation)));
        }
    }

    /// `numeric` compares exactly: for decimals with up to 18 fraction digits, written as
    /// JSON numbers or strings, plain or with an exponent, `>` holds exactly when the
    /// value is greater (worked out in integers here), and `exists` exactly when the
    /// column is present.
    #[test]
    fn numeric_filters_are_exact(
        (a, a_scale) in (any::<i64>(), 0u32..=18),
        (b, b_scale) in (any::<i64>(), 0u32..=18),
        near in prop::option::of(-1i64..=1),
        a_style in 0u8..4,
        b_style in 0u8..2,
        present in any::<bool>(),
    ) {
        let text = |m: i64, scale: u32, style: u8| -> String {
            let digits = m.unsigned_abs().to_string();
            let sign = if m < 0 { "-" } else { "" };
            match style % 2 {
                0 => {
                    let padded = format!("{digits:0>width$}", width = scale as usize + 1);
                    let (int, frac) = padded.split_at(padded.len() - scale as usize);
                    if frac.is_empty() { format!("{sign}{int}") } else { format!("{sign}{int}.{frac}") }
                }
                _ => format!("{sign}{digits}e-{scale}"),
            }
        };
        // Often a bound one unit in the last of 19 digits away: no f64 tells those apart.
        let (b, b_scale) = match near {
            Some(delta) => (a.saturating_add(delta), a_scale),
            None => (b, b_scale),
        };
        let (a_text, b_text) = (text(a, a_scale, a_style), text(b, b_scale, b_style));
        // a > b  <=>  a * 10^(b_scale) > b * 10^(a_scale), exact in i128 for these sizes.
        let greater = i128::from(a) * 10i128.pow(b_scale) > i128::from(b) * 10i128.pow(a_scale);
        let routes = format!(
            "[[route]]\ntable = \"public.*\"\ntopic = \"out\"\nfilter = {{ data = {{ amount = [{{ numeric = [\">\", {b_text:?}] }}], id = [{{ exists = true }}] }} }}\n"
        );
        let transformer = Transformer::new(Routes::parse(&routes, "prop").expect("valid"));
        // Half the values as JSON strings, as DMS writes decimals.
        let amount = if a_style >= 2 { format!("{a_text:?}") } else { a_text.clone() };
        let id = if present { r#""id":1,"# } else { "" };
        let doc = format!(r#"{{"data":{{{id}"amount":{amount}}},"metadata":{{"record-type":"data","operation":"insert","schema-name":"public","table-name":"t"}}}}"#);
        let event = Decoder::default().decode(doc.as_bytes()).expect("valid DMS record");
        let emitted = matches!(transformer.transform(POS, &event), Ok(Transformed::Messages(_)));
        prop_assert_eq!(emitted, greater && present, "{} > {}", a_text, b_text);
    }

    /// The DMS decoder never panics on arbitrary bytes or arbitrary JSON.
    #[test]
    fn decoder_is_total(bytes in prop::collection::vec(any::<u8>(), 0..256), json_doc in "[{}\\[\\]\":,a-z0-9 -]{0,64}") {
        let _ = Decoder::default().decode(&bytes);
        let _ = Decoder::default().decode(json_doc.as_bytes());
    }
}

/// `changed_only` drops an update that changed no mapped column but keeps one without a
/// before-image.
#[test]
fn changed_only_needs_a_real_change() {
    let routes = "[[route]]\ntable = \"public.orders\"\ntopic = \"o\"\ninclude = [\"id\", \"status\"]\nchanged_only = true\n";
    let transformer = Transformer::new(Routes::parse(routes, "t").expect("valid"));
    let doc = |before: Value| {
        json!({"data": {"id": 1, "status": "A", "noise": 2}, "before-image": before,
            "metadata": {"record-type": "data", "operation": "update", "schema-name": "public", "table-name": "orders"}})
    };
    let decode = |v: Value| {
        let text: &'static str = Box::leak(v.to_string().into_boxed_str());
        Decoder::default().decode(text.as_bytes()).expect("valid")
    };
    let unchanged = decode(doc(json!({"id": 1, "status": "A", "noise": 1})));
    assert_eq!(
        transformer.transform(POS, &unchanged),
        Ok(Transformed::Skipped(SkipReason::Unchanged))
    );
    let changed = decode(doc(json!({"id": 1, "status": "B", "noise": 2})));
    assert!(matches!(
        transformer.transform(POS, &changed),
        Ok(Transformed::Messages(_))
    ));
    let no_before = change("update", json!({"id": 1, "status": "A"}));
    assert!(matches!(
        transformer.transform(POS, &no_before),
        Ok(Transformed::Messages(_))
    ));
}
