//! What an operator sees: EMF metrics valid against their schema, trace context carried
//! downstream, logs that name the invocation and never carry row values.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use cdc_relay::modes::lambda::emf::{
    emf, emf_tables, TableLabels, Timings, OTHER_TABLES, UNROUTED_TABLES,
};
use cdc_relay::modes::local::EmbeddedKafka;
use cdc_relay::pipeline::{TRACEPARENT, XRAY_TRACE_ID};
use cdc_relay::transform::header;
use lambda_runtime::LambdaEvent;
use serde_json::Value;

use crate::util;

/// The EMF record of a real batch is valid against the EMF JSON schema, and meets the
/// spec's rules a schema cannot express: every metric and dimension is a top-level
/// member, metric values are numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emf_record_is_valid() {
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    let relay = util::relay(&kafka, util::example_routes(), &[]);
    let outcome = relay
        .process(util::load_event("sample.json"), None)
        .await
        .expect("processed");
    let timings = Timings {
        batch_ms: 12.5,
        max_record_age_ms: Some(3_000.0),
    };
    let doc = emf(
        "cdc-relay",
        1_732_200_000_000,
        &[("FunctionName", "relay")],
        &outcome,
        &timings,
    );
    let schema: Value = serde_json::from_str(include_str!("emf-schema.json")).expect("schema");
    let validator = jsonschema::validator_for(&schema).expect("valid schema");
    let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}\n{doc}");

    let directive = &doc["_aws"]["CloudWatchMetrics"][0];
    for metric in directive["Metrics"].as_array().expect("metrics") {
        let name = metric["Name"].as_str().expect("name");
        assert!(doc[name].is_number(), "metric {name} has no numeric value");
    }
    for dimension in directive["Dimensions"][0]
        .as_array()
        .expect("dimension set")
    {
        let name = dimension.as_str().expect("dimension name");
        assert!(doc[name].is_string(), "dimension {name} has no value");
    }
    assert_eq!(doc["RecordsIn"], 5.0);
    assert_eq!(
        doc["RecordsProduced"], 5.0,
        "the DDL record becomes a schema-change event"
    );
    assert_eq!(
        doc["ControlRecords"], 0.0,
        "sample's DDL record becomes a schema-change event"
    );
    assert_eq!(doc["MaxRecordAge"], 3_000.0);
}

/// Records a route's filter skips and changes of DMS's own tables are counted under
/// their own reasons, in the outcome and in the EMF record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_and_dms_table_records_are_counted() {
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    let relay = util::relay(&kafka, util::example_routes(), &[]);
    let timings = Timings {
        batch_ms: 1.0,
        max_record_age_ms: None,
    };
    // filtered.json: 6 payments, of which 3 are neither paid over 100 nor deletes.
    // oracle-names.json: 2 employee changes and 2 changes of awsdms_* tables.
    for (event, filtered, dms_tables, produced) in [
        ("filtered.json", 3.0, 0.0, 3.0),
        ("oracle-names.json", 0.0, 2.0, 2.0),
    ] {
        let outcome = relay
            .process(util::load_event(event), None)
            .await
            .expect("processed");
        let doc = emf(
            "cdc-relay",
            0,
            &[("FunctionName", "relay")],
            &outcome,
            &timings,
        );
        assert_eq!(
            (
                &doc["RecordsFiltered"],
                &doc["DmsTableRecords"],
                &doc["RecordsProduced"],
                &doc["RecordsSkipped"]
            ),
            (
                &Value::from(filtered),
                &Value::from(dms_tables),
                &Value::from(produced),
                &Value::from(filtered + dms_tables)
            ),
            "{event}: {doc}"
        );
    }
}

/// A source record's `traceparent` and the invocation's X-Ray trace id travel onto
/// every message made from it; a record without one gets none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_context_is_carried_downstream() {
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    let relay = util::relay(&kafka, util::example_routes(), &[]);
    let mut context = util::context(60_000);
    context.xray_trace_id = Some(
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1".to_owned(),
    );
    relay
        .handle(LambdaEvent::new(util::load_event("insert.json"), context))
        .await
        .expect("success");
    let messages = util::consume(&kafka, &["orders.changes"]);
    assert_eq!(messages.len(), 2);
    for m in &messages {
        assert!(m
            .header(XRAY_TRACE_ID)
            .is_some_and(|x| x.starts_with("Root=1-5759e988")));
        let traced = m.header(header::SOURCE_OFFSET) == Some("100");
        assert_eq!(
            m.header(TRACEPARENT),
            traced.then_some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            "offset {:?}",
            m.header(header::SOURCE_OFFSET)
        );
    }
}

/// Log output captured by [`captured_logs`].
#[derive(Clone, Default)]
pub(crate) struct Captured(pub(crate) Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One global JSON subscriber for this test binary, writing into a buffer. (A scoped
/// subscriber misses events whose callsites other tests' threads cached as unwatched.)
pub(crate) fn captured_logs() -> Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            // Debug too: librdkafka's own debug output must not leak secrets either.
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global subscriber in the tests");
        captured
    })
    .clone()
}

/// Log lines of an invocation carry its request id and cold-start flag (cold once, then
/// warm); a failing record is logged with topic, partition, offset and table, never
/// with the row's values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_name_the_invocation_and_never_the_values() {
    let captured = captured_logs();
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    let relay = util::relay(
        &kafka,
        util::example_routes(),
        &[("RELAY_PARTIAL_BATCH", "true")],
    );
    let secret = "very-secret-customer@example.com";
    let poison = util::EventBuilder::new()
        .data(
            "dms.public.orders",
            0,
            7,
            "insert",
            "orders",
            serde_json::json!({"id": 1, "email": secret}),
        )
        .build();
    let context = || {
        let mut c = util::context(60_000);
        c.request_id = "logs-test-request".to_owned();
        c
    };
    relay
        .handle(LambdaEvent::new(poison, context()))
        .await
        .expect("answer");
    relay
        .handle(LambdaEvent::new(util::load_event("insert.json"), context()))
        .await
        .expect("answer");

    let text =
        String::from_utf8(captured.0.lock().expect("log buffer").clone()).expect("utf-8 logs");
    assert!(!text.contains(secret), "a row value reached the logs");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON log line"))
        .filter(|l| l["span"]["request_id"] == "logs-test-request")
        .collect();
    let finished: Vec<&Value> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "batch finished")
        .collect();
    assert_eq!(finished.len(), 2, "{text}");
    assert_eq!(finished[0]["span"]["cold_start"], true);
    assert_eq!(finished[1]["span"]["cold_start"], false);
    let failure = lines
        .iter()
        .find(|l| l["fields"]["message"] == "record failed")
        .expect("the poison record is logged");
    assert_eq!(failure["fields"]["offset"], 7);
    assert_eq!(failure["fields"]["table"], "public.orders");
}

/// `RELAY_METRICS_PER_TABLE`: per-table counts add up to the batch's, the `Table`
/// dimension stays bounded (unrouted, undecoded and past-the-limit tables are folded),
/// and every per-table EMF record is valid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_table_metrics_are_bounded_and_valid() {
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    let relay = util::relay(
        &kafka,
        util::example_routes(),
        &[
            ("RELAY_METRICS", "true"),
            ("RELAY_METRICS_PER_TABLE", "true"),
        ],
    );
    let topic = "dms.cdc";
    let event = util::EventBuilder::new()
        .data(
            topic,
            0,
            1,
            "insert",
            "orders",
            serde_json::json!({"id": 1, "user_id": 7, "amount": "9.50"}),
        )
        .data(
            topic,
            0,
            2,
            "insert",
            "users",
            serde_json::json!({"id": 3, "name": "Ann", "email": "a@example.com"}),
        )
        .data(
            topic,
            0,
            3,
            "insert",
            "refunds",
            serde_json::json!({"id": 5}),
        )
        // No user_id: the orders route cannot key it, so it is dead-lettered.
        .data(
            topic,
            0,
            4,
            "insert",
            "orders",
            serde_json::json!({"id": 2, "amount": "1"}),
        )
        .raw(topic, 0, 5, None, Some("not base64!"))
        .build();
    let outcome = relay.process(event, None).await.expect("processed");
    assert_eq!(
        (outcome.records, outcome.produced, outcome.dead_lettered),
        (5, 3, 2)
    );
    let count = |name: &str| {
        outcome
            .tables
            .iter()
            .find(|t| &*t.table == name)
            .unwrap_or_else(|| panic!("{name} not counted: {:?}", outcome.tables))
    };
    let orders = count("public.orders");
    assert_eq!(
        (orders.records, orders.produced, orders.dead_lettered),
        (2, 1, 1)
    );
    assert_eq!(count("public.users").produced, 1);
    assert_eq!(count("public.refunds").produced, 1);
    assert_eq!(count(cdc_relay::pipeline::UNDECODED_TABLE).dead_lettered, 1);
    let total: usize = outcome.tables.iter().map(|t| t.records).sum();
    assert_eq!(total, outcome.records);

    // At most one routed table keeps its name; the rest fold.
    let labels = TableLabels::new(1);
    let routes = util::example_routes();
    let folded = labels.fold(&outcome.tables, |t| routes.is_routed(t));
    let names: Vec<&str> = folded.iter().map(|t| &*t.table).collect();
    assert_eq!(
        names,
        [
            "public.orders",
            OTHER_TABLES,
            UNROUTED_TABLES,
            cdc_relay::pipeline::UNDECODED_TABLE
        ]
    );
    assert_eq!(
        folded.iter().map(|t| t.records).sum::<usize>(),
        outcome.records
    );
    // The limit holds across invocations: a later batch cannot add a name.
    let again = labels.fold(&outcome.tables, |t| routes.is_routed(t));
    assert_eq!(again.len(), folded.len());

    let schema: Value = serde_json::from_str(include_str!("emf-schema.json")).expect("schema");
    let validator = jsonschema::validator_for(&schema).expect("valid schema");
    let docs = emf_tables(
        "cdc-relay",
        1_732_200_000_000,
        &[("FunctionName", "relay")],
        &folded,
    );
    assert_eq!(docs.len(), folded.len());
    for (doc, counts) in docs.iter().zip(&folded) {
        let errors: Vec<String> = validator.iter_errors(doc).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:?}\n{doc}");
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0],
            serde_json::json!(["FunctionName", "Table"])
        );
        assert_eq!(doc["Table"], *counts.table);
        assert_eq!(doc["RecordsIn"], counts.records as f64);
    }

    // Off by default: no per-table work.
    let plain = util::relay(&kafka, util::example_routes(), &[("RELAY_METRICS", "true")]);
    let outcome = plain
        .process(util::load_event("sample.json"), None)
        .await
        .expect("processed");
    assert!(outcome.tables.is_empty());
}

/// `RELAY_LOG_VALUES=true` adds the record's value to its problem log line, redacted
/// as its route redacts events: the masked email does not show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_values_opt_in_shows_the_value() {
    let captured = captured_logs();
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    let relay = util::relay(
        &kafka,
        util::example_routes(),
        &[
            ("RELAY_PARTIAL_BATCH", "true"),
            ("RELAY_LOG_VALUES", "true"),
        ],
    );
    let marker = "opted-in-value-4e1b";
    let poison = util::EventBuilder::new()
        .data(
            "dms.public.orders",
            0,
            41,
            "insert",
            "orders",
            serde_json::json!({"id": 1, "status": marker, "email": "masked-5d2c@example.com"}),
        )
        .build();
    let mut context = util::context(60_000);
    context.request_id = "log-values-request".to_owned();
    relay
        .handle(LambdaEvent::new(poison, context))
        .await
        .expect("answer");
    let text =
        String::from_utf8(captured.0.lock().expect("log buffer").clone()).expect("utf-8 logs");
    let failure = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON log line"))
        .find(|l| {
            l["span"]["request_id"] == "log-values-request"
                && l["fields"]["message"] == "record failed"
        })
        .expect("the poison record is logged");
    assert_eq!(failure["fields"]["offset"], 41);
    let value = failure["fields"]["value"].as_str().expect("value field");
    assert!(value.contains(marker), "{value}");
    assert!(
        !value.contains("masked-5d2c@example.com") && value.contains(r#""email":"***""#),
        "{value}"
    );
}
