//! `cdc-relay esm` against the mock cluster: what it sends a function endpoint, and
//! what it does with each kind of answer. The endpoint here is a scripted function (an
//! HTTP server answering per event); the real function behind `cargo lambda watch` is
//! the end-to-end tier's.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use cdc_relay::modes::esm::{EsmOptions, Mapping};
use cdc_relay::modes::local::{read_topics, EmbeddedKafka};
use cdc_relay::source::LAMBDA_PAYLOAD_LIMIT;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;
use serde_json::Value;

use crate::serve::{cluster, committed, produce_source, SOURCE};

/// How the scripted function answers an event: HTTP status and body.
type Script = dyn Fn(&Value, usize) -> (u16, String) + Send + Sync;

/// What a function waits for before it answers an event.
type Delay = dyn Fn(usize) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync;

/// A function endpoint on loopback that records every event it is sent.
struct Function {
    url: String,
    events: Arc<Mutex<Vec<Value>>>,
}

impl Function {
    async fn start(
        script: impl Fn(&Value, usize) -> (u16, String) + Send + Sync + 'static,
    ) -> Function {
        Function::start_slow(|_| async {}, script).await
    }

    /// A function that answers its `n`th event (from 1) once `delay(n)` completes.
    async fn start_slow<F: Future<Output = ()> + Send + 'static>(
        delay: impl Fn(usize) -> F + Send + Sync + 'static,
        script: impl Fn(&Value, usize) -> (u16, String) + Send + Sync + 'static,
    ) -> Function {
        let script: Arc<Script> = Arc::new(script);
        let delay: Arc<Delay> = Arc::new(move |n| Box::pin(delay(n)));
        let events: Arc<Mutex<Vec<Value>>> = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!(
            "http://{}/2015-03-31/functions/cdc-relay/invocations",
            listener.local_addr().expect("address")
        );
        let recorded = events.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (script, recorded, delay) = (script.clone(), recorded.clone(), delay.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |request: hyper::Request<hyper::body::Incoming>| {
                            let (script, recorded, delay) =
                                (script.clone(), recorded.clone(), delay.clone());
                            async move {
                                let body = request
                                    .into_body()
                                    .collect()
                                    .await
                                    .expect("body")
                                    .to_bytes();
                                let event: Value =
                                    serde_json::from_slice(&body).expect("event is JSON");
                                let (status, answer, n) = {
                                    let mut events = recorded.lock().expect("events");
                                    events.push(event.clone());
                                    let (status, answer) = script(&event, events.len());
                                    (status, answer, events.len())
                                };
                                delay(n).await;
                                let mut response =
                                    hyper::Response::new(Full::new(Bytes::from(answer)));
                                *response.status_mut() =
                                    hyper::StatusCode::from_u16(status).expect("status");
                                Ok::<_, Infallible>(response)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Function { url, events }
    }

    fn events(&self) -> Vec<Value> {
        self.events.lock().expect("events").clone()
    }
}

/// `(partition, offset)` of every record of an event, in the event's order.
fn positions(event: &Value) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    for (key, records) in event["records"].as_object().expect("records map") {
        for r in records.as_array().expect("list") {
            let partition = r["partition"].as_i64().expect("partition");
            assert_eq!(
                key,
                &format!("{SOURCE}-{partition}"),
                "grouped by topic-partition"
            );
            out.push((partition, r["offset"].as_i64().expect("offset")));
        }
    }
    out
}

fn has(event: &Value, partition: i64, offset: i64) -> bool {
    positions(event).contains(&(partition, offset))
}

fn options(kafka: &EmbeddedKafka, function: &Function, group: &str) -> EsmOptions {
    EsmOptions {
        function_url: function.url.clone(),
        brokers: kafka.bootstrap_servers(),
        topics: vec![SOURCE.to_owned()],
        group: group.to_owned(),
        event_source_arn: None,
        batch_size: 100,
        maximum_batching_window_in_seconds: 0.1,
        report_batch_item_failures: true,
        maximum_retry_attempts: -1,
        maximum_record_age_in_seconds: -1,
        bisect_batch_on_function_error: false,
        on_failure: None,
        function_timeout_seconds: 10,
        retry_backoff_ms: 20,
        consumer_properties: Vec::new(),
    }
}

/// The mock cluster with the on-failure topic `esm.failed`.
fn cluster_with_destination() -> EmbeddedKafka {
    let kafka = cluster();
    kafka
        .cluster()
        .create_topic("esm.failed", 1, 1)
        .expect("topic");
    kafka
}

/// The on-failure topic `esm.failed`, read from the start.
fn destination(kafka: &EmbeddedKafka) -> Vec<cdc_relay::modes::local::ConsumedMessage> {
    tokio::task::block_in_place(|| {
        read_topics(
            &kafka.bootstrap_servers(),
            &["esm.failed"],
            Duration::from_secs(10),
        )
    })
    .expect("read the destination")
}

/// Runs the mapping until the group has committed `end` on every partition.
async fn run_until_committed(kafka: &EmbeddedKafka, options: EsmOptions, end: i64) {
    run_until_committed_within(kafka, options, end, Duration::from_secs(30)).await;
}

/// [`run_until_committed`], failing when it takes longer than `budget`.
async fn run_until_committed_within(
    kafka: &EmbeddedKafka,
    options: EsmOptions,
    end: i64,
    budget: Duration,
) {
    let group = options.group.clone();
    let mapping = Mapping::new(options).expect("mapping");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(mapping.run(async move {
        let _ = stopped.await;
    }));
    let until = Instant::now() + budget;
    let mut last = Vec::new();
    while Instant::now() < until {
        last = tokio::task::block_in_place(|| committed(kafka, &group));
        if last.iter().all(|c| *c == Some(end)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop.send(());
    task.await.expect("task").expect("mapping ends cleanly");
    assert_eq!(
        last,
        vec![Some(end); 3],
        "every partition committed to its end"
    );
}

/// Every record reaches the function once, in events of at most BatchSize records
/// grouped by topic-partition in offset order, shaped as Lambda shapes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn esm_invokes_with_msk_events_and_commits() {
    let kafka = cluster();
    produce_source(&kafka, 0, 240);
    let function = Function::start(|_, _| (200, r#"{"batchItemFailures":[]}"#.to_owned())).await;
    // No invocation may time out here: an answer later than the timeout (a starved test
    // machine) is a function error, and its event is invoked again, as Lambda would.
    let mut esm = options(&kafka, &function, "plain");
    esm.function_timeout_seconds = 60;
    run_until_committed(&kafka, esm, 80).await;
    let events = function.events();
    let mut seen: HashMap<(i64, i64), usize> = HashMap::new();
    for event in &events {
        assert_eq!(event["eventSource"], "SelfManagedKafka");
        assert_eq!(event["bootstrapServers"], kafka.bootstrap_servers());
        let positions = positions(event);
        assert!(
            positions.len() <= 100,
            "BatchSize honoured: {}",
            positions.len()
        );
        for pair in positions.windows(2) {
            assert!(pair[0] < pair[1], "offset order within a partition");
        }
        for p in positions {
            *seen.entry(p).or_default() += 1;
        }
        let record = &event["records"][format!("{SOURCE}-0")][0];
        if !record.is_null() {
            assert_eq!(record["timestampType"], "CREATE_TIME");
            let value = base64::engine::general_purpose::STANDARD
                .decode(record["value"].as_str().expect("base64 value"))
                .expect("base64");
            let doc: Value = serde_json::from_slice(&value).expect("the DMS record");
            assert_eq!(doc["metadata"]["table-name"], "orders");
        }
    }
    assert_eq!(seen.len(), 240, "every record sent");
    let mut twice: Vec<_> = seen.iter().filter(|(_, &n)| n > 1).collect();
    twice.sort_unstable();
    assert!(
        twice.is_empty(),
        "no record sent twice: (partition, offset) and times {twice:?}, in {} events of {:?} records",
        events.len(),
        events.iter().map(|e| positions(e).len()).collect::<Vec<_>>()
    );
}

/// A shutdown during an invocation waits for it (the function may still be running it:
/// handing its partitions over now would let their next owner invoke the same records at
/// the same time), invokes nothing more, and commits what the invocation did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_waits_for_the_invocation_in_flight() {
    let kafka = cluster();
    produce_source(&kafka, 0, 30);
    // When the function answered its first event.
    let answered: Arc<Mutex<Option<Instant>>> = Arc::default();
    let noted = answered.clone();
    let function = Function::start_slow(
        move |n| {
            let noted = noted.clone();
            async move {
                if n == 1 {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    *noted.lock().expect("answered") = Some(Instant::now());
                }
            }
        },
        |_, _| (200, r#"{"batchItemFailures":[]}"#.to_owned()),
    )
    .await;
    let mapping = Mapping::new(options(&kafka, &function, "stopping")).expect("mapping");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(mapping.run(async move {
        let _ = stopped.await;
    }));
    let until = Instant::now() + Duration::from_secs(30);
    while function.events().is_empty() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!function.events().is_empty(), "an invocation under way");
    let _ = stop.send(());
    task.await.expect("task").expect("mapping ends cleanly");
    let ended = Instant::now();
    let events = function.events();
    assert_eq!(events.len(), 1, "nothing invoked after the shutdown");
    let answered = *answered.lock().expect("answered");
    assert!(
        answered.is_some_and(|at| at <= ended),
        "the invocation in flight was waited for (answered {answered:?}, ended {ended:?})"
    );
    let committed = tokio::task::block_in_place(|| committed(&kafka, "stopping"));
    for (partition, offset) in positions(&events[0]) {
        let index = usize::try_from(partition).expect("a partition");
        assert!(
            committed[index].is_some_and(|c| c > offset),
            "partition {partition}: offset {offset} invoked, committed {:?}",
            committed[index]
        );
    }
}

/// A partition revoked during an invocation is not invoked again by the member that lost
/// it: the first invocation takes 8 s and fails; meanwhile a second member joins, and
/// the revocation is served in the backoff that follows (never during the invocation:
/// two members would then invoke one partition at once). The retry leaves the lost
/// partition out, its new owner invokes it, and no record is invoked successfully twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_a_partition_lost_during_an_invocation_are_not_invoked_again() {
    let kafka = cluster();
    produce_source(&kafka, 0, 30);
    let ok = || (200, r#"{"batchItemFailures":[]}"#.to_owned());
    let second = Function::start(move |_, _| ok()).await;
    let first = Function::start_slow(
        |n| tokio::time::sleep(Duration::from_secs(if n == 1 { 8 } else { 0 })),
        move |_, n| {
            if n == 1 {
                (500, "slow and failed".to_owned())
            } else {
                ok()
            }
        },
    )
    .await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let member = |function: &Function| {
        let mut options = options(&kafka, function, "rebalanced");
        options.function_timeout_seconds = 30;
        options.retry_backoff_ms = 1000;
        // The mock cluster waits a session timeout less 1 s for a new member.
        options.consumer_properties = ["session.timeout.ms=6000", "heartbeat.interval.ms=1000"]
            .map(str::to_owned)
            .to_vec();
        let mapping = Mapping::new(options).expect("mapping");
        let mut stopped = stopped.clone();
        tokio::spawn(mapping.run(async move {
            let _ = stopped.wait_for(|s| *s).await;
        }))
    };
    let a = member(&first);
    while first.events().is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let b = member(&second);
    let until = Instant::now() + Duration::from_secs(40);
    let mut last = Vec::new();
    while Instant::now() < until {
        last = tokio::task::block_in_place(|| committed(&kafka, "rebalanced"));
        if last.iter().all(|c| *c == Some(10)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop.send(true);
    a.await.expect("task").expect("first member ends cleanly");
    b.await.expect("task").expect("second member ends cleanly");
    assert_eq!(
        last,
        vec![Some(10); 3],
        "every partition committed to its end"
    );
    let second_events = second.events();
    assert!(
        !second_events.is_empty(),
        "the second member took a partition"
    );
    let moved: Vec<(i64, i64)> = second_events.iter().flat_map(positions).collect();
    assert!(
        moved.iter().all(|p| has(&first.events()[0], p.0, p.1)),
        "the partition that moved was in the failed invocation"
    );
    let mut done: HashMap<(i64, i64), usize> = HashMap::new();
    for event in first.events().iter().skip(1).chain(&second_events) {
        for p in positions(event) {
            *done.entry(p).or_default() += 1;
        }
    }
    assert_eq!(done.len(), 30, "every record invoked successfully");
    let twice: Vec<_> = done.iter().filter(|(_, &n)| n > 1).collect();
    assert!(
        twice.is_empty(),
        "records of a lost partition invoked again: {twice:?}"
    );
}

/// With ReportBatchItemFailures, a reported offset resumes its partition from there
/// (and only that partition); without it, the same answer means success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reported_failures_resume_their_partition_from_the_reported_offset() {
    let kafka = cluster();
    produce_source(&kafka, 0, 60);
    let report = |event: &Value, n: usize| {
        if n == 1 && has(event, 1, 7) {
            (
                200,
                format!(
                    r#"{{"batchItemFailures":[{{"itemIdentifier":{{"partition":"{SOURCE}-1","offset":7}}}}]}}"#
                ),
            )
        } else {
            (200, r#"{"batchItemFailures":[]}"#.to_owned())
        }
    };
    let function = Function::start(report).await;
    let mut opts = options(&kafka, &function, "partial");
    opts.batch_size = 60;
    opts.maximum_batching_window_in_seconds = 1.0;
    run_until_committed(&kafka, opts, 20).await;
    let events = function.events();
    assert!(events.len() >= 2, "{} invocations", events.len());
    assert!(
        has(&events[0], 1, 7),
        "the first event held the reported record"
    );
    let retried = positions(&events[1]);
    let expected: Vec<(i64, i64)> = (7..20).map(|o| (1, o)).collect();
    assert_eq!(
        retried, expected,
        "only partition 1, from offset 7 to the batch's end"
    );

    let kafka = cluster();
    produce_source(&kafka, 0, 60);
    let function = Function::start(report).await;
    let mut opts = options(&kafka, &function, "ignored");
    opts.report_batch_item_failures = false;
    opts.batch_size = 60;
    opts.maximum_batching_window_in_seconds = 1.0;
    run_until_committed(&kafka, opts, 20).await;
    let sent: usize = function.events().iter().map(|e| positions(e).len()).sum();
    assert_eq!(
        sent, 60,
        "without ReportBatchItemFailures the answer is a success"
    );
}

/// A function error retries the whole batch; after MaximumRetryAttempts the records go
/// to the on-failure topic with their source and the failure, and the partitions move
/// on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_bounded_and_discarded_records_reach_the_destination() {
    let kafka = cluster_with_destination();
    produce_source(&kafka, 0, 30);
    let function = Function::start(|event, _| {
        if has(event, 2, 4) {
            (
                500,
                r#"{"errorType":"Poison","errorMessage":"p2 o4"}"#.to_owned(),
            )
        } else {
            (200, String::new())
        }
    })
    .await;
    let mut opts = options(&kafka, &function, "bounded");
    opts.batch_size = 30;
    opts.maximum_batching_window_in_seconds = 1.0;
    opts.maximum_retry_attempts = 2;
    opts.on_failure = Some("kafka://esm.failed".to_owned());
    run_until_committed(&kafka, opts, 10).await;
    let failing: Vec<_> = function
        .events()
        .into_iter()
        .filter(|e| has(e, 2, 4))
        .collect();
    assert_eq!(failing.len(), 3, "the first attempt and 2 retries");
    let discarded = destination(&kafka);
    assert_eq!(
        discarded.len(),
        failing[0]["records"].as_object().map_or(0, |r| r
            .values()
            .map(|l| l.as_array().map_or(0, Vec::len))
            .sum()),
        "the whole batch discarded"
    );
    let poison = discarded
        .iter()
        .find(|m| {
            m.header("esm-source-partition") == Some("2")
                && m.header("esm-source-offset") == Some("4")
        })
        .expect("the failing record is in the destination");
    assert_eq!(poison.header("esm-source-topic"), Some(SOURCE));
    assert_eq!(poison.header("esm-failure"), Some("retries exhausted"));
    assert_eq!(poison.header("esm-retry-attempts"), Some("2"));
    let value: Value = serde_json::from_slice(poison.value.as_deref().expect("value"))
        .expect("the record as it was");
    assert_eq!(
        value["data"]["id"], 14,
        "id 14 is partition 2's fifth record"
    );
}

/// A record past the maximum age that the on-failure destination refuses (larger than
/// the destination producer takes) holds back the later records of its partition: they
/// are not invoked past it (they come again behind it after the backoff), while a young
/// record of another partition is invoked, and so is a young record before a refused
/// one in its partition (timestamps need not rise with offsets), never skipped. (The
/// rest of an attempt goes round again after a discard, where a partition revoked
/// meanwhile is left out the same way; this test does not revoke one.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn young_records_wait_behind_an_old_one_the_destination_refused() {
    let kafka = cluster_with_destination();
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers())
        .set("message.max.bytes", "4000000")
        .create()
        .expect("source producer");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let value = |id: u64, filler: usize| {
        serde_json::json!({
            "data": {"id": id, "blob": "x".repeat(filler)},
            "metadata": {"record-type": "data", "operation": "insert",
                "schema-name": "public", "table-name": "orders"}
        })
        .to_string()
    };
    // Partition 0: an hour-old record too large for the destination, then two young
    // ones; partition 1: a young one; partition 2: a young one, then an old one too
    // large for the destination.
    let records = [
        (0, now_ms - 3_600_000, value(1, 1_500_000)),
        (0, now_ms, value(2, 10)),
        (0, now_ms, value(3, 10)),
        (1, now_ms, value(4, 10)),
        (2, now_ms, value(5, 10)),
        (2, now_ms - 3_600_000, value(6, 1_500_000)),
    ];
    for (partition, timestamp, value) in &records {
        producer
            .send(
                BaseRecord::<str, str>::to(SOURCE)
                    .payload(value)
                    .partition(*partition)
                    .timestamp(*timestamp),
            )
            .map_err(|(e, _)| e)
            .expect("enqueue");
    }
    producer.flush(Duration::from_secs(10)).expect("flush");
    let function = Function::start(|_, _| (200, r#"{"batchItemFailures":[]}"#.to_owned())).await;
    let mut opts = options(&kafka, &function, "aged");
    opts.maximum_record_age_in_seconds = 60;
    opts.on_failure = Some("kafka://esm.failed".to_owned());
    opts.retry_backoff_ms = 60_000;
    let mapping = Mapping::new(opts).expect("mapping");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(mapping.run(async move {
        let _ = stopped.await;
    }));
    let until = Instant::now() + Duration::from_secs(20);
    let both = |events: &[Value]| {
        events.iter().any(|e| has(e, 1, 0)) && events.iter().any(|e| has(e, 2, 0))
    };
    while Instant::now() < until && !both(&function.events()) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Time for anything else the attempt would invoke.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let _ = stop.send(());
    task.await.expect("task").expect("mapping ends cleanly");
    let events = function.events();
    assert!(
        events.iter().any(|e| has(e, 1, 0)),
        "the other partition's young record is invoked"
    );
    assert!(
        events.iter().any(|e| has(e, 2, 0)),
        "a young record before a refused old one is invoked, not skipped"
    );
    let invoked: Vec<(i64, i64)> = events.iter().flat_map(positions).collect();
    assert!(
        !invoked.iter().any(|p| p.0 == 0),
        "partition 0 invoked past its refused record: {invoked:?}"
    );
    assert!(destination(&kafka).is_empty(), "the destination refused it");
}

/// With BisectBatchOnFunctionError, a failing batch is halved until the failing record
/// is alone: only it is discarded; every other record is invoked and done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bisection_isolates_the_failing_record() {
    let kafka = cluster_with_destination();
    produce_source(&kafka, 0, 48);
    let function = Function::start(|event, _| {
        if has(event, 0, 9) {
            (500, r#"{"errorType":"Poison"}"#.to_owned())
        } else {
            (200, String::new())
        }
    })
    .await;
    let mut opts = options(&kafka, &function, "bisect");
    opts.batch_size = 48;
    opts.maximum_batching_window_in_seconds = 1.0;
    opts.maximum_retry_attempts = 1;
    opts.bisect_batch_on_function_error = true;
    opts.on_failure = Some("kafka://esm.failed".to_owned());
    run_until_committed(&kafka, opts, 16).await;
    let discarded = destination(&kafka);
    let where_: Vec<_> = discarded
        .iter()
        .map(|m| {
            (
                m.header("esm-source-partition").map(str::to_owned),
                m.header("esm-source-offset").map(str::to_owned),
            )
        })
        .collect();
    assert_eq!(
        where_,
        vec![(Some("0".to_owned()), Some("9".to_owned()))],
        "only the failing record"
    );
    let events = function.events();
    let alone = events
        .iter()
        .filter(|e| positions(e) == vec![(0, 9)])
        .count();
    assert_eq!(alone, 2, "the failing record alone: once, then one retry");
    let done: std::collections::HashSet<(i64, i64)> = events
        .iter()
        .filter(|e| !has(e, 0, 9))
        .flat_map(positions)
        .collect();
    assert_eq!(
        done.len(),
        47,
        "every other record succeeded once bisected away"
    );
}

/// A chain of invocations longer than `max.poll.interval.ms` (a bisection: eleven
/// invocations of 1.5 s each, every one within the 5 s function timeout, against a 6 s
/// poll interval) keeps the member in its group: the group's events are served between
/// invocations. Without that, librdkafka counts the member stalled 6 s into the chain
/// and it leaves the group; its offsets are then refused, the batch is read again and
/// the chain starts over, so the group never commits and records are invoked twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_invocations_longer_than_the_poll_interval_keeps_the_member() {
    let kafka = cluster_with_destination();
    produce_source(&kafka, 0, 30);
    let function = Function::start_slow(
        |_| tokio::time::sleep(Duration::from_millis(1500)),
        |event, _| {
            if has(event, 0, 9) {
                (500, r#"{"errorType":"Poison"}"#.to_owned())
            } else {
                (200, r#"{"batchItemFailures":[]}"#.to_owned())
            }
        },
    )
    .await;
    let mut opts = options(&kafka, &function, "chained");
    opts.batch_size = 30;
    opts.maximum_batching_window_in_seconds = 1.0;
    opts.maximum_retry_attempts = 0;
    opts.bisect_batch_on_function_error = true;
    opts.on_failure = Some("kafka://esm.failed".to_owned());
    opts.function_timeout_seconds = 5;
    opts.consumer_properties = [
        "session.timeout.ms=6000",
        "heartbeat.interval.ms=1000",
        "max.poll.interval.ms=6000",
    ]
    .map(str::to_owned)
    .to_vec();
    run_until_committed_within(&kafka, opts, 10, Duration::from_secs(60)).await;
    let events = function.events();
    assert!(
        events.len() >= 10,
        "a chain of invocations: {} events",
        events.len()
    );
    let mut done: HashMap<(i64, i64), usize> = HashMap::new();
    for event in events.iter().filter(|e| !has(e, 0, 9)) {
        for p in positions(event) {
            *done.entry(p).or_default() += 1;
        }
    }
    assert_eq!(done.len(), 29, "every other record invoked successfully");
    let twice: Vec<_> = done.iter().filter(|(_, &n)| n > 1).collect();
    assert!(twice.is_empty(), "records invoked twice: {twice:?}");
    assert_eq!(
        destination(&kafka).len(),
        1,
        "the failing record discarded once"
    );
}

/// Events stay within the 6 MB invocation payload: a record that would push one past
/// it starts the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stay_within_the_payload_limit() {
    let kafka = cluster();
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers())
        .set("message.max.bytes", "2000000")
        .create()
        .expect("producer");
    let value = vec![b'x'; 700_000];
    for i in 0..24_i32 {
        producer
            .send(
                BaseRecord::<str, [u8]>::to(SOURCE)
                    .key("k")
                    .payload(&value)
                    .partition(i % 3),
            )
            .map_err(|(e, _)| e)
            .expect("enqueue");
    }
    producer.flush(Duration::from_secs(10)).expect("flush");
    let sizes: Arc<Mutex<Vec<usize>>> = Arc::default();
    let seen = sizes.clone();
    let function = Function::start(move |event, _| {
        seen.lock().expect("sizes").push(event.to_string().len());
        (200, String::new())
    })
    .await;
    let mut opts = options(&kafka, &function, "payload");
    opts.maximum_batching_window_in_seconds = 2.0;
    run_until_committed(&kafka, opts, 8).await;
    let sizes = sizes.lock().expect("sizes").clone();
    assert!(
        sizes.iter().all(|&s| s <= LAMBDA_PAYLOAD_LIMIT),
        "{sizes:?}"
    );
    assert!(
        sizes.len() >= 4,
        "24 records of 933 KB in base64 need at least 4 events: {sizes:?}"
    );
    assert!(
        sizes.iter().any(|&s| s > LAMBDA_PAYLOAD_LIMIT / 2),
        "events are filled: {sizes:?}"
    );
}
