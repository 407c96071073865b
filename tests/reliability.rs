//! Nothing lost, nothing stuck: every input record ends produced, dead-lettered or
//! skipped (done), or reported to Lambda; a record reported done was acknowledged.

use cdc_relay::source::MskEvent;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use cdc_relay::generate::{generate, GenOptions};
use cdc_relay::modes::lambda::{BatchResponse, Function};
use cdc_relay::modes::local::{ConsumedMessage, EmbeddedKafka};
use cdc_relay::pipeline::BatchOutcome;
use cdc_relay::transform::{header, Routes, SkipReason};
use lambda_runtime::LambdaEvent;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use serde_json::{json, Value};

use crate::util;

const ROUTES: &str = r#"
[defaults]
topic = "cdc.{schema}.{table}"
unrouted = "dlq"
dlq_topic = "dlq"

[[route]]
table = "public.orders"
topic = "orders"
key = ["id"]
[route.types]
amount = "decimal"

[[route]]
table = "public.lenient"
topic = "lenient"
key = ["id"]
on_poison = "skip"

[[route]]
table = "public.filtered"
topic = "filtered"
filter = { data = { status = ["PAID"] } }
"#;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn doc(op: &str, table: &str, data: Value) -> Value {
    json!({"data": data, "metadata": {"timestamp": "2024-11-21T00:00:00Z", "record-type": "data",
        "operation": op, "partition-key-type": "schema-table", "schema-name": "public",
        "table-name": table, "transaction-id": 7}})
}

fn value_of(v: &Value) -> Option<String> {
    Some(b64(v.to_string().as_bytes()))
}

/// What the documentation says happens to a record.
#[derive(Debug, Clone, PartialEq)]
enum Expect {
    /// Produced as this many messages.
    Produced(usize),
    /// Dead-lettered after failing in this stage.
    DeadLettered(&'static str),
    /// Skipped, counted under this reason.
    Skipped(SkipReason),
    /// Reported to Lambda as the partition's first offset not done.
    Reported,
}

struct Case {
    name: &'static str,
    key: Option<String>,
    value: Option<String>,
    expect: Expect,
}

fn case(name: &'static str, value: Option<String>, expect: Expect) -> Case {
    Case {
        name,
        key: Some(b64(b"public.orders")),
        value,
        expect,
    }
}

fn cases() -> Vec<Case> {
    let good = || doc("insert", "orders", json!({"id": 1, "amount": "9.90"}));
    // Values are kept as raw text and never walked recursively: any depth is relayed.
    let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_doc = format!(
        r#"{{"data":{{"id":1,"nested":{deep}}},"metadata":{{"record-type":"data","operation":"insert","schema-name":"public","table-name":"orders"}}}}"#
    );
    let with_meta = |meta: Value| {
        Some(b64(json!({"data": {"id": 1}, "metadata": meta})
            .to_string()
            .as_bytes()))
    };
    let meta = |patch: Value| {
        let mut m = json!({"record-type": "data", "operation": "insert", "schema-name": "public", "table-name": "orders"});
        if let (Some(m), Some(p)) = (m.as_object_mut(), patch.as_object()) {
            for (k, v) in p {
                if v.is_null() {
                    m.remove(k);
                } else {
                    m.insert(k.clone(), v.clone());
                }
            }
        }
        m
    };
    use Expect::*;
    vec![
        case("valid insert", value_of(&good()), Produced(1)),
        case("pretty-printed value", Some(b64(serde_json::to_string_pretty(&good()).unwrap_or_default().as_bytes())), Produced(1)),
        case("unknown fields everywhere", value_of(&json!({"data": {"id": 1}, "x": 1, "metadata": meta(json!({"new-field": [1]}))})), Produced(1)),
        case("transaction-id as string", with_meta(meta(json!({"transaction-id": "0A.1F"}))), Produced(1)),
        case("duplicate column names (last wins)", Some(b64(br#"{"data":{"id":1,"id":2},"metadata":{"record-type":"data","operation":"insert","schema-name":"public","table-name":"orders"}}"#)), Produced(1)),
        case("huge value (800 kB column)", value_of(&doc("insert", "orders", json!({"id": 1, "blob": "x".repeat(800_000)}))), Produced(1)),
        case("invalid base64 value", Some("%%% not base64".to_owned()), DeadLettered("source")),
        Case { name: "invalid base64 key", key: Some("***".to_owned()), value: value_of(&good()), expect: DeadLettered("source") },
        case("value is not JSON", Some(b64(b"hello")), DeadLettered("dms")),
        case("value is a JSON array", Some(b64(b"[1,2]")), DeadLettered("dms")),
        case("value is a JSON number", Some(b64(b"42")), DeadLettered("dms")),
        case("empty value", Some(String::new()), DeadLettered("dms")),
        case("invalid UTF-8", Some(b64(&[0x7b, 0xff, 0xfe, 0x7d])), DeadLettered("dms")),
        case("missing metadata", value_of(&json!({"data": {"id": 1}})), DeadLettered("dms")),
        case("metadata without table-name", with_meta(meta(json!({"table-name": null}))), DeadLettered("dms")),
        case("metadata without record-type", with_meta(meta(json!({"record-type": null}))), DeadLettered("dms")),
        case("schema-name is a number", with_meta(meta(json!({"schema-name": 5}))), DeadLettered("dms")),
        case("transaction-id is an object", with_meta(meta(json!({"transaction-id": {"a": 1}}))), DeadLettered("dms")),
        case("unknown operation", with_meta(meta(json!({"operation": "merge"}))), DeadLettered("dms")),
        case("unknown record-type", with_meta(meta(json!({"record-type": "heartbeat"}))), DeadLettered("dms")),
        case("data is null", value_of(&json!({"data": null, "metadata": meta(json!({}))})), DeadLettered("dms")),
        case("data is an array", value_of(&json!({"data": [1], "metadata": meta(json!({}))})), DeadLettered("dms")),
        case("duplicate top-level data", Some(b64(br#"{"data":{"id":1},"data":{"id":2},"metadata":{"record-type":"data","operation":"insert","schema-name":"public","table-name":"orders"}}"#)), DeadLettered("dms")),
        case("a lone surrogate escape in a column", Some(b64(br#"{"data":{"id":1,"note":"\ud800"},"metadata":{"record-type":"data","operation":"insert","schema-name":"public","table-name":"orders"}}"#)), DeadLettered("dms")),
        case("deep JSON nesting (100,000 levels)", Some(b64(deep_doc.as_bytes())), Produced(1)),
        case("missing key column", value_of(&doc("insert", "orders", json!({"amount": "1.00"}))), DeadLettered("transform")),
        case("value does not coerce", value_of(&doc("insert", "orders", json!({"id": 1, "amount": "lots"}))), DeadLettered("transform")),
        case("unrouted table (unrouted = dlq)", value_of(&doc("insert", "nowhere", json!({"id": 1}))), DeadLettered("transform")),
        case("poison on an on_poison = skip route", value_of(&doc("insert", "lenient", json!({"no_id": 1}))), Skipped(SkipReason::Poison)),
        case("a change the route's filter does not match", value_of(&doc("insert", "filtered", json!({"status": "NEW"}))), Skipped(SkipReason::Filter)),
        case("a change of DMS's own table (under unrouted = dlq)", value_of(&doc("insert", "awsdms_apply_exceptions", json!({"TASK_NAME": "t"}))), Skipped(SkipReason::DmsTable)),
        case("null value (source tombstone)", None, Skipped(SkipReason::SourceTombstone)),
        case("control record", value_of(&json!({"control": {}, "metadata": meta(json!({"record-type": "control", "operation": "drop-table"}))})), Skipped(SkipReason::Control)),
        // Larger than message.max.bytes: poison; its dead letter is cut to fit.
        case("message larger than the broker accepts", value_of(&doc("insert", "orders", json!({"id": 1, "blob": "x".repeat(1_200_000)}))), DeadLettered("sink")),
    ]
}

/// Each malformed or unusual record gets its documented outcome, none panics, and the
/// valid record after it in the same partition is never blocked by a dead-lettered or
/// skipped one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_get_their_documented_outcome() {
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    let relay = util::relay(
        &kafka,
        Routes::parse(ROUTES, "test").expect("routes"),
        &[("RELAY_PARTIAL_BATCH", "true")],
    );
    let cases = cases();
    assert!(cases.len() >= 25);
    let follower = value_of(&doc("insert", "orders", json!({"id": 2})));
    for (i, case) in cases.iter().enumerate() {
        let topic = format!("case-{i}");
        let event: MskEvent = serde_json::from_value(json!({
            "eventSource": "aws:kafka",
            "eventSourceArn": "arn:aws:kafka:eu-west-1:111122223333:cluster/cdc/abcd-1234-5",
            "records": {format!("{topic}-0"): [
                {"topic": topic, "partition": 0, "offset": 10, "timestamp": 1, "key": case.key, "value": case.value, "headers": [{"h": [104, 105]}]},
                {"topic": topic, "partition": 0, "offset": 11, "timestamp": 1, "key": null, "value": follower, "headers": []},
            ]}
        }))
        .expect("test event");
        let response = util::invoke(&relay, event)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let reported: Vec<i64> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.offset)
            .collect();
        match case.expect {
            Expect::Reported => assert_eq!(reported, vec![10], "{}", case.name),
            _ => assert!(reported.is_empty(), "{}: {response:?}", case.name),
        }
    }
    let consumed = util::consume(&kafka, &["orders", "dlq"]);
    let of = |topic: &str, source: &str, offset: &str| -> Vec<&ConsumedMessage> {
        consumed
            .iter()
            .filter(|m| {
                m.topic == topic
                    && m.header(header::SOURCE_TOPIC) == Some(source)
                    && m.header(header::SOURCE_OFFSET) == Some(offset)
            })
            .collect()
    };
    for (i, case) in cases.iter().enumerate() {
        let source = format!("case-{i}");
        let produced = of("orders", &source, "10");
        let dead = of("dlq", &source, "10");
        match &case.expect {
            Expect::Produced(n) => {
                assert_eq!((produced.len(), dead.len()), (*n, 0), "{}", case.name);
                if case.name.starts_with("deep JSON nesting") {
                    // Relayed byte for byte: the 100,000-level value is in the event as sent.
                    let nested = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
                    let value = produced[0].value.as_deref().unwrap_or_default();
                    assert!(
                        value.windows(nested.len()).any(|w| w == nested.as_bytes()),
                        "the nested value was altered"
                    );
                }
            }
            Expect::DeadLettered(stage) => {
                assert_eq!((produced.len(), dead.len()), (0, 1), "{}", case.name);
                let letter = dead[0];
                assert_eq!(
                    letter.header(header::ERROR_STAGE),
                    Some(*stage),
                    "{}",
                    case.name
                );
                assert!(
                    letter.header(header::ERROR).is_some_and(|e| !e.is_empty()),
                    "{}",
                    case.name
                );
                assert_eq!(
                    letter.header("h"),
                    Some("hi"),
                    "{}: original headers kept",
                    case.name
                );
                assert!(
                    letter.header(header::EVENT_SOURCE_ARN).is_some(),
                    "{}",
                    case.name
                );
                // The original value is kept byte for byte (decoded when it decodes; these
                // routes remove and mask nothing), cut to fit when too large.
                let original = case.value.as_deref().map(|v| {
                    base64::engine::general_purpose::STANDARD
                        .decode(v)
                        .unwrap_or_else(|_| v.as_bytes().to_vec())
                });
                assert!(letter.header(header::EVENT_ID).is_some(), "{}", case.name);
                if letter.header(header::TRUNCATED) == Some("true") {
                    let original = original.unwrap_or_default();
                    let cut = letter.value.clone().unwrap_or_default();
                    assert!(
                        cut.len() < 1_000_000 && original.starts_with(&cut),
                        "{}",
                        case.name
                    );
                    assert_eq!(
                        letter.header(header::ORIGINAL_SIZE),
                        Some(original.len().to_string().as_str()),
                        "{}",
                        case.name
                    );
                } else {
                    assert_eq!(letter.value, original, "{}", case.name);
                }
            }
            Expect::Skipped(_) | Expect::Reported => {
                assert_eq!((produced.len(), dead.len()), (0, 0), "{}", case.name)
            }
        }
        if case.expect != Expect::Reported {
            assert_eq!(
                of("orders", &source, "11").len(),
                1,
                "{}: the next record was blocked",
                case.name
            );
        }
    }
}

/// Batch-level inputs: an empty batch, 10,000 records, a 6 MB event, and events that
/// are not MSK events at all (Lambda's runtime answers those with an error).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_level_inputs() {
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    let relay = util::relay(
        &kafka,
        Routes::parse("[defaults]\ntopic = \"all\"\n", "t").expect("routes"),
        &[],
    );
    let empty: MskEvent =
        serde_json::from_value(json!({"eventSource": "aws:kafka", "records": {}})).expect("event");
    assert!(util::invoke(&relay, empty)
        .await
        .expect("empty batch")
        .batch_item_failures
        .is_empty());

    let ten_thousand = generate(&GenOptions {
        records: 10_000,
        value_bytes: 200,
        ..GenOptions::default()
    });
    let outcome = process(&relay, serde_json::from_value(ten_thousand).expect("event")).await;
    assert_eq!(outcome.produced + outcome.skipped_total(), 10_000);
    assert!(outcome.failures.is_empty());

    let six_mb = generate(&GenOptions {
        records: 2_400,
        value_bytes: 1_800,
        ..GenOptions::default()
    });
    let size = six_mb.to_string().len();
    assert!(
        (5_500_000..=6 * 1024 * 1024).contains(&size),
        "{size} bytes"
    );
    let outcome = process(&relay, serde_json::from_value(six_mb).expect("event")).await;
    assert_eq!(outcome.produced, 2_400);

    // What the handler parses the payload with, and the serde reading of the same type.
    for not_an_event in [
        r#"{"records": 5}"#,
        r#"{"records": {"t-0": [{"topic": "t"}]}}"#,
        r#"{"records": {"t-0": [{"topic": "t", "partition": 0, "offset": 1, "timestamp": 1.5}]}}"#,
        r#"{"records": {"t-0": [], "t-0": []}}"#,
        "nonsense",
    ] {
        assert!(
            MskEvent::parse(not_an_event.as_bytes().to_vec()).is_err(),
            "{not_an_event}"
        );
        assert!(
            serde_json::from_str::<MskEvent>(not_an_event).is_err(),
            "{not_an_event}"
        );
    }
}

/// Under the Lambda runtime the payload reaches the handler as the runtime API's bytes:
/// the layer keeps them by request id and hands the runtime `null` to deserialise; the
/// handler takes them once and parses them. A payload that is not an MSK event, or one
/// that was never kept, is an invalid event (not retryable).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_payloads_reach_the_handler_as_bytes() {
    use cdc_relay::modes::lambda::payload::{Payloads, RawPayloadLayer};
    use lambda_runtime::tower::{Layer, Service};
    use lambda_runtime::LambdaInvocation;
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    let relay = util::relay(&kafka, util::example_routes(), &[]);
    let payloads = Payloads::default();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut runtime = RawPayloadLayer::new(payloads.clone()).layer(lambda_runtime::service_fn({
        let seen = seen.clone();
        move |invocation: LambdaInvocation| {
            seen.lock()
                .expect("not poisoned")
                .push(invocation.body.clone());
            std::future::ready(Ok::<(), lambda_runtime::Error>(()))
        }
    }));
    let mut deliver = |request_id: &str, body: Vec<u8>| {
        let mut context = util::context(60_000);
        context.request_id = request_id.to_owned();
        let invocation = LambdaInvocation {
            parts: http::Response::new(()).into_parts().0,
            body: body.into(),
            context: context.clone(),
        };
        (runtime.call(invocation), context)
    };
    let insert = std::fs::read(util::root().join("events/insert.json")).expect("fixture");
    let (call, context) = deliver("r-1", insert);
    call.await.expect("the inner service answers");
    let (call, bad_context) = deliver("r-2", b"{\"records\": 5}".to_vec());
    call.await.expect("the inner service answers");
    let seen: Vec<Vec<u8>> = seen
        .lock()
        .expect("not poisoned")
        .iter()
        .map(|b| b.to_vec())
        .collect();
    assert_eq!(seen, vec![b"null".to_vec(), b"null".to_vec()]);

    let response = relay
        .handle_payload(LambdaEvent::new((), context.clone()), &payloads)
        .await
        .expect("the fixture is relayed");
    assert!(response.batch_item_failures.is_empty());
    let again = relay
        .handle_payload(LambdaEvent::new((), context), &payloads)
        .await
        .expect_err("a payload is taken once");
    assert!(matches!(again, cdc_relay::Error::Event(_)), "{again}");
    let bad = relay
        .handle_payload(LambdaEvent::new((), bad_context), &payloads)
        .await
        .expect_err("not an MSK event");
    assert!(
        matches!(&bad, cdc_relay::Error::Event(m) if m.contains("line 1")),
        "{bad}"
    );
    assert!(!bad.is_retryable());
}

async fn process(relay: &Function, event: MskEvent) -> BatchOutcome {
    relay.process(event, None).await.expect("processed")
}

/// Checks the invariant record by record: below each partition's reported offset, every
/// record has each of its messages on the broker (by event id; copies of one message
/// count once), its dead letter in the dead-letter topic, or was skipped by
/// configuration. Returns how many records were done.
fn assert_invariant(
    relay: &Function,
    event: &MskEvent,
    response: &BatchResponse,
    consumed: &[ConsumedMessage],
) -> usize {
    let reported: HashMap<&str, i64> = response
        .batch_item_failures
        .iter()
        .map(|f| {
            (
                f.item_identifier.partition.as_str(),
                f.item_identifier.offset,
            )
        })
        .collect();
    let ids: HashSet<&str> = consumed
        .iter()
        .filter_map(|m| m.header(header::EVENT_ID))
        .collect();
    let (origin, records) = (&event.origin, event.records.as_slice());
    let cluster = origin.cluster();
    let dead_letters = consumed.iter().filter(|m| m.topic == "dlq").count();
    eprintln!(
        "observed: {} records, {} messages on the broker ({dead_letters} dead letters), reported {:?}",
        records.len(),
        consumed.len(),
        response.batch_item_failures.iter().map(|f| (&f.item_identifier.partition, f.item_identifier.offset)).collect::<Vec<_>>()
    );
    let mut done = 0;
    for record in records {
        if record.offset
            >= reported
                .get(&*record.batch_partition)
                .copied()
                .unwrap_or(i64::MAX)
        {
            continue;
        }
        done += 1;
        let expected = relay
            .relay()
            .pipeline()
            .expected_ids(record, &cluster, true);
        for id in &expected {
            assert!(
                ids.contains(id.as_str()),
                "{}@{} reported done but message {id} is not on the broker",
                record.batch_partition,
                record.offset
            );
        }
    }
    done
}

fn fault_event() -> MskEvent {
    serde_json::from_value(generate(&GenOptions {
        records: 600,
        partitions: 3,
        ..GenOptions::default()
    }))
    .expect("event")
}

/// A small batch on its own source topic, to connect the producer before a fault.
fn warm_up_event() -> MskEvent {
    serde_json::from_value(generate(&GenOptions {
        records: 10,
        topic: "warm-up".to_owned(),
        ..GenOptions::default()
    }))
    .expect("event")
}

fn fault_routes() -> Routes {
    Routes::parse("[defaults]\ntopic = \"out.{table}\"\ndlq_topic = \"dlq\"\n[[route]]\ntable = \"*\"\ntopic = \"out\"\nkey = [\"id\"]\n", "t")
        .expect("routes")
}

fn consume_all(kafka: &EmbeddedKafka) -> Vec<ConsumedMessage> {
    util::consume(kafka, &["out", "dlq"])
}

/// Runs the fault event with `inject` applied to the cluster first.
async fn with_fault(
    inject: impl Fn(&EmbeddedKafka),
    deadline_ms: u64,
) -> (Function, MskEvent, BatchResponse, Vec<ConsumedMessage>) {
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    kafka.cluster().create_topic("out", 3, 1).expect("topic");
    kafka.cluster().create_topic("dlq", 1, 1).expect("topic");
    let relay = util::relay(
        &kafka,
        fault_routes(),
        &[
            ("RELAY_PARTIAL_BATCH", "true"),
            ("RELAY_DEADLINE_MARGIN_MS", "300"),
        ],
    );
    // Connect first (on another source topic, so its offsets never mix with the
    // batch's): the fault then hits a running producer, not the connection.
    util::invoke(&relay, warm_up_event())
        .await
        .expect("warm-up batch");
    inject(&kafka);
    let event = fault_event();
    let response = util::answered_in_time(&relay, event.clone(), deadline_ms).await;
    kafka
        .cluster()
        .broker_round_trip_time(1, Duration::ZERO)
        .expect("rtt");
    for broker in 1..=1 {
        let _ = kafka.cluster().broker_up(broker);
    }
    kafka.cluster().clear_request_errors(RDKafkaApiKey::Produce);
    let consumed = consume_all(&kafka);
    (relay, event, response, consumed)
}

/// Injected produce errors, retryable and permanent: the invariant holds for each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_errors_keep_the_invariant() {
    use RDKafkaRespErr::*;
    let faults: [&[RDKafkaRespErr]; 4] = [
        &[
            RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        ],
        &[
            RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        ],
        &[RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE],
        &[
            RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
            RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
        ],
    ];
    for errors in faults {
        eprintln!("fault: produce errors {errors:?}");
        let (relay, event, response, consumed) = with_fault(
            |k| k.cluster().request_errors(RDKafkaApiKey::Produce, errors),
            20_000,
        )
        .await;
        let done = assert_invariant(&relay, &event, &response, &consumed);
        assert_eq!(done, 600, "{errors:?} were not retried: {response:?}");
        // A request rejected as too large is retried record by record: its records
        // are produced, none is blamed and dead-lettered.
        assert!(
            !consumed.iter().any(|m| m.topic == "dlq"),
            "dead letters for {errors:?}"
        );
    }
}

/// A slow broker (250 ms round trips) under a 3 s deadline: records are done or
/// reported, before the deadline, never lost; some are done, so the check is not empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_broker_keeps_the_invariant() {
    let (relay, event, response, consumed) = with_fault(
        |k| {
            k.cluster()
                .broker_round_trip_time(1, Duration::from_millis(250))
                .expect("rtt")
        },
        3_000,
    )
    .await;
    let done = assert_invariant(&relay, &event, &response, &consumed);
    assert!(done > 0, "nothing was done: the invariant checked nothing");
}

/// The broker goes down in the middle of an invocation: records acknowledged before are
/// done, the rest are reported, before the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_in_the_middle_keeps_the_invariant() {
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    kafka.cluster().create_topic("out", 3, 1).expect("topic");
    kafka.cluster().create_topic("dlq", 1, 1).expect("topic");
    let relay = Arc::new(util::relay(
        &kafka,
        fault_routes(),
        &[
            ("RELAY_PARTIAL_BATCH", "true"),
            ("RELAY_DEADLINE_MARGIN_MS", "300"),
        ],
    ));
    // Warm the producer so the outage hits a running batch, not the connection; on
    // another source topic, so the check below sees only this batch's messages.
    util::invoke(&relay, warm_up_event())
        .await
        .expect("warm-up batch");
    let big: MskEvent = serde_json::from_value(generate(&GenOptions {
        records: 6_000,
        partitions: 3,
        seed: 9,
        ..GenOptions::default()
    }))
    .expect("event");
    kafka
        .cluster()
        .broker_round_trip_time(1, Duration::from_millis(50))
        .expect("rtt");
    let task = {
        let relay = relay.clone();
        let big = big.clone();
        tokio::spawn(async move {
            relay
                .handle(LambdaEvent::new(big, util::context(3_000)))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(120)).await;
    kafka.cluster().broker_down(1).expect("down");
    let started = std::time::Instant::now();
    let response = task.await.expect("task").expect("partial response");
    assert!(started.elapsed() < Duration::from_millis(3_000));
    kafka.cluster().broker_up(1).expect("up");
    kafka
        .cluster()
        .broker_round_trip_time(1, Duration::ZERO)
        .expect("rtt");
    let consumed = consume_all(&kafka);
    let done = assert_invariant(&relay, &big, &response, &consumed);
    assert!(done > 0, "nothing was acknowledged before the outage");
    assert!(
        !response.batch_item_failures.is_empty() && done < 6_000,
        "the outage failed nothing: {response:?}"
    );
}
