//! Every fixture in `events/` through the Lambda handler, with the example routes, on a
//! fresh mock cluster; the messages read back must equal the checked-in golden output.

use std::time::Duration;

use cdc_relay::modes::local::{ConsumedMessage, EmbeddedKafka};
use cdc_relay::transform::header;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

use crate::util;

/// All topics on the cluster except internal ones.
fn all_topics(kafka: &EmbeddedKafka) -> Vec<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers())
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    let mut topics: Vec<String> = metadata
        .topics()
        .iter()
        .map(|t| t.name().to_owned())
        .filter(|t| !t.starts_with("__"))
        .collect();
    topics.sort();
    topics
}

/// Runs one fixture; returns the response JSON and every message on the cluster.
async fn run_fixture(name: &str) -> (String, Vec<ConsumedMessage>) {
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    let relay = util::relay(
        &kafka,
        util::example_routes(),
        &[("RELAY_PARTIAL_BATCH", "true")],
    );
    let response = util::invoke(&relay, util::load_event(name))
        .await
        .expect("handler answers");
    let topics = all_topics(&kafka);
    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    let messages = util::consume(&kafka, &topic_refs);
    (serde_json::to_string(&response).expect("json"), messages)
}

/// Each fixture produces exactly its golden messages (topic, partition, offset, key,
/// headers, value) and a success response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_matches_its_golden_output() {
    let mut names: Vec<String> = std::fs::read_dir(util::root().join("events"))
        .expect("events dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json") && !n.starts_with("large-"))
        .collect();
    names.sort();
    assert!(names.len() >= 8, "fixtures missing: {names:?}");
    for name in names {
        let (response, messages) = run_fixture(&name).await;
        assert_eq!(response, r#"{"batchItemFailures":[]}"#, "{name}");
        let mut text = String::new();
        for m in &messages {
            text.push_str(&m.to_json().to_string());
            text.push('\n');
        }
        util::assert_golden(&name.replace(".json", ".jsonl"), &text);
    }
}

/// Every produced message names its source record in headers, and the value's `id`
/// equals the event-id header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_trace_every_message_to_its_source() {
    let (_, messages) = run_fixture("multi-topic.json").await;
    assert!(!messages.is_empty());
    let event = util::load_event("multi-topic.json");
    for m in &messages {
        let topic = m.header(header::SOURCE_TOPIC).expect("source topic header");
        let partition: i64 = m
            .header(header::SOURCE_PARTITION)
            .and_then(|p| p.parse().ok())
            .expect("partition header");
        let offset: i64 = m
            .header(header::SOURCE_OFFSET)
            .and_then(|o| o.parse().ok())
            .expect("offset header");
        let source = event
            .records
            .iter()
            .find(|r| *r.batch_partition == format!("{topic}-{partition}") && r.offset == offset);
        assert!(
            source.is_some(),
            "{topic}/{partition}@{offset} is not in the input"
        );
        // On the wire in a fixed order, each once.
        let names: Vec<&str> = m.headers.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(
            names.get(..6),
            Some(
                &[
                    header::EVENT_ID,
                    header::SOURCE_TOPIC,
                    header::SOURCE_PARTITION,
                    header::SOURCE_OFFSET,
                    header::OPERATION,
                    header::TABLE,
                ][..]
            ),
            "{names:?}"
        );
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "a header repeated: {names:?}");
        if let Some(value) = &m.value {
            let v: serde_json::Value = serde_json::from_slice(value).expect("json value");
            assert_eq!(v["id"].as_str(), m.header(header::EVENT_ID));
        }
    }
}

/// Invoking the same event twice (a Lambda retry) yields the same event ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_batch_has_identical_event_ids() {
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    let relay = util::relay(&kafka, util::example_routes(), &[]);
    for _ in 0..2 {
        util::invoke(&relay, util::load_event("multi-topic.json"))
            .await
            .expect("success");
    }
    let topics = all_topics(&kafka);
    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    let messages = util::consume(&kafka, &topic_refs);
    let mut ids: std::collections::BTreeMap<(String, String, String), Vec<String>> =
        Default::default();
    for m in &messages {
        let position = (
            m.topic.clone(),
            m.header(header::SOURCE_TOPIC)
                .unwrap_or_default()
                .to_owned(),
            m.header(header::SOURCE_OFFSET)
                .unwrap_or_default()
                .to_owned(),
        );
        ids.entry(position)
            .or_default()
            .push(m.header(header::EVENT_ID).unwrap_or_default().to_owned());
    }
    assert_eq!(ids.len(), 7, "7 messages per invocation: {ids:?}");
    for (position, copies) in ids {
        assert_eq!(copies.len(), 2, "{position:?}");
        assert_eq!(copies[0], copies[1], "{position:?}");
        assert!(!copies[0].is_empty());
    }
}
