//! `cdc-relay serve` against the mock cluster: a consumer group over DMS topics feeding
//! the same pipeline, committing only what is done.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cdc_relay::config::{Overrides, ServeSettings, Settings};
use cdc_relay::modes::local::{read_topics, ConsumedMessage, EmbeddedKafka};
use cdc_relay::modes::serve::{Server, SHUTDOWN_EPILOGUE};
use cdc_relay::ops::Metrics;
use cdc_relay::relay::Relay;
use cdc_relay::transform::{header, Routes};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCoordinator;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::json;

pub const SOURCE: &str = "dms.orders";
const OUT: &str = "orders.out";
const PARTITIONS: i32 = 3;
const ROUTES: &str =
    "[[route]]\ntable = \"public.orders\"\ntopic = \"orders.out\"\nkey = [\"id\"]\n";

/// The mock cluster with the source and output topics.
pub fn cluster() -> EmbeddedKafka {
    let kafka = EmbeddedKafka::start(3).expect("mock cluster");
    for topic in [SOURCE, OUT] {
        kafka
            .cluster()
            .create_topic(topic, PARTITIONS, 1)
            .expect("topic");
    }
    kafka
}

/// The mock cluster with the source and output topics, every broker of which answers
/// each request `round_trip` late.
fn slow_cluster(round_trip: Duration) -> EmbeddedKafka {
    let kafka = cluster();
    for broker in 1..=3 {
        kafka
            .cluster()
            .broker_round_trip_time(broker, round_trip)
            .expect("round trip time");
    }
    kafka
}

/// Produces `count` DMS insert records for `public.orders` into the source topic,
/// spread over its partitions, starting at order id `first`.
pub fn produce_source(kafka: &EmbeddedKafka, first: u64, count: u64) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers())
        .create()
        .expect("source producer");
    for id in first..first + count {
        let value = json!({
            "data": {"id": id, "amount": format!("{id}.50")},
            "metadata": {
                "timestamp": "2026-11-23T10:00:00Z", "record-type": "data",
                "operation": "insert", "partition-key-type": "schema-table",
                "schema-name": "public", "table-name": "orders", "transaction-id": id,
            }
        })
        .to_string();
        let key = format!("public.orders.{id}");
        let partition = (id % PARTITIONS as u64) as i32;
        producer
            .send(
                BaseRecord::to(SOURCE)
                    .key(&key)
                    .payload(&value)
                    .partition(partition),
            )
            .map_err(|(e, _)| e)
            .expect("enqueue");
    }
    producer.flush(Duration::from_secs(10)).expect("flush");
}

/// Produces one record of up to 4 MB to the source topic's `partition`.
pub fn produce_large(kafka: &EmbeddedKafka, partition: i32, key: &str, value: &str) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers())
        .set("message.max.bytes", "4000000")
        .create()
        .expect("source producer");
    producer
        .send(
            BaseRecord::to(SOURCE)
                .key(key)
                .payload(value)
                .partition(partition),
        )
        .map_err(|(e, _)| e)
        .expect("enqueue");
    producer.flush(Duration::from_secs(10)).expect("flush");
}

/// The `id` of each output message's order, and how often each appears.
fn ids(messages: &[ConsumedMessage]) -> HashMap<u64, usize> {
    let mut ids = HashMap::new();
    for m in messages {
        let value: serde_json::Value =
            serde_json::from_slice(m.value.as_deref().expect("value")).expect("json");
        let id = value["data"]["id"].as_u64().expect("id");
        *ids.entry(id).or_insert(0) += 1;
    }
    ids
}

/// Reads the output topic until it holds `count` messages or `timeout` passes.
fn wait_for(kafka: &EmbeddedKafka, count: usize, timeout: Duration) -> Vec<ConsumedMessage> {
    let until = Instant::now() + timeout;
    loop {
        let messages = read_topics(&kafka.bootstrap_servers(), &[OUT], Duration::from_secs(10))
            .expect("read back");
        if messages.len() >= count || Instant::now() > until {
            return messages;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The group's committed offset per source partition (`None`: nothing committed).
pub fn committed(kafka: &EmbeddedKafka, group: &str) -> Vec<Option<i64>> {
    committed_in(kafka, group, PARTITIONS)
}

/// The group's committed offset in each of the source topic's first `partitions`.
fn committed_in(kafka: &EmbeddedKafka, group: &str, partitions: i32) -> Vec<Option<i64>> {
    committed_by(&group_reader(kafka, group), partitions)
}

/// A consumer of `group` that only reads its committed offsets (it never joins).
fn group_reader(kafka: &EmbeddedKafka, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers())
        .set("group.id", group)
        .create()
        .expect("consumer")
}

/// The committed offsets `consumer`'s group has in the source topic's first `partitions`.
fn committed_by(consumer: &BaseConsumer, partitions: i32) -> Vec<Option<i64>> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(SOURCE, p);
    }
    let offsets = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    (0..partitions)
        .map(
            |p| match offsets.find_partition(SOURCE, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => Some(o),
                _ => None,
            },
        )
        .collect()
}

/// A serving loop over `routes`, configured by `vars` (later ones win), as `serve` makes it.
fn server(vars: &[(&str, &str)], routes: &str) -> Result<Server, cdc_relay::Error> {
    let vars = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let (serve, settings) = Server::settings_from(vars).expect("settings");
    let routes = Routes::parse(routes, "test").expect("routes");
    Server::new(Arc::new(Relay::with_routes(settings, routes)), serve)
}

/// A serving loop in this process; stopped by sending on the returned channel.
struct Serving {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), cdc_relay::Error>>,
    metrics: Arc<Metrics>,
}

impl Serving {
    fn start(kafka: &EmbeddedKafka, group: &str, vars: &[(&str, &str)]) -> Serving {
        Serving::start_with(kafka, group, ROUTES, vars)
    }

    /// With other routes; `vars` override the defaults here (one with an empty value
    /// unsets it: serve's own default applies).
    fn start_with(
        kafka: &EmbeddedKafka,
        group: &str,
        routes: &str,
        vars: &[(&str, &str)],
    ) -> Serving {
        let brokers = kafka.bootstrap_servers();
        let mut all = vec![
            ("RELAY_BROKERS", brokers.as_str()),
            ("RELAY_SOURCE_TOPICS", SOURCE),
            ("RELAY_GROUP_ID", group),
            ("RELAY_HTTP_ADDR", "off"),
            ("RELAY_BATCH_WINDOW_MS", "5"),
            ("RELAY_RETRY_BACKOFF_MS", "100"),
            // The mock cluster waits a session timeout, less a second, for members to
            // join a rebalance.
            ("RELAY_CONSUMER_SESSION_TIMEOUT_MS", "3000"),
            ("RELAY_CONSUMER_HEARTBEAT_INTERVAL_MS", "300"),
        ];
        all.retain(|(name, _)| !vars.iter().any(|(set, _)| set == name));
        all.extend(vars.iter().filter(|(_, value)| !value.is_empty()));
        let server = server(&all, routes).expect("server");
        let metrics = server.metrics();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        Serving {
            stop,
            task,
            metrics,
        }
    }

    /// Stops it, whatever it returns: how long that took, and what it returned.
    async fn stop_timed(self) -> (Duration, Result<(), cdc_relay::Error>) {
        let stopping = Instant::now();
        let _ = self.stop.send(());
        let ended = tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("serve returns")
            .expect("serve task");
        (stopping.elapsed(), ended)
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task
            .await
            .expect("serve task")
            .expect("serve ends cleanly");
    }
}

/// Every record becomes one message, and the group's offsets reach the end of each
/// partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_relays_every_record_once_and_commits_the_end() {
    let kafka = cluster();
    produce_source(&kafka, 0, 300);
    let serving = Serving::start(&kafka, "relays", &[("RELAY_BATCH_SIZE", "40")]);
    let messages = tokio::task::block_in_place(|| wait_for(&kafka, 300, Duration::from_secs(30)));
    serving.stop().await;
    let ids = ids(&messages);
    assert_eq!(ids.len(), 300, "every record relayed");
    assert!(ids.values().all(|&n| n == 1), "no record relayed twice");
    for m in &messages {
        assert!(
            m.header(header::EVENT_ID).is_some(),
            "event id on every message"
        );
    }
    let committed = tokio::task::block_in_place(|| committed(&kafka, "relays"));
    assert_eq!(
        committed,
        vec![Some(100); 3],
        "offsets committed to each partition's end"
    );
}

/// At least once, offsets commit on their own interval, not after every batch: with a
/// minute's interval, thirty batches are relayed and nothing is committed yet; leaving
/// the group commits what is done. With a short interval, what is done is committed
/// while the member idles, without a record to wake it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_commit_on_their_interval_not_per_batch() {
    let kafka = cluster();
    produce_source(&kafka, 0, 300);
    let serving = Serving::start(
        &kafka,
        "interval",
        &[
            ("RELAY_BATCH_SIZE", "10"),
            ("RELAY_COMMIT_INTERVAL_MS", "60000"),
        ],
    );
    let messages = tokio::task::block_in_place(|| wait_for(&kafka, 300, Duration::from_secs(30)));
    assert_eq!(ids(&messages).len(), 300, "every record relayed");
    let meanwhile = tokio::task::block_in_place(|| committed(&kafka, "interval"));
    assert_eq!(
        meanwhile,
        vec![None; 3],
        "no commit before the interval, whatever the batches"
    );
    serving.stop().await;
    let left = tokio::task::block_in_place(|| committed(&kafka, "interval"));
    assert_eq!(left, vec![Some(100); 3], "leaving commits what is done");

    produce_source(&kafka, 300, 300);
    let serving = Serving::start(
        &kafka,
        "interval",
        &[
            ("RELAY_BATCH_SIZE", "10"),
            ("RELAY_COMMIT_INTERVAL_MS", "200"),
        ],
    );
    let messages = tokio::task::block_in_place(|| wait_for(&kafka, 600, Duration::from_secs(30)));
    assert_eq!(ids(&messages).len(), 600, "the next 300 relayed");
    let until = Instant::now() + Duration::from_secs(10);
    let mut idle = Vec::new();
    while Instant::now() < until {
        idle = tokio::task::block_in_place(|| committed(&kafka, "interval"));
        if idle == vec![Some(200); 3] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        idle,
        vec![Some(200); 3],
        "committed within the interval while idle, before leaving"
    );
    serving.stop().await;
}

/// While idle, the offsets done are committed when their interval is due, not at the read
/// loop's idle tick (1 s): the wait for the next record wakes for the commit. With a 100 ms
/// interval the commit must be seen within 650 ms of the batch being done; without that
/// wake it comes about 1 s after. The offsets are read by one consumer made beforehand,
/// so that each look is one request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_member_commits_when_due_not_at_its_idle_tick() {
    let kafka = cluster();
    let serving = Serving::start(
        &kafka,
        "idle-wake",
        &[
            ("RELAY_COMMIT_INTERVAL_MS", "100"),
            // The 30 records in one batch, as a rule.
            ("RELAY_BATCH_WINDOW_MS", "150"),
        ],
    );
    let reader = group_reader(&kafka, "idle-wake");
    let committed_as = |expected: Vec<Option<i64>>, timeout: Duration| {
        tokio::task::block_in_place(|| {
            let until = Instant::now() + timeout;
            loop {
                let now = committed_by(&reader, PARTITIONS);
                if now == expected || Instant::now() > until {
                    return (now, Instant::now());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    // A first record per partition: the member is in the group, has relayed and
    // committed, and then waits for records with nothing to commit.
    produce_source(&kafka, 0, 3);
    let (first, _) = committed_as(vec![Some(1); 3], Duration::from_secs(30));
    assert_eq!(first, vec![Some(1); 3], "the first records committed");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let before = serving.metrics.produced.get();
    produce_source(&kafka, 3, 30);
    let until = Instant::now() + Duration::from_secs(30);
    while serving.metrics.produced.get() < before + 30 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let done = Instant::now();
    assert_eq!(
        serving.metrics.produced.get(),
        before + 30,
        "every record produced"
    );
    let (then, seen) = committed_as(vec![Some(11); 3], Duration::from_secs(5));
    serving.stop().await;
    assert_eq!(then, vec![Some(11); 3], "the batch committed while idle");
    let after = seen.duration_since(done);
    assert!(
        after < Duration::from_millis(650),
        "committed {after:?} after the batch was done: at the idle tick, not when due"
    );
}

/// At least once, a batch in flight does not hold back the commit of the batches before
/// it: they are committed when due (liveness counts commits), not when it ends. The
/// downstream cluster answers every request 3 s late, so each batch takes that long; the
/// source cluster answers at once. With serve's default batch window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_in_flight_does_not_hold_back_the_commit_before_it() {
    let (source, downstream) = (cluster(), slow_cluster(Duration::from_secs(3)));
    produce_source(&source, 0, 300);
    let source_brokers = source.bootstrap_servers();
    let serving = Serving::start(
        &downstream,
        "in-flight",
        &[
            ("RELAY_SOURCE_BROKERS", source_brokers.as_str()),
            ("RELAY_BATCH_SIZE", "30"),
            ("RELAY_COMMIT_INTERVAL_MS", "200"),
            ("RELAY_BATCH_WINDOW_MS", ""),
        ],
    );
    let until = Instant::now() + Duration::from_secs(60);
    while serving.metrics.records.get() == 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let done_then = serving.metrics.records.get();
    assert!(done_then > 0, "a first batch done");
    let until = Instant::now() + Duration::from_secs(20);
    let mut sum = 0;
    while sum == 0 && Instant::now() < until {
        sum = tokio::task::block_in_place(|| committed(&source, "in-flight"))
            .iter()
            .map(|c| c.unwrap_or(0))
            .sum();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let done_at_commit = serving.metrics.records.get();
    serving.stop().await;
    assert_eq!(sum, done_then as i64, "the first batch's records committed");
    assert_eq!(
        done_at_commit, done_then,
        "committed while the next batch was in flight, not after it"
    );
}

/// A downstream cluster slower to answer than the topic check waits (every request 3 s
/// late, the check 2 s) costs a batch one unanswered check, not one per record: every
/// record of the first batch is done, none failed for a batch budget spent on checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_cluster_costs_one_topic_check_per_batch() {
    let (source, downstream) = (cluster(), slow_cluster(Duration::from_secs(3)));
    produce_source(&source, 0, 30);
    let source_brokers = source.bootstrap_servers();
    let serving = Serving::start(
        &downstream,
        "slow",
        &[
            ("RELAY_SOURCE_BROKERS", source_brokers.as_str()),
            ("RELAY_BATCH_SIZE", "30"),
            ("RELAY_BATCH_WINDOW_MS", "1000"),
        ],
    );
    let until = Instant::now() + Duration::from_secs(90);
    while serving.metrics.records.get() < 30 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (records, produced, failed) = (
        serving.metrics.records.get(),
        serving.metrics.produced.get(),
        serving.metrics.failed.get(),
    );
    serving.stop().await;
    assert_eq!(
        (records, produced, failed),
        (30, 30, 0),
        "one batch of 30 records, all produced, none failed"
    );
}

/// An infrastructure fault (the output topic refuses the relay) commits nothing past
/// the first record not done; once it clears, the partition is read again from there
/// and every record is relayed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_partition_is_read_again_from_its_first_record_not_done() {
    let kafka = cluster();
    produce_source(&kafka, 0, 60);
    kafka
        .cluster()
        .topic_error(
            OUT,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
        )
        .expect("topic error");
    let serving = Serving::start(&kafka, "retries", &[("RELAY_BATCH_SIZE", "30")]);
    let until = Instant::now() + Duration::from_secs(20);
    while serving.metrics.failed.get() < 60 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        serving.metrics.failed.get() >= 60,
        "every record failed at least once while the topic refused"
    );
    let before = tokio::task::block_in_place(|| committed(&kafka, "retries"));
    assert_eq!(
        before,
        vec![None; 3],
        "nothing committed while nothing is done"
    );
    kafka
        .cluster()
        .topic_error(OUT, RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR)
        .expect("clear topic error");
    let messages = tokio::task::block_in_place(|| wait_for(&kafka, 60, Duration::from_secs(30)));
    serving.stop().await;
    let ids = ids(&messages);
    assert_eq!(
        ids.len(),
        60,
        "every record relayed after the fault cleared"
    );
    assert!(ids.values().all(|&n| n == 1), "no record relayed twice");
    let after = tokio::task::block_in_place(|| committed(&kafka, "retries"));
    assert_eq!(after, vec![Some(20); 3]);
}

/// Two members of one group: the second joins while the first serves, partitions move
/// (cooperative-sticky), and every record is relayed once: a partition is committed up
/// to what is done before it is given away, and the new owner starts there. With a
/// commit after every batch (`RELAY_COMMIT_INTERVAL_MS=0`): with the default interval,
/// records done within it wait for the commit at the revocation, which the mock cluster
/// refuses under load when another rebalance is under way (REBALANCE_IN_PROGRESS), and
/// the new owner relays them again (docs/reliability.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebalance_neither_loses_nor_repeats_records() {
    let kafka = cluster();
    produce_source(&kafka, 0, 150);
    let vars = [
        ("RELAY_BATCH_SIZE", "25"),
        ("RELAY_COMMIT_INTERVAL_MS", "0"),
    ];
    let first = Serving::start(&kafka, "rebalance", &vars);
    tokio::task::block_in_place(|| wait_for(&kafka, 150, Duration::from_secs(30)));
    let second = Serving::start(&kafka, "rebalance", &vars);
    let until = Instant::now() + Duration::from_secs(30);
    while second.metrics.assigned.get() == 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        second.metrics.assigned.get() > 0,
        "the second member got partitions"
    );
    assert_eq!(
        first.metrics.assigned.get() + second.metrics.assigned.get(),
        i64::from(PARTITIONS),
        "every partition has one owner"
    );
    produce_source(&kafka, 150, 150);
    tokio::task::block_in_place(|| wait_for(&kafka, 300, Duration::from_secs(30)));
    assert!(
        second.metrics.records.get() > 0,
        "the second member relayed records after the rebalance"
    );
    // The first member leaves: the second takes every partition from the committed offsets.
    first.stop().await;
    produce_source(&kafka, 300, 60);
    let messages_after =
        tokio::task::block_in_place(|| wait_for(&kafka, 360, Duration::from_secs(30)));
    second.stop().await;
    let ids = ids(&messages_after);
    let missing: Vec<u64> = (0..360).filter(|id| !ids.contains_key(id)).collect();
    let committed_at_end = tokio::task::block_in_place(|| committed(&kafka, "rebalance"));
    assert_eq!(
        ids.len(),
        360,
        "every record relayed; missing {missing:?}, committed {committed_at_end:?}"
    );
    let repeated: Vec<_> = ids.iter().filter(|(_, &n)| n > 1).collect();
    assert!(repeated.is_empty(), "records relayed twice: {repeated:?}");
    let committed = tokio::task::block_in_place(|| committed(&kafka, "rebalance"));
    assert_eq!(committed, vec![Some(120); 3]);
}

/// Exactly once on the mock cluster: batches go through the transactional producer
/// (begin, produce, offsets to the transaction, commit) and every record is relayed
/// once, none aborted. What this cannot show: the mock cluster accepts transactions but
/// neither stores transactional offsets nor hides aborted messages, so a plain producer
/// would pass too. The crash test, against a broker that writes transaction markers, is
/// `exactly_once_crash` in the end-to-end tier (docs/reliability.md, "Exactly once under crashes").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_relays_through_transactions() {
    let kafka = cluster();
    produce_source(&kafka, 0, 120);
    let serving = Serving::start(
        &kafka,
        "transactions",
        &[("RELAY_BATCH_SIZE", "30"), ("RELAY_EXACTLY_ONCE", "true")],
    );
    let messages = tokio::task::block_in_place(|| wait_for(&kafka, 120, Duration::from_secs(30)));
    let metrics = serving.metrics.clone();
    serving.stop().await;
    let ids = ids(&messages);
    assert_eq!(ids.len(), 120);
    assert!(ids.values().all(|&n| n == 1));
    assert_eq!(metrics.aborted.get(), 0);
    assert_eq!(metrics.produced.get(), 120, "counted once, when committed");
}

/// `/metrics` counts what the loop did and shows lag per partition; `/healthz/ready`
/// says ready while partitions are assigned and records get through, and not while the
/// output topic refuses every record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_report_the_loop() {
    let kafka = cluster();
    // The output topic refuses the relay until the middle of the test.
    kafka
        .cluster()
        .topic_error(
            OUT,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
        )
        .expect("topic error");
    // Statistics (the lag) every 100 ms instead of every 5 s.
    let serving = Serving::start(
        &kafka,
        "ops",
        &[("RELAY_CONSUMER_STATISTICS_INTERVAL_MS", "100")],
    );
    let addr = cdc_relay::ops::listen(
        "127.0.0.1:0".parse().expect("address"),
        serving.metrics.clone(),
    )
    .await
    .expect("listen");
    let ready = format!("http://{addr}/healthz/ready");
    let until = Instant::now() + Duration::from_secs(20);
    while !get(addr, "/healthz/ready")
        .await
        .starts_with("HTTP/1.1 200")
        && Instant::now() < until
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // `cdc-relay health`, the container's health check, asks the same endpoint.
    assert_eq!(
        cdc_relay::ops::probe(&ready, Duration::from_secs(3))
            .await
            .ok(),
        Some(true),
        "ready once assigned with a producer that reached the broker (before any record)"
    );
    produce_source(&kafka, 0, 90);
    let until = Instant::now() + Duration::from_secs(20);
    while serving.metrics.failed.get() < 90 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answer = get(addr, "/healthz/ready").await;
    assert!(
        answer.starts_with("HTTP/1.1 503"),
        "not ready while nothing gets through: {answer}\n{}",
        serving.metrics.render()
    );
    assert!(
        get(addr, "/healthz").await.starts_with("HTTP/1.1 200"),
        "still live"
    );
    kafka
        .cluster()
        .topic_error(OUT, RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR)
        .expect("clear topic error");
    tokio::task::block_in_place(|| wait_for(&kafka, 90, Duration::from_secs(30)));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(get(addr, "/healthz/ready")
        .await
        .starts_with("HTTP/1.1 200"));
    let health = get(addr, "/healthz").await;
    assert!(
        health.contains(r#""live":true,"ready":true,"assigned_partitions":3"#),
        "{health}"
    );
    let metrics = get(addr, "/metrics").await;
    serving.stop().await;
    let failed = metrics
        .lines()
        .find_map(|l| l.strip_prefix("cdc_relay_records_failed_total "))
        .and_then(|n| n.parse::<u64>().ok())
        .expect("failed counter");
    assert!(failed >= 90, "{failed}");
    let total = metrics
        .lines()
        .find_map(|l| l.strip_prefix("cdc_relay_records_total "))
        .and_then(|n| n.parse::<u64>().ok())
        .expect("records counter");
    assert!(total >= 90 + failed, "retries count again: {total}");
    for line in [
        "cdc_relay_records_produced_total 90",
        "cdc_relay_assigned_partitions 3",
        r#"cdc_relay_consumer_lag{topic="dms.orders",partition="0"} 0"#,
        r#"cdc_relay_consumer_lag{topic="dms.orders",partition="2"} 0"#,
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} missing from:\n{metrics}"
        );
    }
    assert!(
        metrics.contains("cdc_relay_batch_seconds_count "),
        "{metrics}"
    );
    assert!(get(addr, "/nothing").await.starts_with("HTTP/1.1 404"));
    let missing = format!("http://{addr}/nothing");
    assert_eq!(
        cdc_relay::ops::probe(&missing, Duration::from_secs(3))
            .await
            .ok(),
        Some(false)
    );
}

/// `/healthz` is liveness by progress: 200 while records get done, and while nothing is
/// left to read (idle for twice the bound); 503 while every batch fails (the downstream
/// cluster refuses every write: the source partitions are fetched to their end again and
/// again, which is not progress), while the group may not commit its offsets (its
/// authorisation removed), and once the source brokers have been down for the bound; 200 again
/// each time the fault is gone, and records relayed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_fails_while_no_progress_is_possible() {
    const BOUND: Duration = Duration::from_millis(4000);
    let (source, downstream) = (cluster(), cluster());
    let source_brokers = source.bootstrap_servers();
    let serving = Serving::start(
        &downstream,
        "liveness",
        &[
            ("RELAY_SOURCE_BROKERS", source_brokers.as_str()),
            ("RELAY_CONSUMER_STATISTICS_INTERVAL_MS", "200"),
            ("RELAY_BATCH_TIMEOUT_MS", "1000"),
            ("RELAY_RETRY_BACKOFF_MAX_MS", "400"),
            ("RELAY_LIVENESS_TIMEOUT_MS", "4000"),
        ],
    );
    let addr = cdc_relay::ops::listen(
        "127.0.0.1:0".parse().expect("address"),
        serving.metrics.clone(),
    )
    .await
    .expect("listen");
    // `/healthz` until it answers `status`, for at most `within`; the answer.
    let until = |status: &'static str, within: Duration| async move {
        let from = Instant::now();
        loop {
            let answer = get(addr, "/healthz").await;
            if answer.starts_with(status) || from.elapsed() > within {
                return (answer, from.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let relayed = |count: usize| {
        tokio::task::block_in_place(|| wait_for(&downstream, count, Duration::from_secs(60))).len()
    };
    produce_source(&source, 0, 30);
    assert!(relayed(30) >= 30);
    tokio::time::sleep(BOUND * 2).await;
    let idle = get(addr, "/healthz").await;
    assert!(
        idle.starts_with("HTTP/1.1 200") && idle.contains(r#""live":true"#),
        "nothing left to read is progress: {idle}"
    );

    // Every write refused at once: batches fail fast, and the partitions are fetched
    // to their end after each short backoff.
    downstream.cluster().request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 5000],
    );
    produce_source(&source, 30, 30);
    let (answer, _) = until("HTTP/1.1 503", Duration::from_secs(20)).await;
    assert!(
        answer.starts_with("HTTP/1.1 503"),
        "no progress while every batch fails: {answer}\n{}",
        serving.metrics.render()
    );
    assert!(serving.metrics.failed.get() >= 30, "the batches were tried");
    downstream
        .cluster()
        .clear_request_errors(RDKafkaApiKey::Produce);
    let (back, _) = until("HTTP/1.1 200", Duration::from_secs(40)).await;
    assert!(back.starts_with("HTTP/1.1 200"), "live again: {back}");
    assert!(
        relayed(60) >= 60,
        "relayed once the downstream takes writes"
    );

    // The group's authorisation removed: records are relayed, but no offset commit is
    // taken, so nothing is done for good; progress again once commits are taken.
    source.cluster().request_errors(
        RDKafkaApiKey::OffsetCommit,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED; 5000],
    );
    produce_source(&source, 60, 30);
    assert!(relayed(90) >= 90, "relayed while commits are refused");
    let (answer, _) = until("HTTP/1.1 503", Duration::from_secs(20)).await;
    assert!(
        answer.starts_with("HTTP/1.1 503"),
        "no progress while the group may not commit: {answer}\n{}",
        serving.metrics.render()
    );
    source
        .cluster()
        .clear_request_errors(RDKafkaApiKey::OffsetCommit);
    let (back, _) = until("HTTP/1.1 200", Duration::from_secs(40)).await;
    assert!(back.starts_with("HTTP/1.1 200"), "live again: {back}");

    let since = serving.metrics.since_progress();
    for broker in 1..=3 {
        source.cluster().broker_down(broker).expect("broker down");
    }
    let (answer, after) = until("HTTP/1.1 503", Duration::from_secs(20)).await;
    assert!(
        answer.starts_with("HTTP/1.1 503") && answer.contains(r#""live":false"#),
        "no progress with the source brokers down: {answer}"
    );
    assert!(
        since + after >= BOUND,
        "live until the bound passed since the last progress ({since:?} before the brokers went down, 503 {after:?} after)"
    );
    assert!(get(addr, "/healthz/ready")
        .await
        .starts_with("HTTP/1.1 503"));
    for broker in 1..=3 {
        source.cluster().broker_up(broker).expect("broker up");
    }
    let (back, _) = until("HTTP/1.1 200", Duration::from_secs(40)).await;
    assert!(back.starts_with("HTTP/1.1 200"), "live again: {back}");
    produce_source(&source, 90, 30);
    assert!(relayed(120) >= 120, "relaying again");
    serving.stop().await;
}

/// Past the connection cap, idle connections do not keep the container's own health
/// check out: the oldest is closed for the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cannot_starve_the_health_check() {
    let metrics = Arc::new(Metrics::default());
    let addr = cdc_relay::ops::listen("127.0.0.1:0".parse().expect("address"), metrics)
        .await
        .expect("listen");
    let mut idle = Vec::new();
    for _ in 0..64 {
        idle.push(tokio::net::TcpStream::connect(addr).await.expect("connect"));
    }
    let answer = tokio::time::timeout(Duration::from_secs(3), get(addr, "/healthz"))
        .await
        .expect("an answer before the idle connections time out");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(idle);
}

/// One HTTP/1.1 GET; the whole response as text.
async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("response");
    response
}

/// All messages on the output topic now.
fn output_now(kafka: &EmbeddedKafka) -> Vec<ConsumedMessage> {
    tokio::task::block_in_place(|| wait_for(kafka, 0, Duration::ZERO))
}

/// A serving process killed mid-stream (SIGKILL: no commit, no goodbye) and started
/// again loses nothing: every record is relayed, only records the killed process
/// relayed past its last commit are relayed twice, and SIGTERM then ends the second
/// process cleanly with every offset committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_process_loses_nothing() {
    let kafka = cluster();
    produce_source(&kafka, 0, 600);
    // Every request to the brokers takes 20 ms more: batches are slow enough to be
    // killed in the middle of the stream.
    for broker in 1..=3 {
        kafka
            .cluster()
            .broker_round_trip_time(broker, Duration::from_millis(20))
            .expect("round trip time");
    }
    let dir = std::env::temp_dir().join(format!("cdc-relay-serve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let routes = dir.join("routes.toml");
    std::fs::write(&routes, ROUTES).expect("routes file");
    let brokers = kafka.bootstrap_servers();
    let start = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_cdc-relay"))
            .arg("serve")
            .env("RELAY_BROKERS", &brokers)
            .env("RELAY_SOURCE_TOPICS", SOURCE)
            .env("RELAY_GROUP_ID", "crash")
            .env("RELAY_ROUTES", &routes)
            .env("RELAY_HTTP_ADDR", "off")
            .env("RELAY_BATCH_SIZE", "5")
            .env("RELAY_BATCH_WINDOW_MS", "5")
            // Commits while it relays, so the kill finds some records committed and some
            // not: only the latter may be relayed twice.
            .env("RELAY_COMMIT_INTERVAL_MS", "50")
            .env("RELAY_CONSUMER_SESSION_TIMEOUT_MS", "3000")
            .env("RELAY_CONSUMER_HEARTBEAT_INTERVAL_MS", "300")
            .env("RUST_LOG", "warn")
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start cdc-relay serve")
    };
    let mut first = start();
    let until = Instant::now() + Duration::from_secs(30);
    while output_now(&kafka).is_empty() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().expect("SIGKILL");
    first.wait().expect("killed");
    let at_kill = output_now(&kafka).len();
    assert!(
        at_kill > 0 && at_kill < 600,
        "killed mid-stream ({at_kill} of 600 relayed)"
    );
    let committed_at_kill: i64 = tokio::task::block_in_place(|| committed(&kafka, "crash"))
        .iter()
        .map(|c| c.unwrap_or(0))
        .sum();

    let mut second = start();
    let until = Instant::now() + Duration::from_secs(60);
    let mut messages = output_now(&kafka);
    while ids(&messages).len() < 600 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
        messages = output_now(&kafka);
    }
    let status = std::process::Command::new("kill")
        .args(["-TERM", &second.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let exit = second.wait().expect("second exits");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(exit.success(), "SIGTERM ends serve cleanly: {exit}");

    let ids = ids(&messages);
    assert_eq!(ids.len(), 600, "no record lost across the kill");
    // At least once: a record is relayed twice only if the killed process relayed it
    // and had not committed it.
    let twice = (messages.len() - ids.len()) as i64;
    eprintln!(
        "killed with {at_kill} relayed, {committed_at_kill} committed; {twice} relayed twice"
    );
    assert!(
        twice <= at_kill as i64 - committed_at_kill,
        "{twice} repeats; {at_kill} relayed at the kill, {committed_at_kill} committed"
    );
    assert!(
        ids.values().all(|&n| n <= 2),
        "no record relayed three times"
    );
    let committed = tokio::task::block_in_place(|| committed(&kafka, "crash"));
    assert_eq!(
        committed,
        vec![Some(200); 3],
        "SIGTERM committed everything done"
    );
}

/// A batch cut at the byte limit carries its next record over. When the batch fails in
/// that record's partition, the carried record must not go ahead of the records before
/// it: they are read again first, and every record is relayed once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_carried_record_waits_for_the_records_before_it() {
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    for topic in [SOURCE, OUT, "users.out"] {
        kafka.cluster().create_topic(topic, 1, 1).expect("topic");
    }
    // Even offsets are orders, odd offsets users; users.out refuses the relay at first.
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers())
        .create()
        .expect("source producer");
    for id in 0..30_u64 {
        let table = if id % 2 == 0 { "orders" } else { "users" };
        let value = json!({
            "data": {"id": id},
            "metadata": {"timestamp": "2026-11-23T10:00:00Z", "record-type": "data",
                         "operation": "insert", "partition-key-type": "schema-table",
                         "schema-name": "public", "table-name": table},
        })
        .to_string();
        producer
            .send(BaseRecord::to(SOURCE).key("k").payload(&value).partition(0))
            .map_err(|(e, _)| e)
            .expect("enqueue");
    }
    producer.flush(Duration::from_secs(10)).expect("flush");
    kafka
        .cluster()
        .topic_error(
            "users.out",
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
        )
        .expect("topic error");
    let serving = Serving::start_with(
        &kafka,
        "carried",
        "[[route]]\ntable = \"public.orders\"\ntopic = \"orders.out\"\nkey = [\"id\"]\n\
         [[route]]\ntable = \"public.users\"\ntopic = \"users.out\"\nkey = [\"id\"]\n",
        &[
            // About two records per batch: the third is read and carried over.
            ("RELAY_BATCH_MAX_BYTES", "400"),
            ("RELAY_BATCH_WINDOW_MS", "50"),
            ("RELAY_RETRY_BACKOFF_MS", "50"),
            ("RELAY_RETRY_BACKOFF_MAX_MS", "200"),
        ],
    );
    let metrics = serving.metrics.clone();
    let until = Instant::now() + Duration::from_secs(20);
    while metrics.failed.get() < 3 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        metrics.failed.get() >= 3,
        "the users record failed and was retried"
    );
    kafka
        .cluster()
        .topic_error("users.out", RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR)
        .expect("clear topic error");
    let read = || {
        read_topics(
            &kafka.bootstrap_servers(),
            &[OUT, "users.out"],
            Duration::from_secs(10),
        )
        .expect("read back")
    };
    let until = Instant::now() + Duration::from_secs(30);
    let mut messages = tokio::task::block_in_place(read);
    while messages.len() < 30 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
        messages = tokio::task::block_in_place(read);
    }
    serving.stop().await;
    let ids = ids(&messages);
    assert_eq!(ids.len(), 30, "every record relayed: {:?}", {
        let mut missing: Vec<u64> = (0..30).filter(|i| !ids.contains_key(i)).collect();
        missing.sort();
        missing
    });
    assert!(ids.values().all(|&n| n == 1), "no record relayed twice");
    let committed = tokio::task::block_in_place(|| committed_in(&kafka, "carried", 1));
    assert_eq!(committed, vec![Some(30)]);
}

/// Exactly once with the downstream brokers on another cluster stops at start with an
/// error that says why, instead of aborting every transaction. The settings refuse two
/// bootstrap lists with no broker in common; this asks the clusters themselves, which
/// catches lists that share a name but not a cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_refuses_a_downstream_cluster_of_its_own() {
    let source = cluster();
    let downstream = cluster();
    let (source_brokers, downstream_brokers) =
        (source.bootstrap_servers(), downstream.bootstrap_servers());
    let vars = [
        ("RELAY_SOURCE_BROKERS", source_brokers.as_str()),
        ("RELAY_BROKERS", downstream_brokers.as_str()),
        ("RELAY_SOURCE_TOPICS", SOURCE),
        ("RELAY_GROUP_ID", "two-clusters"),
        ("RELAY_HTTP_ADDR", "off"),
    ];
    let pairs = || vars.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    // As the settings would have it with lists that share a broker name.
    let mut serve = ServeSettings::from_vars(pairs()).expect("serve settings");
    serve.exactly_once = true;
    let settings = Settings::from_vars_with(
        pairs(),
        Overrides {
            managed_producer: Server::producer_overrides(&serve),
            ..Overrides::default()
        },
    )
    .expect("settings");
    let routes = Routes::parse(ROUTES, "test").expect("routes");
    let server =
        Server::new(Arc::new(Relay::with_routes(settings, routes)), serve).expect("server");
    let outcome = tokio::time::timeout(
        Duration::from_secs(30),
        server.run(std::future::pending::<()>()),
    )
    .await
    .expect("serve stops at start");
    let error = outcome.expect_err("two clusters are refused").to_string();
    assert!(error.contains("cannot span clusters"), "{error}");
}

/// Routes that may write a source topic are refused at start: serve would read its
/// own output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_routes_that_may_write_a_source_topic() {
    let kafka = cluster();
    let brokers = kafka.bootstrap_servers();
    let vars = [
        ("RELAY_BROKERS", brokers.as_str()),
        ("RELAY_SOURCE_TOPICS", SOURCE),
        ("RELAY_HTTP_ADDR", "off"),
    ];
    let pairs = || vars.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    let serve = ServeSettings::from_vars(pairs()).expect("serve settings");
    let settings = Settings::from_vars(pairs()).expect("settings");
    let routes = Routes::parse("[defaults]\ntopic = \"dms.{table}\"\n", "test").expect("routes");
    let error = Server::new(Arc::new(Relay::with_routes(settings, routes)), serve)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        error.contains("\"dms.orders\"") && error.contains("its own output"),
        "{error}"
    );
}

/// A liveness bound a batch can outlast would fail the health check of a process that
/// is only slow: serve refuses it at start, naming the setting and the batch's longest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_a_liveness_bound_shorter_than_a_batch() {
    let kafka = cluster();
    let brokers = kafka.bootstrap_servers();
    let server_with = |vars: &[(&str, &str)]| {
        let mut all = vec![
            ("RELAY_BROKERS", brokers.as_str()),
            ("RELAY_SOURCE_TOPICS", SOURCE),
            ("RELAY_HTTP_ADDR", "off"),
            ("RELAY_BATCH_WINDOW_MS", "20"),
        ];
        all.extend_from_slice(vars);
        server(&all, ROUTES).err()
    };
    let server = |liveness: &str, exactly_once: &str| {
        server_with(&[
            ("RELAY_BATCH_TIMEOUT_MS", "30000"),
            ("RELAY_LIVENESS_TIMEOUT_MS", liveness),
            ("RELAY_EXACTLY_ONCE", exactly_once),
        ])
    };
    assert!(
        server_with(&[("RELAY_BATCH_TIMEOUT_MS", "280000")]).is_none(),
        "unset, the bound grows with the batch timeout"
    );
    // A batch that could outlast the poll interval: the member would leave mid-batch.
    let error = server_with(&[("RELAY_BATCH_TIMEOUT_MS", "300000")])
        .expect("refused")
        .to_string();
    assert!(error.contains("max.poll.interval.ms"), "{error}");
    let error = server_with(&[("RELAY_CONSUMER_STATISTICS_INTERVAL_MS", "0")])
        .expect("refused")
        .to_string();
    assert!(error.contains("statistics"), "{error}");
    let error = server("32500", "false").expect("refused").to_string();
    assert!(
        error.contains("RELAY_LIVENESS_TIMEOUT_MS") && error.contains("32520 ms"),
        "at least once adds the commit interval (500 ms): {error}"
    );
    assert!(server("32521", "false").is_none(), "longer than a batch");
    let error = server("32521", "true").expect("refused").to_string();
    assert!(
        error.contains("52020 ms"),
        "exactly once adds the commit: {error}"
    );
}

/// A record larger than `RELAY_MAX_RECORD_BYTES` is poison: dead-lettered cut to fit,
/// with its size and SHA-256, and the partition goes on. Before the limit, serve took
/// any record librdkafka would fetch (100 MB) as the first of a batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_dead_letters_a_record_over_the_size_limit() {
    use sha2::{Digest, Sha256};
    let kafka = cluster();
    kafka.cluster().create_topic("dlq", 1, 1).expect("topic");
    produce_source(&kafka, 0, 10);
    let big = json!({
        "data": {"id": 999, "amount": "1.00", "note": "x".repeat(1_500_000)},
        "metadata": {
            "timestamp": "2026-11-23T10:00:00Z", "record-type": "data",
            "operation": "insert", "partition-key-type": "schema-table",
            "schema-name": "public", "table-name": "orders", "transaction-id": 999,
        }
    })
    .to_string();
    produce_large(&kafka, 0, "public.orders.999", &big);
    produce_source(&kafka, 10, 10);
    let routes = format!("[defaults]\ndlq_topic = \"dlq\"\n{ROUTES}");
    let serving = Serving::start_with(
        &kafka,
        "oversized",
        &routes,
        &[("RELAY_MAX_RECORD_BYTES", "1048576")],
    );
    let messages = tokio::task::block_in_place(|| wait_for(&kafka, 20, Duration::from_secs(30)));
    // Committed only once the dead letter is acknowledged too.
    let until = Instant::now() + Duration::from_secs(30);
    let mut offsets = Vec::new();
    while Instant::now() < until {
        offsets = tokio::task::block_in_place(|| committed(&kafka, "oversized"));
        if offsets == [Some(8), Some(7), Some(6)] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        offsets,
        [Some(8), Some(7), Some(6)],
        "the group moved past the record"
    );
    let letters = tokio::task::block_in_place(|| {
        read_topics(
            &kafka.bootstrap_servers(),
            &["dlq"],
            Duration::from_secs(10),
        )
        .expect("dlq")
    });
    serving.stop().await;
    assert_eq!(ids(&messages).len(), 20, "every other record relayed");
    assert!(!ids(&messages).contains_key(&999));
    assert_eq!(letters.len(), 1, "one dead letter");
    let letter = &letters[0];
    let error = letter.header(header::ERROR).unwrap_or_default();
    assert!(error.contains("RELAY_MAX_RECORD_BYTES"), "{error}");
    assert_eq!(letter.header(header::TRUNCATED), Some("true"));
    assert_eq!(
        letter.header(header::ORIGINAL_SIZE),
        Some(big.len().to_string().as_str())
    );
    assert_eq!(
        letter.header(header::ORIGINAL_SHA256),
        Some(hex::encode(Sha256::digest(big.as_bytes())).as_str())
    );
    let value = letter.value.as_deref().expect("letter value");
    assert!(value.len() < 1_000_000 && big.as_bytes().starts_with(value));
}

/// Exactly once and a record the broker rejects: the rejection makes the transaction
/// abortable (every later produce fails), so the batch aborts. The record is then
/// produced alone in a transaction of its own; rejected again, it is dead-lettered in
/// the next transaction with its offset, and the partition goes on. Before, serve
/// aborted and read the batch again forever. (The mock cluster refuses the first two
/// produce requests; one source partition, one record per batch.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_dead_letters_a_record_the_broker_rejects() {
    let kafka = cluster();
    kafka.cluster().create_topic("dlq", 1, 1).expect("topic");
    // Ids 0, 3 and 6: all in source partition 0.
    for id in [0, 3, 6] {
        produce_source(&kafka, id, 1);
    }
    kafka.cluster().request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE; 2],
    );
    let routes = format!("[defaults]\ndlq_topic = \"dlq\"\n{ROUTES}");
    let serving = Serving::start_with(
        &kafka,
        "rejected",
        &routes,
        &[("RELAY_BATCH_SIZE", "1"), ("RELAY_EXACTLY_ONCE", "true")],
    );
    let metrics = serving.metrics.clone();
    let until = Instant::now() + Duration::from_secs(30);
    while (metrics.dead_lettered.get() < 1 || metrics.produced.get() < 2) && Instant::now() < until
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let letters = tokio::task::block_in_place(|| {
        read_topics(
            &kafka.bootstrap_servers(),
            &["dlq"],
            Duration::from_secs(10),
        )
        .expect("dlq")
    });
    serving.stop().await;
    assert_eq!(
        metrics.dead_lettered.get(),
        1,
        "the rejected record dead-lettered"
    );
    assert_eq!(metrics.produced.get(), 2, "the records after it relayed");
    // Aborted with its batch, then alone. librdkafka bumps the producer epoch after a
    // rejection, which may purge the first message of the transaction after it once
    // more (seen here: "Purged in queue"); nothing aborts after that.
    let aborted = metrics.aborted.get();
    assert!((2..=3).contains(&aborted), "{aborted} aborts");
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].header(header::SOURCE_OFFSET), Some("0"));
    let error = letters[0].header(header::ERROR).unwrap_or_default();
    assert!(error.to_lowercase().contains("too large"), "{error}");
}

/// SIGTERM while every broker answers 5 s late: serve returns within
/// `RELAY_SHUTDOWN_TIMEOUT_MS` and [`SHUTDOWN_EPILOGUE`], at least once and exactly once
/// alike, though what it still does then (the batch in flight, the abort, the group's
/// offset commit, the consumer's close) waits on the brokers: each is abandoned at its
/// share. Before, the loop's offset commit blocked it past 30 s (10 s late brokers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_bounded_when_the_brokers_stop_answering() {
    for exactly_once in ["false", "true"] {
        let kafka = cluster();
        // Enough that the brokers slow down with batches still to go.
        produce_source(&kafka, 0, 20_000);
        let group = format!("bounded-{exactly_once}");
        let serving = Serving::start(
            &kafka,
            &group,
            &[
                ("RELAY_BATCH_SIZE", "10"),
                ("RELAY_EXACTLY_ONCE", exactly_once),
                ("RELAY_SHUTDOWN_TIMEOUT_MS", "2000"),
            ],
        );
        let relayed = tokio::task::block_in_place(|| wait_for(&kafka, 10, Duration::from_secs(30)));
        assert!(relayed.len() >= 10, "relaying before the brokers slow down");
        for broker in 1..=3 {
            kafka
                .cluster()
                .broker_round_trip_time(broker, Duration::from_secs(5))
                .expect("round trip time");
        }
        // The next batch waits on the brokers.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (took, ended) = serving.stop_timed().await;
        let bound = Duration::from_secs(2) + SHUTDOWN_EPILOGUE;
        eprintln!(
            "exactly once {exactly_once}: shutdown took {took:?} (bound {bound:?}): {ended:?}"
        );
        assert!(
            took <= bound + Duration::from_secs(1),
            "exactly once {exactly_once}: shutdown took {took:?}, past {bound:?}"
        );
        // What was left behind (an offset commit, a close) ends against the cluster
        // before it goes: a synchronous commit to a cluster that is gone waits for ever,
        // and the test's runtime waits for it.
        for broker in 1..=3 {
            let _ = kafka
                .cluster()
                .broker_round_trip_time(broker, Duration::ZERO);
        }
        tokio::time::sleep(Duration::from_secs(6)).await;
    }
}

/// A commit the group's coordinator answers late holds neither the loop nor its
/// shutdown: the batches go on while it is under way, commits that fall due meanwhile
/// wait for the next chance instead of queueing behind it, and SIGTERM returns within
/// `RELAY_SHUTDOWN_TIMEOUT_MS` and [`SHUTDOWN_EPILOGUE`]. The source cluster's
/// coordinator (broker 3) answers 12 s late, its partition leaders (brokers 1 and 2) at
/// once; downstream answers 20 ms late, so the backlog lasts. Before, a commit held the
/// lock the loop takes to note records done for its whole round trip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_under_way_holds_neither_the_loop_nor_its_shutdown() {
    let group = "late-commit";
    let (source, downstream) = (cluster(), slow_cluster(Duration::from_millis(20)));
    source
        .cluster()
        .coordinator(MockCoordinator::Group(group.to_owned()), 3)
        .expect("coordinator");
    for partition in 0..PARTITIONS {
        source
            .cluster()
            .partition_leader(SOURCE, partition, Some(1 + partition % 2))
            .expect("leader");
    }
    produce_source(&source, 0, 20_000);
    let source_brokers = source.bootstrap_servers();
    let serving = Serving::start(
        &downstream,
        group,
        &[
            ("RELAY_SOURCE_BROKERS", source_brokers.as_str()),
            ("RELAY_BATCH_SIZE", "10"),
            ("RELAY_COMMIT_INTERVAL_MS", "100"),
            ("RELAY_SHUTDOWN_TIMEOUT_MS", "2000"),
            // Heartbeats answered 12 s late keep the session.
            ("RELAY_CONSUMER_SESSION_TIMEOUT_MS", "30000"),
        ],
    );
    let until = Instant::now() + Duration::from_secs(30);
    while serving.metrics.records.get() < 10 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        serving.metrics.records.get() >= 10,
        "relaying before the coordinator slows down"
    );
    source
        .cluster()
        .broker_round_trip_time(3, Duration::from_secs(12))
        .expect("round trip time");
    // A commit falls due within 100 ms and is then under way for 12 s.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = serving.metrics.records.get();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = serving.metrics.records.get() - before;
    let (took, ended) = serving.stop_timed().await;
    let bound = Duration::from_secs(2) + SHUTDOWN_EPILOGUE;
    eprintln!(
        "{during} records relayed in 2 s while a commit was under way; shutdown took {took:?} \
         (bound {bound:?}): {ended:?}"
    );
    // What was left behind (a commit, the consumer's close) ends before the cluster goes.
    let _ = source.cluster().broker_round_trip_time(3, Duration::ZERO);
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert!(
        during >= 100,
        "the batches went on while a commit was under way ({during} records in 2 s)"
    );
    assert!(
        took <= bound + Duration::from_secs(1),
        "shutdown took {took:?}, past {bound:?}"
    );
}

/// `serve` writes the ecosystem's formats as the other modes do (one transform): the
/// Debezium envelope, a CloudEvent in binary mode, and an outbox row as its event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_writes_the_ecosystem_formats() {
    let kafka = cluster();
    produce_source(&kafka, 0, 3);
    let outbox = json!({
        "data": {"id": "e-1", "aggregatetype": "out", "aggregateid": "a-1", "payload": "{\"n\":19.90}"},
        "metadata": {"timestamp": "2026-11-23T10:00:00Z", "record-type": "data", "operation": "insert",
                     "schema-name": "public", "table-name": "outbox"}
    });
    produce_large(&kafka, 0, "public.outbox", &outbox.to_string());
    let rounds = [
        ("debezium", "envelope = \"debezium\""),
        (
            "cloudevents",
            "envelope = \"cloudevents\"\ncontent_mode = \"binary\"",
        ),
    ];
    for (name, defaults) in rounds {
        let topic = format!("formats.{name}");
        kafka.cluster().create_topic(&topic, 1, 1).expect("topic");
        // The orders in the format, the outbox row's event to the same topic.
        let routes = format!(
            "[defaults]\n{defaults}\n[[route]]\ntable = \"public.orders\"\ntopic = \"{topic}\"\nkey = [\"id\"]\n\
             [[route]]\ntable = \"public.outbox\"\noutbox = {{ expand_json = true }}\ntopic = \"formats.{{route}}\"\n"
        )
        .replace("formats.{route}", &format!("formats.{name}"));
        let serving = Serving::start_with(&kafka, name, &routes, &[]);
        let until = Instant::now() + Duration::from_secs(30);
        let messages = loop {
            let read = tokio::task::block_in_place(|| {
                read_topics(
                    &kafka.bootstrap_servers(),
                    &[&topic],
                    Duration::from_secs(10),
                )
                .expect("read back")
            });
            if read.len() >= 4 || Instant::now() > until {
                break read;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        serving.stop().await;
        assert_eq!(
            messages.len(),
            4,
            "{name}: three orders and the outbox event"
        );
        for m in messages.iter().filter(|m| m.header("id").is_none()) {
            let value: serde_json::Value =
                serde_json::from_slice(m.value.as_deref().expect("a value")).expect("JSON");
            if name == "debezium" {
                assert_eq!(
                    value["schema"]["name"], "dms.public.orders.Envelope",
                    "{value}"
                );
                assert_eq!(value["payload"]["op"], "c");
            } else {
                assert_eq!(m.header("ce_id"), m.header(header::EVENT_ID));
                assert_eq!(m.header("ce_type"), Some("dms.public.orders.insert"));
                assert_eq!(value["op"], "insert");
            }
        }
        let event = messages
            .iter()
            .find(|m| m.header("id") == Some("e-1"))
            .expect("the outbox row's event");
        assert_eq!(event.key.as_deref(), Some(&b"a-1"[..]));
        assert_eq!(event.value.as_deref(), Some(&br#"{"n":19.90}"#[..]));
    }
}
