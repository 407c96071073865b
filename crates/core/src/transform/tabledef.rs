//! Column types from DMS's table definitions.
//!
//! DMS data records never say a column's type; its control records do, when the
//! endpoint has `IncludeControlDetails`:
//! `{"control": {"table-def": {"columns": {"id": {"type": "INT32", "nullable": false}}}}}`.
//!
//! The transform never types a column from a control record it happens to see: DMS keys
//! control records by task id and data records by table, so they land on different
//! partitions, and a Lambda invocation or a serve batch rarely holds both. Typing from
//! what one process saw would give the same record a different schema on a retry, on
//! another execution environment or after a restart. Instead `cdc-relay types` turns
//! the table definitions of captured control records into a route's `[route.types]`,
//! which every invocation then applies alike.

use std::fmt::{self, Write as _};

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::coerce::Coercion;
use super::routes::Route;
use crate::dms::{Change, ChangeEvent, Row};

/// The coercion that reads a DMS column type's values as its type, or `None` when the
/// value is best left as DMS writes it (strings, dates and times of day, types not
/// known here). Both spellings DMS uses are read: its data types (`INT4`, `REAL8`) and
/// the bit widths of its Kafka control records (`INT32`).
pub fn coercion_for(dms_type: &str) -> Option<Coercion> {
    match dms_type.trim().to_ascii_uppercase().as_str() {
        "BOOLEAN" | "BOOL" => Some(Coercion::Bool),
        "INT1" | "INT2" | "INT4" | "INT8" | "INT16" | "INT32" | "INT64" | "UINT1" | "UINT2"
        | "UINT4" | "UINT16" | "UINT32" => Some(Coercion::Int),
        // DMS's UINT8 is eight bytes: past 2^63 an `int` has no int64 to become, so its
        // digits stay exact as a decimal string.
        "UINT8" | "UINT64" => Some(Coercion::Decimal),
        "NUMERIC" | "DECIMAL" => Some(Coercion::Decimal),
        "REAL4" | "REAL8" | "FLOAT" | "FLOAT32" | "FLOAT64" | "DOUBLE" => Some(Coercion::Float),
        "DATETIME" | "TIMESTAMP" => Some(Coercion::Timestamp),
        "BYTES" | "BLOB" => Some(Coercion::Hex),
        _ => None,
    }
}

/// One column of a table definition, in the order DMS listed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefColumn {
    /// The source column name.
    pub name: String,
    /// Its DMS type, as sent (empty when the definition gives none).
    pub dms_type: String,
    /// What `[route.types]` should say for it.
    pub coercion: Option<Coercion>,
    /// Values of data records it was tried on ([`TableDef::try_on`]), and how many of
    /// them the coercion refused.
    pub seen: usize,
    /// See `seen`.
    pub refused: usize,
}

/// The table definition of one control record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDef {
    /// Source schema.
    pub schema: String,
    /// Source table.
    pub table: String,
    /// The control operation that carried it (`create-table`, `add-column`, ...).
    pub operation: String,
    /// When DMS produced the record.
    pub timestamp: String,
    /// The columns, in DMS's order.
    pub columns: Vec<DefColumn>,
}

impl TableDef {
    /// `schema.table`.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.table)
    }

    /// The table definition a decoded record carries: `Ok(None)` for a data record or a
    /// control record without one (no `IncludeControlDetails`), `Err` when its
    /// `table-def` is not the shape DMS sends.
    pub fn of(event: &ChangeEvent<'_>) -> Result<Option<TableDef>, String> {
        let Change::Control { operation, control } = &event.change else {
            return Ok(None);
        };
        let Some(control) = control else {
            return Ok(None);
        };
        let parsed: Control = serde_json::from_str(control.get())
            .map_err(|e| format!("control record's table-def: {e}"))?;
        let Some(def) = parsed.table_def else {
            return Ok(None);
        };
        Ok(Some(TableDef {
            schema: event.schema.to_string(),
            table: event.table.to_string(),
            operation: operation.to_string(),
            timestamp: event
                .metadata
                .timestamp
                .as_deref()
                .unwrap_or_default()
                .to_owned(),
            columns: {
                // A name DMS repeats: its last definition, as a JSON reader would.
                let mut columns: Vec<DefColumn> = Vec::with_capacity(def.columns.0.len());
                for (name, column) in def.columns.0 {
                    columns.retain(|c| c.name != name);
                    columns.push(DefColumn {
                        coercion: coercion_for(&column.kind),
                        dms_type: column.kind,
                        name,
                        refused: 0,
                        seen: 0,
                    });
                }
                columns
            },
        }))
    }

    /// Tries each column's coercion on a data record's row of this table (its after
    /// image), counting the values it refuses: a suggested type that refuses values DMS
    /// really sends would make those records poison, so it is printed commented out.
    pub fn try_on(&mut self, row: &Row<'_>) {
        for column in &mut self.columns {
            let (Some(coercion), Some(value)) = (column.coercion, row.get(&column.name)) else {
                continue;
            };
            column.seen += 1;
            if coercion.apply(value).is_err() {
                column.refused += 1;
            }
        }
    }

    /// The table's types as TOML, one line per column with its DMS type in a comment:
    /// under a `[route.types]` header when `route` declares no types yet, else the lines
    /// to add to the route's `[route.types]` (a second header would not load). Given
    /// the route, a column it already types alike is left out, and one it types
    /// otherwise is a comment naming both (the route's word stands). A type that refused
    /// a value of the data records it was tried on is commented out, with the count.
    /// Everything from the record is escaped: nothing in it can add a line.
    pub fn route_types(&self, route: Option<&Route>) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# {}: {} at {} (DMS table-def)",
            comment(&self.qualified()),
            comment(&self.operation),
            if self.timestamp.is_empty() {
                "an unknown time".to_owned()
            } else {
                comment(&self.timestamp)
            }
        );
        match route {
            Some(route) if !route.types.is_empty() => {
                let _ = writeln!(
                    out,
                    "# add to the [route.types] of the route with table = {}",
                    comment(&toml_string(&route.table))
                );
            }
            Some(route) => {
                let _ = writeln!(
                    out,
                    "# for the route with table = {}\n[route.types]",
                    comment(&toml_string(&route.table))
                );
            }
            None => {
                let _ = writeln!(out, "[route.types]");
            }
        }
        for column in &self.columns {
            let key = toml_key(&column.name);
            let kind = describe(&column.dms_type);
            let declared = route.and_then(|r| {
                r.types
                    .iter()
                    .find(|(name, _)| r.same_column(name, &column.name))
                    .map(|(_, c)| *c)
            });
            match (column.coercion, declared) {
                (Some(wanted), Some(has)) if wanted == has => {}
                (wanted, Some(has)) => {
                    let _ = writeln!(
                        out,
                        "# {}: the route says {:?}; DMS's {kind} reads as {}",
                        comment(&key),
                        has.as_str(),
                        wanted.map_or("its text".to_owned(), |c| format!("{:?}", c.as_str()))
                    );
                }
                (Some(wanted), None) if column.refused > 0 => {
                    let _ = writeln!(
                        out,
                        "# {} = {:?}  # {kind}: refused {} of {} values in the event: left as DMS writes it",
                        comment(&key),
                        wanted.as_str(),
                        column.refused,
                        column.seen
                    );
                }
                (Some(wanted), None) => {
                    let _ = writeln!(out, "{key} = {:?}  # {kind}", wanted.as_str());
                }
                (None, None) => {
                    let _ = writeln!(out, "# {}: {kind}, left as DMS writes it", comment(&key));
                }
            }
        }
        out
    }
}

fn describe(dms_type: &str) -> String {
    if dms_type.is_empty() {
        "no type given".to_owned()
    } else {
        comment(dms_type)
    }
}

/// Text for a TOML comment: control characters (a line break above all) escaped.
fn comment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// A TOML basic string: JSON's escapes (a subset of TOML's), and DEL, which TOML
/// refuses raw.
fn toml_string(text: &str) -> String {
    serde_json::Value::from(text)
        .to_string()
        .replace('\u{7f}', "\\u007f")
}

/// A TOML key: bare when it can be, quoted otherwise.
fn toml_key(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        name.to_owned()
    } else {
        toml_string(name)
    }
}

#[derive(Deserialize)]
struct Control {
    #[serde(rename = "table-def")]
    table_def: Option<Def>,
}

#[derive(Deserialize)]
struct Def {
    #[serde(default)]
    columns: Columns,
}

#[derive(Deserialize)]
struct ColumnDef {
    #[serde(rename = "type", default)]
    kind: String,
}

/// The `columns` object in DMS's order (a map would sort it).
#[derive(Default)]
struct Columns(Vec<(String, ColumnDef)>);

impl<'de> Deserialize<'de> for Columns {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Ordered;
        impl<'de> Visitor<'de> for Ordered {
            type Value = Columns;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of column definitions")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Columns, A::Error> {
                let mut columns = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    columns.push((name, map.next_value()?));
                }
                Ok(Columns(columns))
            }
            fn visit_unit<E>(self) -> Result<Columns, E> {
                Ok(Columns::default())
            }
        }
        deserializer.deserialize_any(Ordered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dms::Decoder;
    use crate::transform::routes::Routes;

    const ADD_COLUMN: &str = r#"{"control":{"table-def":{"columns":{
        "id":{"type":"INT32","nullable":false},
        "user_id":{"type":"INT4","nullable":false},
        "amount":{"type":"NUMERIC","precision":10,"scale":2},
        "paid_at":{"type":"DATETIME"},
        "avatar":{"type":"BLOB"},
        "active":{"type":"BOOLEAN"},
        "big":{"type":"UINT8"},
        "score":{"type":"REAL8"},
        "born":{"type":"DATE"},
        "order note":{"type":"WSTRING","length":20}},
        "primary-key":["id"]}},
      "metadata":{"timestamp":"2024-11-21T14:40:00.123456Z","record-type":"control",
        "operation":"add-column","partition-key-type":"task-id","schema-name":"public",
        "table-name":"orders"}}"#;

    fn def() -> TableDef {
        let event = Decoder::default()
            .decode(ADD_COLUMN.as_bytes())
            .expect("decodes");
        TableDef::of(&event).expect("a table-def").expect("present")
    }

    /// The columns keep DMS's order and each gets the coercion its type reads as.
    #[test]
    fn table_def_columns_in_order_with_their_coercions() {
        let def = def();
        assert_eq!(def.qualified(), "public.orders");
        assert_eq!(def.operation, "add-column");
        let got: Vec<(&str, Option<&str>)> = def
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.coercion.map(Coercion::as_str)))
            .collect();
        assert_eq!(
            got,
            [
                ("id", Some("int")),
                ("user_id", Some("int")),
                ("amount", Some("decimal")),
                ("paid_at", Some("timestamp")),
                ("avatar", Some("hex")),
                ("active", Some("bool")),
                ("big", Some("decimal")),
                ("score", Some("float")),
                ("born", None),
                ("order note", None),
            ]
        );
    }

    /// Data records and control records without details carry no table definition; a
    /// table-def of the wrong shape is an error, not a panic.
    #[test]
    fn only_control_records_with_details_carry_one() {
        let decoder = Decoder::default();
        let data = r#"{"data":{"id":1},"metadata":{"record-type":"data","operation":"insert","schema-name":"s","table-name":"t"}}"#;
        let bare = r#"{"control":{},"metadata":{"record-type":"control","operation":"drop-table","schema-name":"s","table-name":"t"}}"#;
        let wrong = r#"{"control":{"table-def":{"columns":[1]}},"metadata":{"record-type":"control","operation":"create-table","schema-name":"s","table-name":"t"}}"#;
        for doc in [data, bare] {
            let event = decoder.decode(doc.as_bytes()).expect("decodes");
            assert_eq!(TableDef::of(&event), Ok(None), "{doc}");
        }
        let event = decoder.decode(wrong.as_bytes()).expect("decodes");
        assert!(TableDef::of(&event).is_err());
    }

    /// The TOML printed for a table, under a route's table and topic, loads, and its types
    /// are the ones the table-def implies.
    #[test]
    fn printed_types_load_as_a_route() {
        let text = def().route_types(None);
        let routes = Routes::parse(
            &format!("[[route]]\ntable = \"public.orders\"\ntopic = \"t\"\n{text}"),
            "types",
        )
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
        let route = routes.route_for("public.orders").expect("routed");
        let types: Vec<(&str, &str)> = route
            .types
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            types,
            [
                ("active", "bool"),
                ("amount", "decimal"),
                ("avatar", "hex"),
                ("big", "decimal"),
                ("id", "int"),
                ("paid_at", "timestamp"),
                ("score", "float"),
                ("user_id", "int"),
            ]
        );
        assert!(
            text.contains("# \"order note\": WSTRING, left as DMS writes it"),
            "{text}"
        );
    }

    /// Given a route with types, a column it types alike is left out and one it types
    /// otherwise is a comment naming both; the rest are lines that, pasted into the
    /// route's `[route.types]`, load (no second header).
    #[test]
    fn printed_types_respect_the_route() {
        let route = "[[route]]\ntable = \"public.orders\"\ntopic = \"o\"\n[route.types]\nid = \"int\"\namount = \"float\"\n";
        let routes = Routes::parse(route, "r").expect("valid");
        let text = def().route_types(routes.route_for("public.orders"));
        assert!(
            text.contains(
                "# add to the [route.types] of the route with table = \"public.orders\"\n"
            ),
            "{text}"
        );
        assert!(!text.contains("\n[route.types]"), "{text}");
        assert!(!text.contains("\nid ="), "{text}");
        assert!(
            text.contains("# amount: the route says \"float\"; DMS's NUMERIC reads as \"decimal\""),
            "{text}"
        );
        assert!(text.contains("\nuser_id = \"int\"  # INT4"), "{text}");
        let pasted = Routes::parse(&format!("{route}{text}"), "pasted")
            .unwrap_or_else(|e| panic!("{e}\n{route}{text}"));
        let types = &pasted.route_for("public.orders").expect("routed").types;
        assert_eq!(types.get("user_id").map(|c| c.as_str()), Some("int"));
        assert_eq!(types.get("amount").map(|c| c.as_str()), Some("float"));

        // A route without types yet gets the header.
        let bare =
            Routes::parse("[[route]]\ntable = \"public.*\"\ntopic = \"o\"\n", "r").expect("valid");
        let text = def().route_types(bare.route_for("public.orders"));
        assert!(
            text.contains("# for the route with table = \"public.*\"\n[route.types]\n"),
            "{text}"
        );
    }

    /// Names and types from the record cannot break the TOML or add a line: quotes,
    /// backslashes, line breaks, DEL, dots, non-ASCII and empty names load as the
    /// columns they are, and a type holding a line break stays in its comment.
    #[test]
    fn names_from_the_record_are_escaped() {
        let doc = "{\"control\":{\"table-def\":{\"columns\":{\"a\\\"b\":{\"type\":\"INT4\"},\"c\\\\d\":{\"type\":\"INT4\"},\"e\\nf\":{\"type\":\"INT4\"},\"g\\u007fh\":{\"type\":\"INT4\"},\"i.j\":{\"type\":\"INT4\"},\"k\u{e9}\":{\"type\":\"INT4\"},\"\":{\"type\":\"INT4\"},\"x\":{\"type\":\"STRING\\nx = \\\"hex\\\"\"}}}},\"metadata\":{\"record-type\":\"control\",\"operation\":\"create-table\\n[evil]\",\"schema-name\":\"s\",\"table-name\":\"t\"}}";
        let event = Decoder::default().decode(doc.as_bytes()).expect("decodes");
        let text = TableDef::of(&event)
            .expect("a table-def")
            .expect("present")
            .route_types(None);
        let routes = Routes::parse(
            &format!("[[route]]\ntable = \"s.t\"\ntopic = \"t\"\n{text}"),
            "escaped",
        )
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
        let types: Vec<&str> = routes
            .route_for("s.t")
            .expect("routed")
            .types
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            types,
            ["", "a\"b", "c\\d", "e\nf", "g\u{7f}h", "i.j", "k\u{e9}"],
            "{text}"
        );
        assert!(!text.contains("\n[evil]"), "{text}");
    }

    /// A suggested type that refuses a value of the table's data records in the event is
    /// commented out with the count; one that takes them all stays.
    #[test]
    fn a_type_the_data_refuses_is_commented_out() {
        let mut def = def();
        let decoder = Decoder::default();
        for data in [
            r#"{"paid_at":"2024-11-21 14:39:59","id":1,"active":"maybe"}"#,
            r#"{"paid_at":"0000-00-00 00:00:00","id":2,"active":true}"#,
        ] {
            let doc = format!(
                r#"{{"data":{data},"metadata":{{"record-type":"data","operation":"insert","schema-name":"public","table-name":"orders"}}}}"#
            );
            let event = decoder.decode(doc.as_bytes()).expect("decodes");
            let Change::Data { data, .. } = &event.change else {
                panic!("a data record");
            };
            def.try_on(data);
        }
        let text = def.route_types(None);
        assert!(
            text.contains(
                "# paid_at = \"timestamp\"  # DATETIME: refused 1 of 2 values in the event"
            ),
            "{text}"
        );
        assert!(
            text.contains("# active = \"bool\"  # BOOLEAN: refused 1 of 2 values in the event"),
            "{text}"
        );
        assert!(text.contains("\nid = \"int\"  # INT32\n"), "{text}");
    }
}
