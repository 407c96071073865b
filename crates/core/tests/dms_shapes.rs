//! DMS as it really is: each engine's before-image, Oracle's upper-case names, DMS's own
//! tables, transaction details, and columns DMS leaves out.

use cdc_relay_core::dms::{ChangeEvent, Decoder};
use cdc_relay_core::source::SourcePosition;
use cdc_relay_core::transform::{
    header, HashKey, OutMessage, Routes, SkipReason, Transformed, Transformer,
};
use serde_json::{json, Value};

const POS: SourcePosition<'static> = SourcePosition {
    cluster: "",
    timestamp_ms: 0,
    topic: "dms",
    partition: 0,
    offset: 1,
    kafka_key: None,
};

fn transformer(routes: &str) -> Transformer {
    let mut routes = Routes::parse(routes, "shapes").expect("valid routes");
    routes
        .set_hash_key(Some(HashKey::local()))
        .expect("a hash key");
    Transformer::new(routes)
}

fn decode(doc: Value) -> ChangeEvent<'static> {
    let text: &'static str = Box::leak(doc.to_string().into_boxed_str());
    Decoder::default()
        .decode(text.as_bytes())
        .expect("valid DMS record")
}

fn record(schema: &str, table: &str, op: &str, data: Value, before: Option<Value>) -> Value {
    let mut doc = json!({"data": data, "metadata": {"record-type": "data", "operation": op,
        "schema-name": schema, "table-name": table, "timestamp": "2024-11-21T00:00:00Z",
        "transaction-id": 7}});
    if let Some(before) = before {
        doc["before-image"] = before;
    }
    doc
}

fn messages(t: &Transformer, doc: Value) -> Vec<OutMessage> {
    match t.transform(POS, &decode(doc)).expect("transforms") {
        Transformed::Messages(m) => m,
        other => panic!("expected messages, got {other:?}"),
    }
}

fn value(m: &OutMessage) -> Value {
    serde_json::from_slice(m.value.as_deref().expect("a value")).expect("json")
}

const ORDERS: &str = r#"
[[route]]
table = "public.orders"
topic = "orders"
key = ["id"]
exclude = ["note"]
changed_only = true
"#;

/// One update (status PENDING -> PAID) as each engine's before-image shows it: what is
/// known to have changed, what cannot be known, and `changed_only` never dropping an
/// update whose change is unknown.
#[test]
fn before_images_of_each_engine() {
    let t = transformer(ORDERS);
    let data = json!({"id": 46, "status": "PAID", "amount": "19.90", "note": "gift"});
    let cases = [
        // MySQL: every column.
        (
            json!({"id": 46, "status": "PENDING", "amount": "19.90", "note": "gift"}),
            json!(["status"]),
            json!([]),
        ),
        // PostgreSQL (default REPLICA IDENTITY): the key only.
        (json!({"id": 46}), json!([]), json!(["amount", "status"])),
        // Oracle: the key and the changed columns.
        (
            json!({"id": 46, "status": "PENDING"}),
            json!(["status"]),
            json!(["amount"]),
        ),
    ];
    for (before, changed, unknown) in cases {
        let out = messages(
            &t,
            record(
                "public",
                "orders",
                "update",
                data.clone(),
                Some(before.clone()),
            ),
        );
        let v = value(&out[0]);
        assert_eq!(v["changed"], changed, "before-image {before}");
        assert_eq!(v["unknown"], unknown, "before-image {before}");
    }
    // A change only to an excluded column, with a full before-image: not news.
    let note_only = record(
        "public",
        "orders",
        "update",
        data.clone(),
        Some(json!({"id": 46, "status": "PAID", "amount": "19.90", "note": "old"})),
    );
    assert_eq!(
        t.transform(POS, &decode(note_only)),
        Ok(Transformed::Skipped(SkipReason::Unchanged))
    );
    // Without a before-image there is nothing to compare: neither field appears.
    let v = value(&messages(&t, record("public", "orders", "update", data, None))[0]);
    assert!(
        v.get("changed").is_none() && v.get("unknown").is_none(),
        "{v}"
    );
}

/// `ignore_case` matches Oracle's upper-case table and column names; without it the
/// route does not match and the table is unrouted.
#[test]
fn oracle_names_match_regardless_of_case() {
    let routes = |ignore: bool| {
        format!(
            "[defaults]\nunrouted = \"skip\"\n[[route]]\ntable = \"hr.employees\"\nignore_case = {ignore}\ntopic = \"hr\"\nkey = [\"employee_id\"]\nexclude = [\"salary\"]\nhash = [\"email\"]\nrename = {{ first_name = \"name\" }}\n[route.types]\nemployee_id = \"int\"\n"
        )
    };
    let doc = record(
        "HR",
        "EMPLOYEES",
        "insert",
        json!({"EMPLOYEE_ID": "101", "EMAIL": "SKING", "FIRST_NAME": "Steven", "SALARY": 24000}),
        None,
    );
    let out = messages(&transformer(&routes(true)), doc.clone());
    assert_eq!(out[0].key.as_deref(), Some(&b"101"[..]));
    let v = value(&out[0]);
    let token = HashKey::local().token(b"SKING");
    assert_eq!(
        v["data"],
        json!({"EMAIL": token, "EMPLOYEE_ID": 101, "name": "Steven"}),
        "exclude, hash, rename and types all apply to upper-case columns"
    );
    assert_eq!(
        transformer(&routes(false)).transform(POS, &decode(doc)),
        Ok(Transformed::Skipped(SkipReason::Unrouted))
    );
    // A glob route, and the default from [defaults].
    let glob = "[defaults]\nignore_case = true\nunrouted = \"skip\"\n[[route]]\ntable = \"hr.emp*\"\ntopic = \"hr\"\n";
    let doc = record("HR", "EMPLOYEES", "insert", json!({"ID": 1}), None);
    assert_eq!(messages(&transformer(glob), doc).len(), 1);
}

/// DMS's own tables are skipped and counted by default, in any case; `dms_tables =
/// "route"` routes them.
#[test]
fn dms_tables_are_skipped_by_default() {
    for table in [
        "awsdms_apply_exceptions",
        "AWSDMS_STATUS",
        "awsdms_ddl_audit",
    ] {
        let doc = record("admin", table, "insert", json!({"TASK_NAME": "t"}), None);
        assert_eq!(
            transformer("").transform(POS, &decode(doc.clone())),
            Ok(Transformed::Skipped(SkipReason::DmsTable)),
            "{table}"
        );
        assert_eq!(
            messages(&transformer("[defaults]\ndms_tables = \"route\"\n"), doc).len(),
            1
        );
    }
    let ordinary = record("admin", "awsdms", "insert", json!({"id": 1}), None);
    assert_eq!(messages(&transformer(""), ordinary).len(), 1);
    // A route naming one exactly routes it; a wildcard route does not.
    let status = record(
        "admin",
        "awsdms_status",
        "update",
        json!({"TASK_STATUS": "RUNNING"}),
        None,
    );
    let exact = "[[route]]\ntable = \"admin.awsdms_status\"\ntopic = \"dms-status\"\n";
    assert_eq!(
        &*messages(&transformer(exact), status.clone())[0].topic,
        "dms-status"
    );
    assert_eq!(
        transformer("[[route]]\ntable = \"admin.*\"\ntopic = \"admin\"\n")
            .transform(POS, &decode(status)),
        Ok(Transformed::Skipped(SkipReason::DmsTable))
    );
}

/// A hashed key column keys by the same token `data` carries, also when the column is
/// coerced first, so consumers can join the key with the row. (A cut key column is
/// refused: two values would share a key.)
#[test]
fn a_hashed_key_is_the_token_in_data() {
    let t = transformer(
        "[[route]]\ntable = \"public.users\"\ntopic = \"u\"\nkey = [\"id\", \"email\"]\nhash = [\"id\", \"email\"]\n[route.types]\nid = \"int\"\n",
    );
    let out = messages(
        &t,
        record(
            "public",
            "users",
            "insert",
            json!({"id": "007", "email": "abcdefg"}),
            None,
        ),
    );
    let v = value(&out[0]);
    let (id, email) = (
        HashKey::local().token(b"7"),
        HashKey::local().token(b"abcdefg"),
    );
    assert_eq!(v["data"], json!({"id": id, "email": email}));
    assert_eq!(v["key"], json!({"id": id, "email": email}));
    assert_eq!(
        out[0].key.as_deref(),
        Some(format!("{id}|{email}").as_bytes())
    );
}

/// With `IncludeTransactionDetails`, the transaction's fields reach the envelope and the
/// headers; without them, neither carries them (the transaction id stays in the envelope).
#[test]
fn transaction_details_are_carried() {
    let t = transformer("");
    let mut doc = record("public", "orders", "insert", json!({"id": 60}), None);
    let details = json!({"transaction-id": "0A001B00F4070000", "commit-timestamp": "2024-11-21T15:00:00Z",
        "stream-position": "00000003/1A000010.2.00000003/1A000010", "transaction-record-id": 2,
        "prev-transaction-id": 3000, "prev-transaction-record-id": 4});
    for (k, v) in details.as_object().expect("object") {
        doc["metadata"][k] = v.clone();
    }
    let out = messages(&t, doc);
    let source = &value(&out[0])["source"];
    assert_eq!(source["transaction_id"], "0A001B00F4070000");
    assert_eq!(source["transaction_record_id"], 2);
    assert_eq!(source["prev_transaction_id"], 3000);
    assert_eq!(source["prev_transaction_record_id"], 4);
    assert_eq!(
        source["stream_position"],
        "00000003/1A000010.2.00000003/1A000010"
    );
    assert_eq!(source["commit_timestamp"], "2024-11-21T15:00:00Z");
    let h = |name| out[0].header(name).map(<[u8]>::to_vec);
    assert_eq!(
        h(header::TRANSACTION_ID),
        Some(b"0A001B00F4070000".to_vec())
    );
    assert_eq!(h(header::TRANSACTION_RECORD_ID), Some(b"2".to_vec()));
    assert_eq!(h(header::PREV_TRANSACTION_ID), Some(b"3000".to_vec()));
    assert_eq!(
        h(header::COMMIT_TIMESTAMP),
        Some(b"2024-11-21T15:00:00Z".to_vec())
    );
    assert_eq!(
        h(header::STREAM_POSITION),
        Some(b"00000003/1A000010.2.00000003/1A000010".to_vec())
    );

    let plain = messages(
        &t,
        record("public", "orders", "insert", json!({"id": 1}), None),
    );
    let source = &value(&plain[0])["source"];
    assert!(source.get("transaction_record_id").is_none(), "{source}");
    assert!(source.get("stream_position").is_none(), "{source}");
    assert_eq!(
        plain[0].header(header::TRANSACTION_ID),
        None,
        "without the details, the id is in the envelope only"
    );
    assert_eq!(plain[0].header(header::STREAM_POSITION), None);
}

/// `IncludeNullAndEmpty=false` leaves null columns out: an `include`d column that is
/// absent is left out (`missing = "omit"`) or written as null (`missing = "null"`); a
/// column DMS sent as null is null either way.
#[test]
fn absent_is_not_null() {
    let routes = |missing: &str| {
        format!("[[route]]\ntable = \"public.users\"\ntopic = \"u\"\ninclude = [\"id\", \"name\"]\nmissing = \"{missing}\"\n")
    };
    let absent = record("public", "users", "insert", json!({"id": 1}), None);
    let null = record(
        "public",
        "users",
        "insert",
        json!({"id": 1, "name": null}),
        None,
    );
    let data = |missing: &str, doc: &Value| {
        value(&messages(&transformer(&routes(missing)), doc.clone())[0])["data"].clone()
    };
    assert_eq!(data("omit", &absent), json!({"id": 1}));
    assert_eq!(data("null", &absent), json!({"id": 1, "name": null}));
    assert_eq!(data("omit", &null), json!({"id": 1, "name": null}));
    assert_eq!(data("null", &null), json!({"id": 1, "name": null}));
}
