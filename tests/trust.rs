//! Trust under faults: every wait ends by the invocation's answer-by time, a fatal
//! producer is replaced, infrastructure faults are never blamed on records, fan-out
//! records are done only when all their messages are, nothing is produced past a known
//! failure, dead letters are safe to keep, and the local invoke is the Lambda path.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use cdc_relay::modes::lambda::{BatchResponse, Function};
use cdc_relay::modes::local::{ConsumedMessage, EmbeddedKafka};
use cdc_relay::source::MskEvent;
use cdc_relay::transform::{header, Routes};
use lambda_runtime::LambdaEvent;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use serde_json::{json, Value};

use crate::util;

/// Orders keyed by id to `out`, dead letters to `dlq`.
const ROUTES_DLQ: &str = "[defaults]\ndlq_topic = \"dlq\"\n[[route]]\ntable = \"public.*\"\ntopic = \"out\"\nkey = [\"id\"]\n";
/// The same without a dead-letter topic: poison is reported (`on_poison = "fail"`).
const ROUTES_FAIL: &str = "[[route]]\ntable = \"public.*\"\ntopic = \"out\"\nkey = [\"id\"]\n";

fn routes(text: &str) -> Routes {
    Routes::parse(text, "test").expect("routes")
}

/// Messages of `topic` made from source offset `offset`.
fn from_offset<'a>(
    messages: &'a [ConsumedMessage],
    topic: &str,
    offset: i64,
) -> Vec<&'a ConsumedMessage> {
    let offset = offset.to_string();
    messages
        .iter()
        .filter(|m| m.topic == topic && m.header(header::SOURCE_OFFSET) == Some(offset.as_str()))
        .collect()
}

/// Per event id, its last copy in the log; per key, those last copies in source
/// order (the source offset header rises with the log position).
fn assert_last_copies_in_order(topic: &str, out: &[ConsumedMessage]) {
    let mut last_copies: std::collections::HashMap<&str, (usize, Vec<u8>, i64)> =
        Default::default();
    for (position, m) in out.iter().enumerate() {
        let offset: i64 = m
            .header(header::SOURCE_OFFSET)
            .and_then(|o| o.parse().ok())
            .unwrap_or(-1);
        last_copies.insert(
            m.header(header::EVENT_ID).unwrap_or_default(),
            (position, m.key.clone().unwrap_or_default(), offset),
        );
    }
    let mut by_key: std::collections::HashMap<Vec<u8>, Vec<(usize, i64)>> = Default::default();
    for (position, key, offset) in last_copies.into_values() {
        by_key.entry(key).or_default().push((position, offset));
    }
    for (key, mut copies) in by_key {
        copies.sort_unstable();
        for pair in copies.windows(2) {
            assert!(
                pair[1].1 > pair[0].1,
                "{topic}, key {key:?}: last copy of {} after {}",
                pair[1].1,
                pair[0].1
            );
        }
    }
}

/// One partition `src-0` with inserts of `public.orders` at offsets 10.., each row given.
fn orders(rows: &[Value]) -> MskEvent {
    let mut b = util::EventBuilder::new();
    for (i, row) in rows.iter().enumerate() {
        b = b.data("src", 0, 10 + i as i64, "insert", "orders", row.clone());
    }
    b.build()
}

/// A mock cluster of two brokers with one-partition topics led as given.
fn two_brokers(topics: &[(&str, i32)]) -> EmbeddedKafka {
    let kafka = EmbeddedKafka::start(2).expect("mock cluster");
    for (topic, leader) in topics {
        kafka.cluster().create_topic(topic, 1, 1).expect("topic");
        kafka
            .cluster()
            .partition_leader(topic, 0, Some(*leader))
            .expect("leader");
    }
    kafka
}

/// Calls the handler with a deadline `deadline_ms` from now; fails the test if the call
/// itself outlives that deadline by more than a few seconds (a wait without a bound).
async fn handle_by(
    relay: &Function,
    event: MskEvent,
    deadline_ms: u64,
) -> (Result<BatchResponse, cdc_relay::Error>, Duration) {
    let started = Instant::now();
    let answer = tokio::time::timeout(
        Duration::from_millis(deadline_ms + 5_000),
        relay.handle(LambdaEvent::new(event, util::context(deadline_ms))),
    )
    .await
    .unwrap_or_else(|_| panic!("no answer within {deadline_ms} ms + 5 s"));
    (answer, started.elapsed())
}

/// A record the broker rejects while another broker is down, and a record too large
/// for the producer whose dead letter's topic is led by the broker that is down: the
/// invocation still answers before its deadline instead of waiting up to
/// `message.timeout.ms`, and reports all three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_record_and_dead_broker_answer_before_the_deadline() {
    let kafka = two_brokers(&[("out", 1), ("other", 2), ("dlq", 2)]);
    let relay = util::relay(
        &kafka,
        routes("[defaults]\ndlq_topic = \"dlq\"\n[[route]]\ntable = \"public.orders\"\ntopic = \"out\"\nkey = [\"id\"]\n[[route]]\ntable = \"public.users\"\ntopic = \"other\"\nkey = [\"id\"]\n"),
        &[
            ("RELAY_PARTIAL_BATCH", "true"),
            ("RELAY_DEADLINE_MARGIN_MS", "300"),
            ("RELAY_PRODUCER_MESSAGE_MAX_BYTES", "20000"),
        ],
    );
    let event = |offset: i64| {
        let big = json!({"id": offset, "blob": "x".repeat(if offset > 1 { 40_000 } else { 1 })});
        util::EventBuilder::new()
            .data("src", 0, offset, "insert", "orders", json!({"id": offset}))
            .data("src", 1, offset, "insert", "users", json!({"id": offset}))
            .data("src", 2, offset, "insert", "orders", big)
            .build()
    };
    let (warm, _) = handle_by(&relay, event(1), 10_000).await;
    assert!(warm.expect("warm-up").batch_item_failures.is_empty());
    kafka.cluster().broker_down(2).expect("down");
    kafka.cluster().request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE],
    );
    let (answer, elapsed) = handle_by(&relay, event(10), 2_000).await;
    assert!(
        elapsed < Duration::from_millis(2_000),
        "answered after the deadline: {elapsed:?}"
    );
    // The budget passes waiting for the broker that is down: no time to produce the
    // rejected record again alone, so it is reported with the others.
    assert_eq!(
        util::reported(&answer.expect("partial response")),
        vec![
            ("src-0".to_owned(), 10),
            ("src-1".to_owned(), 10),
            ("src-2".to_owned(), 10)
        ]
    );
}

/// A fatal idempotent-producer error (InitProducerId refused with
/// CLUSTER_AUTHORIZATION_FAILED) fails the batch it hit, and the next batch in the same
/// process gets a new producer and succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fatal_producer_error_is_recovered() {
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    kafka.cluster().create_topic("out", 1, 1).expect("topic");
    kafka.cluster().request_errors(
        RDKafkaApiKey::InitProducerId,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED],
    );
    let relay = util::relay(
        &kafka,
        routes(ROUTES_FAIL),
        &[
            ("RELAY_PARTIAL_BATCH", "true"),
            ("RELAY_DEADLINE_MARGIN_MS", "300"),
        ],
    );
    let event = || orders(&[json!({"id": 1}), json!({"id": 2}), json!({"id": 3})]);
    let (first, elapsed) = handle_by(&relay, event(), 5_000).await;
    assert!(elapsed < Duration::from_millis(5_000), "{elapsed:?}");
    assert_eq!(
        util::reported(&first.expect("partial response")),
        vec![("src-0".to_owned(), 10)],
        "the fatal error fails the whole batch"
    );
    let (second, _) = handle_by(&relay, event(), 10_000).await;
    assert!(
        second.expect("answer").batch_item_failures.is_empty(),
        "a new producer delivers the next batch"
    );
    let out = util::consume(&kafka, &["out"]);
    let ids: HashSet<_> = out
        .iter()
        .filter_map(|m| m.header(header::EVENT_ID))
        .collect();
    assert_eq!(ids.len(), 3, "each record once after de-duplication");
}

/// A topic the relay is not authorized for is the infrastructure's fault: its records
/// are reported for retry, quickly, never dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_topic_is_reported_never_dead_lettered() {
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    kafka.cluster().create_topic("dlq", 1, 1).expect("topic");
    kafka
        .cluster()
        .topic_error(
            "out",
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
        )
        .expect("topic error");
    let relay = util::relay(&kafka, routes(ROUTES_DLQ), &[]);
    let (answer, elapsed) = handle_by(
        &relay,
        orders(&[json!({"id": 1}), json!({"id": 2})]),
        30_000,
    )
    .await;
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    let error = answer.expect_err("no partial batch responses: the batch fails");
    assert!(error.is_retryable());
    let text = error.to_string();
    assert!(
        text.contains("not authorized") && text.contains("\"public.*\""),
        "{text}"
    );
    assert!(
        util::consume(&kafka, &["dlq"]).is_empty(),
        "nothing dead-lettered"
    );
}

/// The broker refusing every produce request of one topic with
/// TOPIC_AUTHORIZATION_FAILED (a grant missing on the write path only) is reported too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_writes_are_reported_never_dead_lettered() {
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    kafka.cluster().create_topic("out", 1, 1).expect("topic");
    kafka.cluster().create_topic("dlq", 1, 1).expect("topic");
    let relay = util::relay(
        &kafka,
        routes(ROUTES_DLQ),
        &[("RELAY_PARTIAL_BATCH", "true")],
    );
    let (warm, _) = handle_by(&relay, orders(&[json!({"id": 0})]), 10_000).await;
    assert!(warm.expect("warm-up").batch_item_failures.is_empty());
    kafka.cluster().request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED],
    );
    let (answer, _) = handle_by(
        &relay,
        orders(&[json!({"id": 1}), json!({"id": 2})]),
        10_000,
    )
    .await;
    assert_eq!(
        util::reported(&answer.expect("partial response")),
        vec![("src-0".to_owned(), 10)]
    );
    assert!(
        util::consume(&kafka, &["dlq"]).is_empty(),
        "nothing dead-lettered"
    );
}

/// A name DMS brings that Kafka refuses is made legal when rendered (`ORDER#LINES` ->
/// `ORDER_LINES`); a rendered name the broker still refuses (INVALID_TOPIC, as for a
/// name colliding with another) is that record's fault: dead-lettered, and the records
/// after it in the partition are done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendered_topic_names_are_legal_and_a_refused_one_is_poison() {
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    for topic in ["dlq", "cdc.public.ORDER_LINES", "cdc.public.users"] {
        kafka.cluster().create_topic(topic, 1, 1).expect("topic");
    }
    kafka
        .cluster()
        .topic_error(
            "cdc.public.users",
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION,
        )
        .expect("topic error");
    let relay = util::relay(
        &kafka,
        routes("[defaults]\ndlq_topic = \"dlq\"\ntopic = \"cdc.{schema}.{table}\"\n"),
        &[("RELAY_PARTIAL_BATCH", "true")],
    );
    let event = util::EventBuilder::new()
        .data("src", 0, 10, "insert", "ORDER#LINES", json!({"id": 1}))
        .data("src", 0, 11, "insert", "users", json!({"id": 2}))
        .data("src", 0, 12, "insert", "ORDER#LINES", json!({"id": 3}))
        .build();
    let (answer, _) = handle_by(&relay, event, 30_000).await;
    assert_eq!(util::reported(&answer.expect("answer")), vec![]);
    let out = util::consume(&kafka, &["cdc.public.ORDER_LINES", "dlq"]);
    let lines: Vec<_> = out
        .iter()
        .filter(|m| m.topic == "cdc.public.ORDER_LINES")
        .map(|m| {
            m.header(header::SOURCE_OFFSET)
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(lines, ["10", "12"]);
    let letters = from_offset(&out, "dlq", 11);
    assert_eq!(letters.len(), 1, "{out:?}");
    let error = letters[0].header(header::ERROR).unwrap_or_default();
    assert!(
        error.contains("INVALID_TOPIC") && error.contains("cdc.public.users"),
        "{error}"
    );
}

/// A topic written out in the routes that the broker refuses as a name is the
/// configuration's fault: reported for retry, nothing dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn written_topic_the_broker_refuses_is_reported_never_dead_lettered() {
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    kafka.cluster().create_topic("dlq", 1, 1).expect("topic");
    kafka.cluster().create_topic("out", 1, 1).expect("topic");
    kafka
        .cluster()
        .topic_error("out", RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION)
        .expect("topic error");
    let relay = util::relay(&kafka, routes(ROUTES_DLQ), &[]);
    let (answer, _) = handle_by(&relay, orders(&[json!({"id": 1})]), 30_000).await;
    let error = answer.expect_err("the batch fails");
    assert!(error.is_retryable(), "{error}");
    assert!(error.to_string().contains("INVALID_TOPIC"), "{error}");
    assert!(
        util::consume(&kafka, &["dlq"]).is_empty(),
        "nothing dead-lettered"
    );
}

/// A downstream topic that does not exist fails its records at once (not after
/// librdkafka's 30 s of metadata waits), retryable, naming the topic and the route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_topic_fails_fast_and_names_its_route() {
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    let relay = util::relay(
        &kafka,
        routes("[[route]]\ntable = \"public.orders\"\ntopic = \"no-such-topic\"\nkey = [\"id\"]\n"),
        &[("RELAY_PRODUCER_ALLOW_AUTO_CREATE_TOPICS", "false")],
    );
    let (answer, elapsed) = handle_by(&relay, orders(&[json!({"id": 1})]), 60_000).await;
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    let error = answer.expect_err("the batch fails");
    assert!(error.is_retryable());
    let text = error.to_string();
    assert!(
        text.contains("\"no-such-topic\" does not exist")
            && text.contains("route \"public.orders\""),
        "{text}"
    );
}

/// The broker rejecting a whole produce request as too large is not every record's
/// fault: each record of it is produced again alone, and all are done, none
/// dead-lettered. Requests after the rejected one landed first, so the relay produces
/// the later records again after it: per key, the last copies are in source order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_rejection_is_retried_per_record() {
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    kafka.cluster().create_topic("out", 1, 1).expect("topic");
    kafka.cluster().create_topic("dlq", 1, 1).expect("topic");
    let relay = util::relay(
        &kafka,
        routes(ROUTES_DLQ),
        &[
            ("RELAY_PARTIAL_BATCH", "true"),
            ("RELAY_PRODUCER_BATCH_NUM_MESSAGES", "10"),
        ],
    );
    let (warm, _) = handle_by(&relay, orders(&[json!({"id": 0})]), 10_000).await;
    assert!(warm.expect("warm-up").batch_item_failures.is_empty());
    kafka.cluster().request_errors(
        RDKafkaApiKey::Produce,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE,
        ],
    );
    let rows: Vec<Value> = (0..100).map(|i| json!({"id": i % 5, "seq": i})).collect();
    let (answer, _) = handle_by(&relay, orders(&rows), 10_000).await;
    assert!(answer.expect("answer").batch_item_failures.is_empty());
    assert!(
        util::consume(&kafka, &["dlq"]).is_empty(),
        "nothing dead-lettered"
    );
    let out = util::consume(&kafka, &["out"]);
    assert_last_copies_in_order("out", &out);
    for offset in 10..110 {
        assert!(
            !from_offset(&out, "out", offset).is_empty(),
            "offset {offset} missing"
        );
    }
}

/// A fan-out record rejected on one topic while a later record is rejected on the
/// other: each is produced again alone, and every record after the first one produced
/// again sends all its messages again, not only those not acknowledged. Per key and
/// topic, the last copies are in source order (a later record's acknowledged message
/// was left before an earlier record's new copy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_rejections_keep_each_topics_last_copies_in_order() {
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    for topic in ["out", "out2", "dlq"] {
        kafka.cluster().create_topic(topic, 1, 1).expect("topic");
    }
    let relay = util::relay(
        &kafka,
        routes("[defaults]\ndlq_topic = \"dlq\"\n[[route]]\ntable = \"public.*\"\ntopics = [\"out\", \"out2\"]\nkey = [\"id\"]\n"),
        &[
            ("RELAY_PARTIAL_BATCH", "true"),
            ("RELAY_PRODUCER_BATCH_NUM_MESSAGES", "10"),
        ],
    );
    let (warm, _) = handle_by(&relay, orders(&[json!({"id": 0})]), 10_000).await;
    assert!(warm.expect("warm-up").batch_item_failures.is_empty());
    // librdkafka sends one request per topic partition, so the two rejected requests
    // are often of different topics (which ones depends on timing: several rounds).
    for round in 1..=4_i64 {
        kafka.cluster().request_errors(
            RDKafkaApiKey::Produce,
            &[
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR,
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE,
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE,
            ],
        );
        let mut event = util::EventBuilder::new();
        for i in 0..100 {
            let row = json!({"id": i % 5, "seq": i});
            event = event.data("src", 0, 1000 * round + i, "insert", "orders", row);
        }
        let (answer, _) = handle_by(&relay, event.build(), 10_000).await;
        assert!(answer.expect("answer").batch_item_failures.is_empty());
    }
    assert!(
        util::consume(&kafka, &["dlq"]).is_empty(),
        "nothing dead-lettered"
    );
    for topic in ["out", "out2"] {
        let out = util::consume(&kafka, &[topic]);
        assert_last_copies_in_order(topic, &out);
        for offset in (1..=4).flat_map(|round| 1000 * round..1000 * round + 100) {
            assert!(
                !from_offset(&out, topic, offset).is_empty(),
                "{topic}: offset {offset} missing"
            );
        }
    }
}

/// A record the broker rejects after it was sent, and again alone, is poison under its
/// own route's `on_poison`: here "skip" while the default dead-letters. It is done and
/// skipped, and nothing reaches the dead-letter topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_rejected_after_sending_takes_its_routes_on_poison() {
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    kafka.cluster().create_topic("out", 1, 1).expect("topic");
    kafka.cluster().create_topic("dlq", 1, 1).expect("topic");
    let relay = util::relay(
        &kafka,
        routes("[defaults]\ndlq_topic = \"dlq\"\n[[route]]\ntable = \"public.orders\"\ntopic = \"out\"\nkey = [\"id\"]\non_poison = \"skip\"\n"),
        &[("RELAY_PARTIAL_BATCH", "true")],
    );
    let event = |offset: i64| {
        util::EventBuilder::new()
            .data("src", 0, offset, "insert", "orders", json!({"id": offset}))
            .build()
    };
    let (warm, _) = handle_by(&relay, event(1), 10_000).await;
    assert!(warm.expect("warm-up").batch_item_failures.is_empty());
    kafka.cluster().request_errors(
        RDKafkaApiKey::Produce,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE,
        ],
    );
    let (answer, _) = handle_by(&relay, event(10), 10_000).await;
    assert!(
        answer.expect("answer").batch_item_failures.is_empty(),
        "skipped is done"
    );
    assert!(
        util::consume(&kafka, &["dlq"]).is_empty(),
        "the route skips its poison: nothing dead-lettered"
    );
    assert!(from_offset(&util::consume(&kafka, &["out"]), "out", 10).is_empty());
}

/// A fan-out record whose message to one topic is rejected while its message to the
/// other fails retryably (that topic's leader is down) is reported, not dead-lettered
/// and called done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_with_one_rejection_and_one_retryable_failure_is_reported() {
    let kafka = two_brokers(&[("a", 1), ("b", 2), ("dlq", 1)]);
    let relay = util::relay(
        &kafka,
        routes("[defaults]\ndlq_topic = \"dlq\"\n[[route]]\ntable = \"public.*\"\ntopics = [\"a\", \"b\"]\nkey = [\"id\"]\n"),
        &[
            ("RELAY_PARTIAL_BATCH", "true"),
            ("RELAY_DEADLINE_MARGIN_MS", "400"),
        ],
    );
    let (warm, _) = handle_by(&relay, orders(&[json!({"id": 0})]), 10_000).await;
    assert!(warm.expect("warm-up").batch_item_failures.is_empty());
    kafka.cluster().broker_down(2).expect("down");
    kafka.cluster().request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE],
    );
    let (answer, elapsed) = handle_by(&relay, orders(&[json!({"id": 1})]), 3_000).await;
    assert!(elapsed < Duration::from_millis(3_000), "{elapsed:?}");
    assert_eq!(
        util::reported(&answer.expect("partial response")),
        vec![("src-0".to_owned(), 10)]
    );
    kafka.cluster().broker_up(2).expect("up");
    let dead = util::consume(&kafka, &["dlq"]);
    assert!(
        dead.is_empty(),
        "dead-lettered although it may still succeed: {dead:?}"
    );
}

/// Without a dead-letter topic, a record the producer rejects stops its partition:
/// the records after it are not produced only to be reported (and produced again on
/// every retry). With one, the dead letter keeps its place and the partition goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_produced_past_a_known_failure() {
    let big = json!({"id": 1, "blob": "x".repeat(40_000)});
    let rows = [big, json!({"id": 2}), json!({"id": 3})];
    for (text, topics) in [(ROUTES_FAIL, vec!["out"]), (ROUTES_DLQ, vec!["out", "dlq"])] {
        let kafka = EmbeddedKafka::start(1).expect("mock cluster");
        for topic in &topics {
            kafka.cluster().create_topic(topic, 1, 1).expect("topic");
        }
        let relay = util::relay(
            &kafka,
            routes(text),
            &[
                ("RELAY_PARTIAL_BATCH", "true"),
                ("RELAY_PRODUCER_MESSAGE_MAX_BYTES", "20000"),
            ],
        );
        let (answer, _) = handle_by(&relay, orders(&rows), 10_000).await;
        let answer = answer.expect("partial response");
        let consumed = util::consume(&kafka, &topics);
        if topics.len() == 1 {
            assert_eq!(util::reported(&answer), vec![("src-0".to_owned(), 10)]);
            assert!(
                consumed.is_empty(),
                "produced past the failure: {consumed:?}"
            );
        } else {
            assert!(util::reported(&answer).is_empty(), "{answer:?}");
            assert_eq!(from_offset(&consumed, "dlq", 10).len(), 1);
            assert_eq!(from_offset(&consumed, "out", 11).len(), 1);
            assert_eq!(from_offset(&consumed, "out", 12).len(), 1);
        }
    }
}

/// A dead letter carries the event id and source headers, and by default its value
/// leaves out the columns the route excludes and masks the ones it masks (numbers and
/// other values byte for byte); a value that is not a DMS record is withheld (its size
/// and SHA-256 kept); `dead_letter_value = "original"` keeps values as they came.
/// Problem logs with `RELAY_LOG_VALUES` show exactly what the dead letter shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_safe_to_keep() {
    let captured = crate::observability::captured_logs();
    for mode in ["redacted", "original"] {
        let (email, note) = (
            format!("{mode}-5a1e@example.com"),
            format!("{mode}-note-7f3a"),
        );
        let routes_text = format!(
            "[defaults]\ndlq_topic = \"dlq\"\ndead_letter_value = \"{mode}\"\n[[route]]\ntable = \"public.orders\"\ntopic = \"out\"\nkey = [\"id\"]\nexclude = [\"note\"]\nmask = [\"email\"]\n[route.types]\namount = \"decimal\"\n"
        );
        let poison = format!(
            r#"{{"data":{{"id":7,"amount":"lots","email":"{email}","note":"{note}","big":123456789012345678901234567890}},"metadata":{{"timestamp":"2024-11-21T00:00:00Z","record-type":"data","operation":"insert","partition-key-type":"schema-table","schema-name":"public","table-name":"orders"}}}}"#
        );
        let unreadable = format!("not json {email}");
        let kafka = EmbeddedKafka::start(1).expect("mock cluster");
        let relay = util::relay(
            &kafka,
            routes(&routes_text),
            &[("RELAY_LOG_VALUES", "true")],
        );
        let event = util::EventBuilder::new()
            .raw(
                "src",
                0,
                10,
                Some("public.orders"),
                Some(&util::b64(&poison)),
            )
            .raw(
                "src",
                0,
                11,
                Some("public.orders"),
                Some(&util::b64(&unreadable)),
            )
            .build();
        let (answer, _) = handle_by(&relay, event, 10_000).await;
        assert!(answer.expect("done").batch_item_failures.is_empty());
        let dead = util::consume(&kafka, &["dlq"]);
        assert_eq!(dead.len(), 2);
        for letter in &dead {
            let id = letter.header(header::EVENT_ID).expect("event id");
            assert_eq!(id.len(), 36, "{id}");
            assert_eq!(letter.header(header::SOURCE_TOPIC), Some("src"));
        }
        let value = |m: &ConsumedMessage| {
            String::from_utf8_lossy(m.value.as_deref().unwrap_or_default()).into_owned()
        };
        // Keyed apart (redacted: by their ids), the two may sit in two partitions.
        let at = |offset: &str| {
            dead.iter()
                .find(|m| m.header(header::SOURCE_OFFSET) == Some(offset))
                .expect("a dead letter of each record")
        };
        let (readable, other) = (at("10"), at("11"));
        if mode == "redacted" {
            let text = value(readable);
            assert_eq!(readable.header(header::DEAD_LETTER_VALUE), Some("redacted"));
            assert!(!text.contains(&email) && !text.contains(&note), "{text}");
            assert!(text.contains(r#""email":"***""#), "{text}");
            assert!(
                text.contains("123456789012345678901234567890"),
                "numbers kept: {text}"
            );
            // DMS's key may hold what the route masks: without a hash key, the dead
            // letter's id stands for it.
            assert_eq!(
                readable.key.as_deref(),
                readable.header(header::EVENT_ID).map(str::as_bytes)
            );
            assert_eq!(readable.header(header::DEAD_LETTER_KEY), Some("withheld"));
            assert_eq!(other.header(header::DEAD_LETTER_VALUE), Some("withheld"));
            assert_eq!(
                other.value.as_deref(),
                Some(&b""[..]),
                "empty, never a tombstone"
            );
            assert_eq!(
                other.header(header::ORIGINAL_SIZE),
                Some(unreadable.len().to_string().as_str())
            );
        } else {
            assert_eq!(readable.header(header::DEAD_LETTER_VALUE), Some("original"));
            assert_eq!(readable.key.as_deref(), Some(&b"public.orders"[..]));
            assert_eq!(readable.header(header::DEAD_LETTER_KEY), None);
            assert_eq!(value(readable), poison);
            assert_eq!(value(other), unreadable);
        }
        let logs = String::from_utf8_lossy(&captured.0.lock().expect("logs")).into_owned();
        if mode == "redacted" {
            assert!(
                logs.lines()
                    .all(|l| !l.contains(&email) && !l.contains(&note)),
                "a redacted value leaked into the logs"
            );
        } else {
            assert!(logs.contains(&note), "original values are logged");
        }
    }
}

/// The partial batch response, byte for byte, with failures in two source topics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_batch_response_golden() {
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    let relay = util::relay(
        &kafka,
        routes(ROUTES_FAIL),
        &[("RELAY_PARTIAL_BATCH", "true")],
    );
    let poison = util::b64("not json");
    let event = util::EventBuilder::new()
        .data("dms.orders", 0, 5, "insert", "orders", json!({"id": 5}))
        .raw("dms.orders", 0, 6, Some("k"), Some(&poison))
        .data("dms.orders", 0, 7, "insert", "orders", json!({"id": 7}))
        .data(
            "dms.payments",
            2,
            40,
            "insert",
            "payments",
            json!({"no_id": 1}),
        )
        .data("dms.payments", 1, 3, "insert", "payments", json!({"id": 3}))
        .build();
    let (answer, _) = handle_by(&relay, event, 10_000).await;
    let text = serde_json::to_string(&answer.expect("partial response")).expect("json");
    util::assert_golden("partial-batch-response.json", &format!("{text}\n"));
}

/// `cdc-relay invoke` runs the Lambda entry point: with `RELAY_METRICS=true` it writes
/// the invocation's EMF record before the response, and logs the invocation span.
#[test]
fn local_invoke_is_the_lambda_path() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_cdc-relay"))
        .arg("invoke")
        .env("RELAY_METRICS", "true")
        .env_remove("RELAY_BROKERS")
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .current_dir(util::root())
        .output()
        .expect("run cdc-relay invoke");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    let emf: Value = serde_json::from_str(lines.first().expect("a line")).expect("EMF JSON");
    assert!(emf["_aws"]["CloudWatchMetrics"].is_array(), "{emf}");
    assert_eq!(lines.last().copied(), Some(r#"{"batchItemFailures":[]}"#));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("invocation") && stderr.contains("cold_start=true"),
        "{stderr}"
    );
}
