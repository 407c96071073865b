//! Delivery failures injected into the mock cluster: a record is reported done only
//! after the broker acknowledged it; everything else is reported to Lambda.

use cdc_relay::source::MskEvent;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use cdc_relay::modes::lambda::BatchResponse;
use cdc_relay::modes::local::{ConsumedMessage, EmbeddedKafka};
use cdc_relay::transform::{header, Routes};
use lambda_runtime::LambdaEvent;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use serde_json::json;

use crate::util;

fn routes() -> Routes {
    Routes::parse(
        "[[route]]\ntable = \"public.*\"\ntopic = \"out\"\nkey = [\"id\"]\n",
        "test",
    )
    .expect("routes")
}

/// Two partitions of `n` inserts each on table `t`.
fn two_partitions(n: i64) -> MskEvent {
    let mut b = util::EventBuilder::new();
    for p in 0..2 {
        for i in 0..n {
            b = b.data(
                "src",
                p,
                10 + i,
                "insert",
                "t",
                json!({"id": format!("{p}-{i}")}),
            );
        }
    }
    b.build()
}

/// The invariant: per partition, every record below the reported offset (all records
/// when none is reported) has its message on the broker.
fn assert_reported_done_were_acknowledged(
    response: &BatchResponse,
    n: i64,
    consumed: &[ConsumedMessage],
) {
    let reported: HashMap<String, i64> = util::reported(response).into_iter().collect();
    let on_broker: HashSet<(String, String)> = consumed.iter().map(source_position).collect();
    for p in 0..2 {
        let first_not_done = reported.get(&format!("src-{p}")).copied().unwrap_or(10 + n);
        assert!(
            (10..=10 + n).contains(&first_not_done),
            "reported offset {first_not_done} was not in the batch"
        );
        for offset in 10..first_not_done {
            assert!(
                on_broker.contains(&(p.to_string(), offset.to_string())),
                "src-{p}@{offset} reported done but not on the broker"
            );
        }
    }
}

/// The source (partition, offset) a message was made from, from its headers.
fn source_position(message: &ConsumedMessage) -> (String, String) {
    let header = |name| message.header(name).unwrap_or_default().to_owned();
    (
        header(header::SOURCE_PARTITION),
        header(header::SOURCE_OFFSET),
    )
}

/// A relay with one message in flight at most and a 500 ms margin, connected and with
/// topic `out`'s metadata (a warm-up batch), then a 3 s round trip on the broker: a
/// batch's first wait is for an acknowledgement, and outlasts a 2 s deadline's budget.
async fn one_in_flight_on_a_slow_broker(
    kafka: &EmbeddedKafka,
    vars: &[(&str, &str)],
) -> cdc_relay::modes::lambda::Function {
    kafka.cluster().create_topic("out", 1, 1).expect("topic");
    let mut all = vec![
        ("RELAY_PARTIAL_BATCH", "true"),
        ("RELAY_DEADLINE_MARGIN_MS", "500"),
        ("RELAY_MAX_IN_FLIGHT", "1"),
    ];
    all.extend_from_slice(vars);
    let relay = util::relay(kafka, routes(), &all);
    let warm_up = util::EventBuilder::new()
        .data("src", 0, 1, "insert", "t", json!({"id": "warm-up"}))
        .build();
    let response = util::invoke(&relay, warm_up).await.expect("warm-up");
    assert!(util::reported(&response).is_empty(), "{response:?}");
    kafka
        .cluster()
        .broker_round_trip_time(1, Duration::from_millis(3_000))
        .expect("rtt");
    relay
}

/// Past the budget no more of the batch is transformed: the records of chunks not yet
/// started are reported for retry untouched, so a large batch whose budget a slow
/// broker spent does not go on spending CPU time its answer needs. Here the budget
/// passes while partition 0 waits for room (one message in flight, a 3 s round trip);
/// partition 1 holds only source tombstones, each done as soon as it is transformed:
/// before, all of them were, after the budget, and partition 1 was reported done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_budget_no_more_records_are_transformed() {
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    let relay = one_in_flight_on_a_slow_broker(
        &kafka,
        &[("RELAY_CHUNK_SIZE", "1"), ("RELAY_CONCURRENCY", "1")],
    )
    .await;
    let mut batch = util::EventBuilder::new();
    for offset in 10..12 {
        batch = batch.data("src", 0, offset, "insert", "t", json!({ "id": offset }));
    }
    for offset in 10..40 {
        batch = batch.raw("src", 1, offset, Some("public.t"), None);
    }
    let response = util::answered_in_time(&relay, batch.build(), 2_000).await;
    let reported = util::reported(&response);
    assert_eq!(
        reported.first(),
        Some(&("src-0".to_owned(), 10)),
        "{reported:?}"
    );
    // The chunks already started when the budget passed (at most the concurrency and
    // one more) are done; the rest of partition 1 is reported.
    assert!(
        matches!(reported.get(1), Some((p, o)) if p == "src-1" && (10..=13).contains(o)),
        "{reported:?}"
    );
    kafka
        .cluster()
        .broker_round_trip_time(1, Duration::ZERO)
        .expect("rtt");
}

/// Without `RELAY_BROKERS` each event's `bootstrapServers` names the cluster its changes
/// go to: with two event source mappings, a batch from the second cluster is written
/// there, never to the first one's, whose producer the function already has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_writes_to_the_cluster_it_names() {
    let clusters = [
        EmbeddedKafka::start(1).expect("mock cluster"),
        EmbeddedKafka::start(1).expect("mock cluster"),
    ];
    for kafka in &clusters {
        kafka.cluster().create_topic("out", 1, 1).expect("topic");
    }
    let settings = cdc_relay::config::Settings::from_vars([(
        "RELAY_PARTIAL_BATCH".to_owned(),
        "true".to_owned(),
    )])
    .expect("settings without brokers");
    let relay = cdc_relay::modes::lambda::Function::with_routes(settings, routes());
    for round in 0..2 {
        for (n, kafka) in clusters.iter().enumerate() {
            let event = util::EventBuilder::new()
                .data(
                    "src",
                    0,
                    round,
                    "insert",
                    "t",
                    json!({ "id": format!("cluster-{n}-{round}") }),
                )
                .build_from(None, Some(&kafka.bootstrap_servers()));
            let response = util::invoke(&relay, event).await.expect("answer");
            assert!(
                util::reported(&response).is_empty(),
                "cluster {n}, round {round}"
            );
        }
    }
    for (n, kafka) in clusters.iter().enumerate() {
        let mut keys: Vec<String> = util::consume(kafka, &["out"])
            .iter()
            .map(|m| String::from_utf8_lossy(m.key.as_deref().unwrap_or_default()).into_owned())
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            vec![format!("cluster-{n}-0"), format!("cluster-{n}-1")],
            "what cluster {n} holds"
        );
    }
}

/// Broker down for the whole invocation: the handler answers before the deadline, with
/// the first offset of each partition, and nothing is reported done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_reports_every_partition_before_the_deadline() {
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    kafka.cluster().create_topic("out", 2, 1).expect("topic");
    let relay = util::relay(
        &kafka,
        routes(),
        &[
            ("RELAY_PARTIAL_BATCH", "true"),
            ("RELAY_DEADLINE_MARGIN_MS", "500"),
        ],
    );
    kafka.cluster().broker_down(1).expect("broker down");
    let response = util::answered_in_time(&relay, two_partitions(5), 2_500).await;
    assert_eq!(
        util::reported(&response),
        vec![("src-0".to_owned(), 10), ("src-1".to_owned(), 10)]
    );
}

/// Without partial batch responses the same failure is an error (whole batch retried).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_without_partial_batch_is_an_error() {
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    let relay = util::relay(&kafka, routes(), &[("RELAY_DEADLINE_MARGIN_MS", "500")]);
    kafka.cluster().broker_down(1).expect("broker down");
    let error = relay
        .handle(LambdaEvent::new(two_partitions(3), util::context(2_000)))
        .await
        .expect_err("must fail the batch");
    assert!(error.is_retryable());
    assert!(
        matches!(
            error,
            cdc_relay::Error::BatchFailed {
                failed: 6,
                total: 6,
                ..
            }
        ),
        "{error}"
    );
}

/// Transient produce errors (leader change, timeout) are retried by the idempotent
/// producer: every record is done and on the broker exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_produce_errors_are_retried_without_duplicates() {
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    kafka.cluster().create_topic("out", 2, 1).expect("topic");
    kafka.cluster().request_errors(
        RDKafkaApiKey::Produce,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        ],
    );
    let relay = util::relay(&kafka, routes(), &[("RELAY_PARTIAL_BATCH", "true")]);
    let response = util::invoke(&relay, two_partitions(20))
        .await
        .expect("answer");
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    let consumed = util::consume(&kafka, &["out"]);
    assert_eq!(consumed.len(), 40, "each record exactly once");
    assert_reported_done_were_acknowledged(&response, 20, &consumed);
}

/// A produce request rejected as too large (the request, not a record, may be at
/// fault): without a dead-letter topic, its records are produced again one by one and
/// all are done; every record reported done is on the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_rejection_is_retried_record_by_record() {
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    kafka.cluster().create_topic("out", 2, 1).expect("topic");
    kafka.cluster().request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE],
    );
    let relay = util::relay(&kafka, routes(), &[("RELAY_PARTIAL_BATCH", "true")]);
    let response = util::invoke(&relay, two_partitions(5))
        .await
        .expect("partial response");
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    let consumed = util::consume(&kafka, &["out"]);
    assert_reported_done_were_acknowledged(&response, 5, &consumed);
}

/// The end of a batch does not wait `linger.ms`: with a 2-second linger, a one-record
/// invocation is answered (acknowledged) long before the linger would have sent it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_of_batch_does_not_linger() {
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    let relay = util::relay(&kafka, routes(), &[("RELAY_PRODUCER_LINGER_MS", "2000")]);
    // The first invocation connects; the second is the one measured.
    for round in 0..2 {
        let event = util::EventBuilder::new()
            .data("src", 0, 10 + round, "insert", "t", json!({"id": round}))
            .build();
        let started = Instant::now();
        let response = util::invoke(&relay, event).await.expect("answered");
        let elapsed = started.elapsed();
        assert!(util::reported(&response).is_empty(), "{response:?}");
        if round == 1 {
            assert!(
                elapsed < Duration::from_millis(1_500),
                "a one-record batch took {elapsed:?}: it waited for linger.ms"
            );
        }
    }
}

/// A batch keeps at most `RELAY_MAX_IN_FLIGHT` messages enqueued and not acknowledged,
/// waiting for the oldest before it produces the next record, and still delivers every
/// message; with a bound above the batch, the whole batch is in flight at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_in_flight_are_bounded() {
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    for (bound, most) in [("7", 7), ("1000", 2 * 60)] {
        let relay = util::relay(&kafka, routes(), &[("RELAY_MAX_IN_FLIGHT", bound)]);
        let outcome = relay
            .process(two_partitions(60), None)
            .await
            .expect("processed");
        assert_eq!(
            (outcome.produced, outcome.not_done, outcome.messages),
            (120, 0, 120),
            "bound {bound}"
        );
        assert_eq!(outcome.most_in_flight, most, "bound {bound}");
    }
    // Both batches, every message once.
    let consumed = util::consume(&kafka, &["out"]);
    assert_eq!(consumed.len(), 2 * 120);
}

/// A bounded batch whose wait for an acknowledgement outlasts the budget produces
/// nothing more: the record it was waiting to produce is reported, not enqueued after
/// the purge, so it cannot reach the broker after the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_wait_past_the_budget_enqueues_nothing_more() {
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    let relay = one_in_flight_on_a_slow_broker(&kafka, &[]).await;
    let response = util::answered_in_time(&relay, two_partitions(3), 2_000).await;
    assert_eq!(
        util::reported(&response),
        vec![("src-0".to_owned(), 10), ("src-1".to_owned(), 10)]
    );
    kafka
        .cluster()
        .broker_round_trip_time(1, Duration::ZERO)
        .expect("rtt");
    // Whatever librdkafka still holds reaches the broker now.
    tokio::time::sleep(Duration::from_millis(4_000)).await;
    let offsets: Vec<(String, String)> = util::consume(&kafka, &["out"])
        .iter()
        .map(source_position)
        .filter(|(_, offset)| offset != "1")
        .collect();
    // The first record was on the wire at the purge (the broker may still write it);
    // nothing after it was handed to the producer.
    assert!(
        offsets
            .iter()
            .all(|o| *o == ("0".to_owned(), "10".to_owned())),
        "enqueued after the budget: {offsets:?}"
    );
}
