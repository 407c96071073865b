//! The relay run the way the event source mapping runs it, retries included.
//!
//! The driver invokes the handler with a batch, reads the answer, and delivers again
//! from each reported offset (the whole batch after an error) until nothing is
//! reported, across invocations of one relay and of fresh ones (a new execution
//! environment every [`FRESH_EVERY`] invocations). A record reported at the same offset
//! more than [`MAX_RETRIES`] times in a row is given up, as a mapping with
//! `MaximumRetryAttempts` does (its on-failure destination). Each scenario injects its
//! fault per invocation with the mock cluster. At the end every output topic and the
//! dead-letter topic are read back and checked: after de-duplication by event id each
//! input record's expected messages are present exactly once, per-key order holds, no
//! record is stuck, only poison records were given up, no answer came after its deadline.
//!
//! Size: `RETRY_LOOP_RECORDS` records per scenario (default 600, what CI runs);
//! `scripts/retry-loop.sh` runs 6,000 and prints the per-scenario report.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use cdc_relay::generate::{generate, GenOptions, PartitionBy};
use cdc_relay::modes::lambda::Function;
use cdc_relay::modes::local::{read_topics, EmbeddedKafka};
use cdc_relay::source::MskEvent;
use cdc_relay::transform::{header, Routes};
use lambda_runtime::LambdaEvent;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use serde_json::{json, Value};

use crate::util;

/// A new relay (execution environment) every this many invocations.
const FRESH_EVERY: usize = 3;
/// Reports of one offset in a row before the mapping gives the record up.
const MAX_RETRIES: usize = 4;
/// Invocations after which records still pending count as stuck (plus, with poison and
/// no dead-letter topic, the retries the mapping spends on each poison record).
const MAX_INVOCATIONS: usize = 40;
/// Every this many records, one is replaced by a value that is not JSON (poison).
const POISON_EVERY: usize = 97;
/// Output topics (3 partitions each) and the dead-letter topic (1).
const TOPICS: [&str; 6] = [
    "out.orders",
    "out.users",
    "out.payments",
    "out.invoices",
    "fan.orders",
    "dlq",
];

const ROUTES: &str = r#"
[[route]]
table = "public.orders"
topics = ["out.orders", "fan.orders"]
key = ["id"]
[[route]]
table = "*"
topic = "out.{table}"
key = ["id"]
"#;

type Fault = fn(&EmbeddedKafka, usize);

struct Scenario {
    name: &'static str,
    /// Invocations the fault must cost at least (it must have bitten).
    min_invocations: usize,
    /// Whether first copies must be in order too (see the request-rejection scenario).
    first_copy_order: bool,
    /// Extra `RELAY_*` variables.
    vars: &'static [(&'static str, &'static str)],
    brokers: i32,
    dead_letters: bool,
    poison: bool,
    deadline_ms: u64,
    /// Called before invocation `n` (0-based), and before the relay of that invocation
    /// is created when it is a fresh one.
    fault: Fault,
}

/// What one scenario measured.
#[derive(Debug, Default)]
struct Report {
    invocations: usize,
    messages: usize,
    duplicates: usize,
    lost: usize,
    stuck: usize,
    given_up: usize,
    given_up_not_poison: usize,
    order_violations: usize,
    last_copy_order_violations: usize,
    unexpected_dead_letters: usize,
    deadline_misses: usize,
    slowest_ms: u128,
}

fn produce_errors(kafka: &EmbeddedKafka, errors: &[RDKafkaRespErr]) {
    kafka
        .cluster()
        .request_errors(RDKafkaApiKey::Produce, errors);
}

/// A scenario with the defaults: one broker, a dead-letter topic, no poison, 10 s.
fn scenario(name: &'static str, fault: Fault) -> Scenario {
    Scenario {
        name,
        min_invocations: 1,
        first_copy_order: true,
        vars: &[],
        brokers: 1,
        dead_letters: true,
        poison: false,
        deadline_ms: 10_000,
        fault,
    }
}

/// `error` for the first two invocations, healed from the third.
fn first_two(n: usize, error: RDKafkaRespErr) -> RDKafkaRespErr {
    if n < 2 {
        error
    } else {
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR
    }
}

fn scenarios() -> Vec<Scenario> {
    use RDKafkaRespErr::*;
    vec![
        scenario("no fault", |_, _| {}),
        scenario("transient produce errors", |k, n| {
            if n < 2 {
                produce_errors(
                    k,
                    &[
                        RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                        RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
                        RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                    ],
                )
            }
        }),
        Scenario {
            min_invocations: 3,
            deadline_ms: 2_000,
            ..scenario("broker down, then back", |k, n| match n {
                0 => k.cluster().broker_down(1).expect("down"),
                2 => k.cluster().broker_up(1).expect("up"),
                _ => {}
            })
        },
        Scenario {
            min_invocations: 2,
            deadline_ms: 1_500,
            ..scenario("slow broker against the deadline", |k, n| {
                let rtt = if n < 3 { 250 } else { 0 };
                k.cluster()
                    .broker_round_trip_time(1, Duration::from_millis(rtt))
                    .expect("rtt")
            })
        },
        Scenario {
            brokers: 3,
            ..scenario("leader change", |k, n| {
                if n < 3 {
                    for topic in TOPICS {
                        for p in 0..3 {
                            let _ = k.cluster().partition_leader(
                                topic,
                                p,
                                Some(1 + ((p + n as i32) % 3)),
                            );
                        }
                    }
                    produce_errors(k, &[RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 2]);
                }
            })
        },
        scenario("NOT_ENOUGH_REPLICAS", |k, n| {
            if n < 2 {
                produce_errors(k, &[RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 4])
            }
        }),
        scenario("request timeouts", |k, n| {
            if n < 2 {
                produce_errors(k, &[RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT; 4])
            }
        }),
        Scenario {
            min_invocations: 2,
            deadline_ms: 5_000,
            ..scenario("fatal idempotence error", |k, n| {
                if n == 0 {
                    k.cluster().request_errors(
                        RDKafkaApiKey::InitProducerId,
                        &[RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED],
                    )
                }
            })
        },
        Scenario {
            min_invocations: 3,
            deadline_ms: 5_000,
            ..scenario("authorization failure on one route's topic", |k, n| {
                let error = first_two(n, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
                k.cluster()
                    .topic_error("out.users", error)
                    .expect("topic error")
            })
        },
        Scenario {
            // Requests after the rejected one land before its records are produced
            // again alone; the relay then produces the later records again, so the last
            // copies are in order, but the first copies of a key may not be.
            first_copy_order: false,
            ..scenario("request rejected as too large", |k, n| {
                if n < 2 {
                    produce_errors(
                        k,
                        &[
                            RD_KAFKA_RESP_ERR_NO_ERROR,
                            RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE,
                            RD_KAFKA_RESP_ERR_NO_ERROR,
                            RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE,
                        ],
                    )
                }
            })
        },
        Scenario {
            poison: true,
            ..scenario("poison records, dead-letter topic", |_, _| {})
        },
        Scenario {
            min_invocations: 6,
            poison: true,
            dead_letters: false,
            ..scenario("poison records, no dead-letter topic", |_, _| {})
        },
        Scenario {
            min_invocations: 3,
            deadline_ms: 5_000,
            ..scenario("fan-out with one topic failing", |k, n| {
                let error = first_two(n, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
                k.cluster()
                    .topic_error("fan.orders", error)
                    .expect("topic error")
            })
        },
    ]
}

/// The generated event's records, per `topic-partition`, in offset order; every
/// [`POISON_EVERY`]th value replaced by one that is not JSON when `poison`.
fn records(count: usize, poison: bool) -> (Value, BTreeMap<String, VecDeque<Value>>) {
    let mut event = generate(&GenOptions {
        records: count,
        value_bytes: 300,
        partition_by: PartitionBy::SchemaTable,
        ..GenOptions::default()
    });
    let mut groups = BTreeMap::new();
    let mut n = 0;
    if let Some(map) = event["records"].as_object_mut() {
        for (partition, list) in map.iter_mut() {
            let mut queue = VecDeque::new();
            for record in list.as_array_mut().into_iter().flatten() {
                n += 1;
                if poison && n % POISON_EVERY == 0 {
                    record["value"] = json!(util::b64("not json"));
                }
                queue.push_back(record.clone());
            }
            groups.insert(partition.clone(), queue);
        }
    }
    (event, groups)
}

fn event_of(template: &Value, pending: &BTreeMap<String, VecDeque<Value>>) -> MskEvent {
    let mut event = template.clone();
    event["records"] = pending
        .iter()
        .filter(|(_, q)| !q.is_empty())
        .map(|(p, q)| (p.clone(), Value::Array(q.iter().cloned().collect())))
        .collect::<serde_json::Map<_, _>>()
        .into();
    MskEvent::parse(serde_json::to_vec(&event).expect("serialises"))
        .expect("driver builds valid events")
}

fn new_relay(kafka: &EmbeddedKafka, scenario: &Scenario) -> Function {
    let mut text = String::new();
    if scenario.dead_letters {
        text.push_str("[defaults]\ndlq_topic = \"dlq\"\n");
    }
    text.push_str(ROUTES);
    let mut vars = vec![
        ("RELAY_PARTIAL_BATCH", "true"),
        ("RELAY_DEADLINE_MARGIN_MS", "400"),
        ("RELAY_CONCURRENCY", "2"),
    ];
    vars.extend_from_slice(scenario.vars);
    util::relay(
        kafka,
        Routes::parse(&text, "retry-loop").expect("routes"),
        &vars,
    )
}

async fn run(scenario: &Scenario, count: usize) -> Report {
    let kafka = EmbeddedKafka::start(scenario.brokers).expect("mock cluster");
    for topic in TOPICS {
        let partitions = if topic == "dlq" { 1 } else { 3 };
        kafka
            .cluster()
            .create_topic(topic, partitions, 1)
            .expect("topic");
    }
    let (template, mut pending) = records(count, scenario.poison);
    let all = pending.clone();
    let mut report = Report::default();
    let mut given_up: HashSet<(String, i64)> = HashSet::new();
    let mut last_report: HashMap<String, (i64, usize)> = HashMap::new();
    let mut relay: Option<Function> = None;
    let max_invocations = if scenario.poison && !scenario.dead_letters {
        MAX_INVOCATIONS + count / POISON_EVERY * (MAX_RETRIES + 1)
    } else {
        MAX_INVOCATIONS
    };
    while pending.values().any(|q| !q.is_empty()) && report.invocations < max_invocations {
        let n = report.invocations;
        (scenario.fault)(&kafka, n);
        if n % FRESH_EVERY == 0 {
            relay = Some(new_relay(&kafka, scenario));
        }
        let Some(current) = relay.as_ref() else {
            unreachable!("a relay is made on the first invocation")
        };
        let event = event_of(&template, &pending);
        let started = Instant::now();
        let invocation = current
            .invoke(LambdaEvent::new(event, util::context(scenario.deadline_ms)))
            .await;
        let elapsed = started.elapsed();
        if std::env::var_os("RETRY_LOOP_VERBOSE").is_some() {
            let failures = invocation.outcome.as_ref().map(|o| &o.failures);
            eprintln!(
                "{}: invocation {n}: {elapsed:?} {failures:?}",
                scenario.name
            );
        }
        let answer = invocation.response;
        report.invocations += 1;
        report.slowest_ms = report.slowest_ms.max(elapsed.as_millis());
        if elapsed >= Duration::from_millis(scenario.deadline_ms) {
            report.deadline_misses += 1;
        }
        let Ok(response) = answer else {
            continue; // An error: the mapping delivers the whole batch again.
        };
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
        for (partition, queue) in pending.iter_mut() {
            match reported.get(partition.as_str()) {
                None => {
                    queue.clear();
                    last_report.remove(partition);
                }
                Some(&offset) => {
                    queue.retain(|r| r["offset"].as_i64().is_some_and(|o| o >= offset));
                    let entry = last_report.entry(partition.clone()).or_insert((offset, 0));
                    if entry.0 == offset {
                        entry.1 += 1;
                    } else {
                        *entry = (offset, 1);
                    }
                    if entry.1 > MAX_RETRIES {
                        queue.pop_front();
                        given_up.insert((partition.clone(), offset));
                        last_report.remove(partition);
                    }
                }
            }
        }
    }
    report.stuck = pending.values().map(VecDeque::len).sum();
    drop(relay);
    check(&kafka, scenario, &template, &all, &given_up, &mut report);
    report
}

/// Reads everything back and fills the loss, duplicate and order figures.
fn check(
    kafka: &EmbeddedKafka,
    scenario: &Scenario,
    template: &Value,
    all: &BTreeMap<String, VecDeque<Value>>,
    given_up: &HashSet<(String, i64)>,
    report: &mut Report,
) {
    let _ = kafka.cluster().broker_up(1);
    let _ = kafka.cluster().broker_round_trip_time(1, Duration::ZERO);
    let consumed = read_topics(&kafka.bootstrap_servers(), &TOPICS, Duration::from_secs(30))
        .expect("read back");
    report.messages = consumed.len();
    let mut seen: HashSet<String> = HashSet::new();
    let mut dead_letters: Vec<String> = Vec::new();
    // Per (topic, key): the last source offset seen, in log order, first copies only.
    let mut last: HashMap<(String, Vec<u8>), i64> = HashMap::new();
    // Per event id: where its last copy stands, its key and its source offset.
    type Key = (String, Vec<u8>);
    let mut last_copy: HashMap<String, (usize, Key, i64)> = HashMap::new();
    for (position, m) in consumed.iter().enumerate() {
        let id = m.header(header::EVENT_ID).unwrap_or_default().to_owned();
        if m.topic != "dlq" {
            let offset: i64 = m
                .header(header::SOURCE_OFFSET)
                .and_then(|o| o.parse().ok())
                .unwrap_or(-1);
            let key = (m.topic.clone(), m.key.clone().unwrap_or_default());
            last_copy.insert(id.clone(), (position, key, offset));
        }
        if !seen.insert(id) {
            report.duplicates += 1;
            continue;
        }
        if m.topic == "dlq" {
            dead_letters.push(m.header(header::EVENT_ID).unwrap_or_default().to_owned());
            continue;
        }
        let offset: i64 = m
            .header(header::SOURCE_OFFSET)
            .and_then(|o| o.parse().ok())
            .unwrap_or(-1);
        let key = (m.topic.clone(), m.key.clone().unwrap_or_default());
        if let Some(previous) = last.insert(key, offset) {
            if offset < previous {
                report.order_violations += 1;
            }
        }
    }
    // Last copies: per key, in log order, the source offsets must rise.
    let mut by_key: HashMap<Key, Vec<(usize, i64)>> = HashMap::new();
    for (position, key, offset) in last_copy.into_values() {
        by_key.entry(key).or_default().push((position, offset));
    }
    for copies in by_key.values_mut() {
        copies.sort_unstable();
        report.last_copy_order_violations += copies.windows(2).filter(|w| w[1].1 < w[0].1).count();
    }
    let origin_event: MskEvent = event_of(template, all);
    let MskEvent { origin, records } = origin_event;
    let cluster = origin.cluster();
    let relay = new_relay(kafka, scenario);
    let mut expected_dead_letters: HashSet<String> = HashSet::new();
    for record in &records {
        let expected =
            relay
                .relay()
                .pipeline()
                .expected_ids(record, &cluster, scenario.dead_letters);
        if scenario.dead_letters && relay.relay().pipeline().process(record, &cluster).is_err() {
            expected_dead_letters.extend(expected.iter().cloned());
        }
        let gave_up = given_up.contains(&(record.batch_partition.to_string(), record.offset));
        if gave_up {
            report.given_up += 1;
            if relay.relay().pipeline().process(record, &cluster).is_ok() {
                report.given_up_not_poison += 1;
            }
            continue;
        }
        if expected.iter().any(|id| !seen.contains(id)) {
            report.lost += 1;
        }
    }
    // Only poison is dead-lettered: a record done otherwise has no dead letter.
    report.unexpected_dead_letters = dead_letters
        .iter()
        .filter(|id| !expected_dead_letters.contains(*id))
        .count();
}

/// Every scenario: nothing lost, nothing stuck, order kept, every answer on time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_loop_under_every_fault() {
    let count: usize = std::env::var("RETRY_LOOP_RECORDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(600);
    let mut failures = Vec::new();
    eprintln!(
        "\nretry loop, {count} records per scenario\n| scenario | invocations | messages | duplicates | lost | stuck | given up (poison) | order violations, first copies | order violations, last copies | dead letters not poison | deadline misses | slowest answer ms |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for scenario in scenarios() {
        let report = run(&scenario, count).await;
        eprintln!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            scenario.name,
            report.invocations,
            report.messages,
            report.duplicates,
            report.lost,
            report.stuck,
            report.given_up,
            report.order_violations,
            report.last_copy_order_violations,
            report.unexpected_dead_letters,
            report.deadline_misses,
            report.slowest_ms
        );
        let poison_expected = scenario.poison && !scenario.dead_letters;
        if report.lost > 0
            || report.stuck > 0
            || (scenario.first_copy_order && report.order_violations > 0)
            || report.last_copy_order_violations > 0
            || report.deadline_misses > 0
            || report.given_up_not_poison > 0
            || report.unexpected_dead_letters > 0
            || report.invocations < scenario.min_invocations
            || (report.given_up > 0) != poison_expected
        {
            failures.push(format!("{}: {report:?}", scenario.name));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
