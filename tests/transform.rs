//! The routes language through the pipeline: golden output for a second routes file, the
//! published schemas against every golden event, and `check-routes --against`.
//! Schema drift and the transform's properties over generated records and routes are
//! the core crate's tests (`crates/core/tests/routes.rs`).

use std::collections::BTreeMap;

use cdc_relay::dms::Decoder;
use cdc_relay::modes::local::{compare_runs, dry_run};
use cdc_relay::pipeline::{Pipeline, PipelineOptions};
use cdc_relay::source::MskEvent;
use cdc_relay::transform::schema::schemas;
use cdc_relay::transform::{HashKey, Routes, TopicTemplate, Transformer};
use serde_json::{json, Value};

use crate::util;

fn pipeline(routes: Routes) -> Pipeline {
    Pipeline::new(
        Decoder::default(),
        Transformer::new(routes),
        PipelineOptions {
            concurrency: 1,
            chunk_size: 64,
            ..PipelineOptions::default()
        },
    )
}

/// Every fixture through `tests/routes/flat.toml` (flat envelope, coercions,
/// changed_only, missing = "null", tombstones, schema-change events) and through
/// `tests/routes/debezium.toml` (the Debezium envelope with Kafka Connect schemas) gives
/// exactly the checked-in output.
#[test]
fn flat_routes_golden_output() {
    routes_golden_output("flat");
}

#[test]
fn debezium_routes_golden_output() {
    routes_golden_output("debezium");
}

#[test]
fn cloudevents_routes_golden_output() {
    routes_golden_output("cloudevents");
}

#[test]
fn outbox_routes_golden_output() {
    routes_golden_output("outbox");
}

fn routes_golden_output(name: &str) {
    let routes = Routes::load(&util::root().join(format!("tests/routes/{name}.toml")))
        .expect("valid routes");
    let dir = name;
    let pipeline = pipeline(routes);
    let mut names: Vec<String> = std::fs::read_dir(util::root().join("events"))
        .expect("events dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    for name in names {
        let MskEvent { origin, records } = util::load_event(&name);
        let mut text = String::new();
        for line in dry_run(&pipeline, &origin, &records) {
            text.push_str(&line.to_string());
            text.push('\n');
        }
        util::assert_golden(&format!("{dir}/{}", name.replace(".json", ".jsonl")), &text);
    }
}

/// The values and keys of the relay and flat envelopes, byte for byte: the other
/// golden files compare parsed JSON, which would not see a change of field order,
/// spacing or escape spelling. `tests/inputs/escapes.json` puts quotes, backslashes,
/// control characters, U+2028 and non-ASCII text in schema, table and column names and
/// values. The hand-written writer gave the same bytes as the serde-derived one it
/// replaced on every fixture, this input and 3,000 generated records.
#[test]
fn envelopes_are_written_byte_for_byte() {
    let mut text = Vec::new();
    for routes_file in ["routes.toml", "tests/routes/flat.toml"] {
        let mut routes = Routes::load(&util::root().join(routes_file)).expect("valid routes");
        routes
            .set_hash_key(Some(HashKey::local()))
            .expect("a hash key");
        let pipeline = pipeline(routes);
        for name in [
            "events/update-before-image.json",
            "events/oracle-names.json",
            "events/types-and-drift.json",
            "tests/inputs/escapes.json",
        ] {
            let input = std::fs::read_to_string(util::root().join(name)).expect("input");
            let MskEvent { origin, records } = util::parse_event(&input);
            let cluster = origin.cluster();
            for record in &records {
                let Ok(cdc_relay::transform::Transformed::Messages(messages)) =
                    pipeline.process(record, &cluster)
                else {
                    continue;
                };
                for message in messages {
                    let line =
                        format!("{routes_file} {name} {} {}\n", record.offset, message.topic);
                    text.extend_from_slice(line.as_bytes());
                    for part in [&message.key, &message.value] {
                        text.extend_from_slice(part.as_deref().unwrap_or(b"(none)"));
                        text.push(b'\n');
                    }
                }
            }
        }
    }
    let text = String::from_utf8(text).expect("the envelopes are UTF-8");
    util::assert_golden("envelopes.raw", &text);
}

/// Every key and value of the Debezium golden output holds exactly what its embedded
/// Kafka Connect schema declares: each field present, of its type (an int64 a number that
/// fits i64, bytes base64), null only where optional. Kafka Connect's JsonConverter does
/// not check this itself: it reads a string in an int64 field as 0 and a u64 as -1.
#[test]
fn debezium_payloads_hold_their_connect_schemas() {
    let mut checked = 0;
    for (file, message) in golden_messages("tests/golden/debezium") {
        let topic = message["topic"].as_str().expect("topic");
        if topic.ends_with("schema-changes") {
            continue; // the relay's schema-change events keep their own shape
        }
        let key: Value =
            serde_json::from_str(message["key"].as_str().expect("a key")).expect("a JSON key");
        holds(
            &key["schema"],
            &key["payload"],
            &format!("{file}: {topic}: key"),
        );
        let value = &message["value"];
        if !value.is_null() {
            holds(
                &value["schema"],
                &value["payload"],
                &format!("{file}: {topic}"),
            );
            checked += 1;
        }
    }
    assert!(checked > 30, "only {checked} Debezium events checked");
}

/// Asserts `value` is what the Connect `schema` declares.
fn holds(schema: &Value, value: &Value, at: &str) {
    if value.is_null() {
        assert_eq!(schema["optional"], true, "{at}: null in a required field");
        return;
    }
    let ok = match schema["type"].as_str() {
        Some("struct") => {
            let object = value.as_object().expect("a struct is an object");
            let fields = schema["fields"].as_array().expect("a struct has fields");
            assert_eq!(object.len(), fields.len(), "{at}: {value} against {schema}");
            for field in fields {
                let name = field["field"].as_str().expect("a field name");
                let inner = object
                    .get(name)
                    .unwrap_or_else(|| panic!("{at}: field {name} missing from {value}"));
                holds(field, inner, &format!("{at}.{name}"));
            }
            true
        }
        Some("int64") => value.is_i64(),
        Some("double") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        Some("string") => value.is_string(),
        Some("bytes") => value.as_str().is_some_and(|text| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .is_ok()
        }),
        other => panic!("{at}: a Connect type the relay does not write: {other:?}"),
    };
    assert!(ok, "{at}: {value} is not a {}", schema["type"]);
}

/// The messages of a golden file: read-back lines (`tests/golden/*.jsonl`) or dry-run
/// lines (`tests/golden/flat/*.jsonl`, one record each).
fn golden_messages(dir: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(util::root().join(dir))
        .expect("golden dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    for file in files {
        let name = file.display().to_string();
        for line in std::fs::read_to_string(&file).expect("golden").lines() {
            let line: Value = serde_json::from_str(line).expect("golden line");
            let messages = match line["outcome"]["produces"].as_array() {
                Some(produced) => produced.clone(),
                None if line.get("outcome").is_some() => Vec::new(),
                None => vec![line],
            };
            out.extend(messages.into_iter().map(|m| (name.clone(), m)));
        }
    }
    out
}

/// The schema `cdc-relay schema` publishes for the topic a message went to.
fn schema_for<'s>(schemas: &'s BTreeMap<String, Value>, topic: &str) -> &'s Value {
    schemas
        .iter()
        .find(|(template, _)| {
            TopicTemplate::parse(template)
                .map(|t| t.matches(topic))
                .unwrap_or(false)
        })
        .map(|(_, schema)| schema)
        .unwrap_or_else(|| panic!("no schema for topic {topic}"))
}

/// Every golden event validates against the JSON Schema generated for its routes
/// (`routes.toml` for `tests/golden/`, `tests/routes/flat.toml` for `tests/golden/flat/`),
/// and the schemas are not vacuous: an undeclared operation, a column the route leaves
/// out, and a hashed column that is not a pseudonym are each rejected.
#[test]
fn golden_events_match_the_published_schemas() {
    let cases = [
        ("tests/golden", util::example_routes()),
        (
            "tests/golden/flat",
            Routes::load(&util::root().join("tests/routes/flat.toml")).expect("valid routes"),
        ),
        (
            "tests/golden/debezium",
            Routes::load(&util::root().join("tests/routes/debezium.toml")).expect("valid routes"),
        ),
        (
            "tests/golden/outbox",
            Routes::load(&util::root().join("tests/routes/outbox.toml")).expect("valid routes"),
        ),
        (
            "tests/golden/cloudevents",
            Routes::load(&util::root().join("tests/routes/cloudevents.toml"))
                .expect("valid routes"),
        ),
    ];
    let mut checked = 0;
    for (dir, routes) in cases {
        let schemas = schemas(&routes);
        for (file, message) in golden_messages(dir) {
            let value = &message["value"];
            if value.is_null() {
                continue; // a tombstone: no event
            }
            let topic = message["topic"].as_str().expect("topic");
            let schema = schema_for(&schemas, topic);
            let validator = jsonschema::validator_for(schema).expect("a valid JSON Schema");
            let problems: Vec<String> = validator
                .iter_errors(value)
                .map(|e| format!("{} at {}", e, e.instance_path()))
                .collect();
            assert!(
                problems.is_empty(),
                "{file}: {topic}: {value}\n{}",
                problems.join("\n")
            );
            checked += 1;
        }
    }
    assert!(checked > 50, "only {checked} golden events checked");

    let schemas = schemas(&util::example_routes());
    let rejects = |topic: &str, value: Value| {
        let validator = jsonschema::validator_for(schema_for(&schemas, topic)).expect("schema");
        assert!(!validator.is_valid(&value), "{topic} accepts {value}");
    };
    let users = golden_messages("tests/golden")
        .into_iter()
        .map(|(_, m)| m)
        .find(|m| m["topic"] == "users.changes")
        .expect("a users event");
    let mut upsert = users["value"].clone();
    upsert["op"] = json!("upsert");
    rejects("users.changes", upsert);
    let mut leaked = users["value"].clone();
    leaked["data"]["password_hash"] = json!("x1");
    rejects("users.changes", leaked);
    let mut clear = users["value"].clone();
    clear["data"]["email"] = json!("kim@example.com");
    rejects("users.changes", clear);
}

/// `check-routes NEW EVENT --against OLD`: a routes change that drops a fan-out topic and
/// hashes a column instead of masking it shows, per record, the removed message and the
/// changed fields; records it does not touch show no change.
#[test]
fn a_routes_change_is_shown_record_by_record() {
    let text = std::fs::read_to_string(util::root().join("routes.toml")).expect("routes");
    let changed = text
        .replace("mask = [\"email\"]", "hash = [\"email\"]")
        .replace(
            "topics = [\"orders.changes\", \"orders.cache-invalidation\"]",
            "topics = [\"orders.changes\"]",
        );
    assert_ne!(
        changed, text,
        "the example routes changed shape: update this test"
    );
    let mut new_routes = Routes::parse(&changed, "new").expect("valid");
    new_routes
        .set_hash_key(Some(HashKey::local()))
        .expect("a key");
    let (old, new) = (pipeline(util::example_routes()), pipeline(new_routes));
    let MskEvent { origin, records } = util::load_event("sample.json");
    let report = compare_runs(
        &dry_run(&old, &origin, &records),
        &dry_run(&new, &origin, &records),
    );
    assert_eq!(report.lines.len(), records.len());
    // Insert, update and delete of an order lose their cache-invalidation message; the
    // insert's and update's email becomes a pseudonym; the DDL and users records are as before.
    assert_eq!(
        (
            report.changed_records,
            report.added,
            report.removed,
            report.changed
        ),
        (3, 0, 3, 2)
    );
    let insert = &report.lines[0];
    assert_eq!(insert["removed"][0]["topic"], "orders.cache-invalidation");
    let fields = &insert["changed"][0]["fields"];
    assert_eq!(fields.as_array().map(Vec::len), Some(1), "{insert}");
    assert_eq!(fields[0]["path"], "value.data.email");
    assert_eq!(fields[0]["before"], "***");
    assert_eq!(
        fields[0]["after"],
        HashKey::local().token(b"kim@example.com")
    );
    assert_eq!(report.lines[3]["change"], "none");
    assert_eq!(report.lines[4]["change"], "none");
}

/// The published schemas hold where the routes' options meet: an `ignore_case` route
/// (names arrive upper-case, in `data` and in `key`) with `include`, `missing = "null"`,
/// `hash` and a before-image holding only the key, in both envelopes.
#[test]
fn schemas_hold_for_folded_names_and_partial_before_images() {
    let route = "[[route]]\ntable = \"hr.employees\"\nignore_case = true\ntopic = \"hr\"\nkey = [\"employee_id\"]\ninclude = [\"employee_id\", \"email\", \"salary\", \"manager_id\"]\nmissing = \"null\"\nhash = [\"email\"]\n[route.types]\nsalary = \"decimal\"\n";
    let insert = r#"{"data":{"EMPLOYEE_ID":101,"EMAIL":"SKING","SALARY":24000,"NOTES":"x"},"metadata":{"record-type":"data","operation":"insert","schema-name":"HR","table-name":"EMPLOYEES"}}"#;
    let update = r#"{"data":{"EMPLOYEE_ID":101,"EMAIL":"SKING","SALARY":25000},"before-image":{"EMPLOYEE_ID":101},"metadata":{"record-type":"data","operation":"update","schema-name":"HR","table-name":"EMPLOYEES"}}"#;
    for envelope in ["relay", "flat"] {
        let mut routes = Routes::parse(
            &format!("[defaults]\nenvelope = \"{envelope}\"\n{route}"),
            "t",
        )
        .expect("valid");
        routes.set_hash_key(Some(HashKey::local())).expect("a key");
        let schema = schemas(&routes)["hr"].clone();
        let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
        let transformer = Transformer::new(routes);
        for doc in [insert, update] {
            let event = Decoder::default().decode(doc.as_bytes()).expect("valid");
            let position = cdc_relay::source::SourcePosition {
                cluster: "",
                timestamp_ms: 0,
                topic: "dms.hr",
                partition: 0,
                offset: 1,
                kafka_key: None,
            };
            let messages = match transformer.transform(position, &event).expect("transforms") {
                cdc_relay::transform::Transformed::Messages(m) => m,
                other => panic!("{other:?}"),
            };
            let value: Value =
                serde_json::from_slice(messages[0].value.as_deref().expect("value")).expect("json");
            let problems: Vec<String> = validator
                .iter_errors(&value)
                .map(|e| format!("{} at {}", e, e.instance_path()))
                .collect();
            assert!(
                problems.is_empty(),
                "{envelope}: {value}\n{}",
                problems.join("\n")
            );
            let mut leaked = value.clone();
            let row = if envelope == "relay" {
                &mut leaked["data"]
            } else {
                &mut leaked
            };
            row["NOTES"] = json!("x");
            assert!(
                !validator.is_valid(&leaked),
                "{envelope}: a column outside include passes"
            );
        }
    }
}

/// `cdc-relay types`: the table definition of the DDL fixture's control record becomes
/// `[route.types]` that loads under its route and types the columns DMS calls integers;
/// given the example routes, only what their route does not type yet; an event without a
/// table definition is an error that says where DMS sends one.
#[test]
fn types_command_turns_a_table_def_into_route_types() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_cdc-relay"))
            .args(args)
            .current_dir(util::root())
            .output()
            .expect("the binary runs")
    };
    let bare = run(&["types", "events/ddl-control.json"]);
    assert!(bare.status.success(), "{bare:?}");
    let text = String::from_utf8(bare.stdout).expect("UTF-8");
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
    assert_eq!(types, [("id", "int"), ("user_id", "int")], "{text}");

    // The example route types user_id already: only id is added, under its table.
    let given = run(&[
        "types",
        "events/ddl-control.json",
        "--routes",
        "routes.toml",
    ]);
    assert!(given.status.success(), "{given:?}");
    let text = String::from_utf8(given.stdout).expect("UTF-8");
    assert!(text.contains("\nid = \"int\""), "{text}");
    assert!(!text.contains("user_id ="), "{text}");
    assert!(!text.contains("[route.types]\n"), "{text}");

    let none = run(&["types", "events/insert.json"]);
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("IncludeControlDetails"));
}

/// `check-routes` shows a topic name made legal beside the name as DMS's schema and
/// table wrote it (`topic_as_written`), and nothing beside a name Kafka accepts as it
/// came.
#[test]
fn check_routes_shows_a_topic_name_made_legal() {
    let routes = Routes::parse(
        "[[route]]\ntable = \"public.*\"\ntopic = \"cdc.{schema}.{table}\"\nkey = [\"id\"]\n",
        "t",
    )
    .expect("valid");
    let MskEvent { origin, records } = util::EventBuilder::new()
        .data("src", 0, 1, "insert", "order#lines", json!({"id": 1}))
        .data("src", 0, 2, "insert", "orders", json!({"id": 2}))
        .build();
    let lines = dry_run(&pipeline(routes), &origin, &records);
    let made_legal = &lines[0]["outcome"]["produces"][0];
    assert_eq!(
        made_legal["topic"], "cdc.public.order_lines",
        "{made_legal}"
    );
    assert_eq!(
        made_legal["topic_as_written"], "cdc.public.order#lines",
        "{made_legal}"
    );
    let as_written = &lines[1]["outcome"]["produces"][0];
    assert_eq!(as_written["topic"], "cdc.public.orders", "{as_written}");
    assert!(as_written.get("topic_as_written").is_none(), "{as_written}");
}
