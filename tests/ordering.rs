//! Concurrency never reorders two changes of the same entity.

use std::collections::HashMap;

use cdc_relay::modes::local::EmbeddedKafka;
use cdc_relay::transform::{header, Routes};
use serde_json::json;

use crate::util;

/// 6,000 records over 3 source partitions, 40 users each, transformed by 4 concurrent
/// tasks in chunks of 64: for every key, messages sit in one output partition, in
/// source-offset order, and none is lost or duplicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_order_survives_concurrency() {
    let kafka = EmbeddedKafka::start(3).expect("mock cluster");
    kafka
        .cluster()
        .create_topic("entities", 6, 1)
        .expect("topic");
    let routes = Routes::parse(
        "[[route]]\ntable = \"public.*\"\ntopic = \"entities\"\nkey = [\"user_id\"]\n",
        "test",
    )
    .expect("routes");
    let relay = util::relay(
        &kafka,
        routes,
        &[("RELAY_CONCURRENCY", "4"), ("RELAY_CHUNK_SIZE", "64")],
    );

    let mut builder = util::EventBuilder::new();
    let tables = ["orders", "payments", "shipments"];
    for (partition, table) in tables.iter().enumerate() {
        for i in 0..2000_i64 {
            let user = format!("{table}-user-{}", (i * 7) % 40);
            let op = if i < 40 { "insert" } else { "update" };
            builder = builder.data(
                "dms.cdc",
                partition as i64,
                1000 + i,
                op,
                table,
                json!({"user_id": user, "seq": i}),
            );
        }
    }
    let response = util::invoke(&relay, builder.build())
        .await
        .expect("success");
    assert!(response.batch_item_failures.is_empty());

    let messages = util::consume(&kafka, &["entities"]);
    assert_eq!(messages.len(), 6000, "every record exactly once");
    let mut last: HashMap<Vec<u8>, (i32, i64)> = HashMap::new();
    for m in &messages {
        // Consumed per partition in offset order: source offsets must rise per key.
        let key = m.key.clone().expect("keyed");
        let offset: i64 = m
            .header(header::SOURCE_OFFSET)
            .and_then(|o| o.parse().ok())
            .expect("offset header");
        let value: serde_json::Value =
            serde_json::from_slice(m.value.as_deref().expect("value")).expect("json");
        assert_eq!(
            value["data"]["seq"],
            offset - 1000,
            "value belongs to its header's record"
        );
        if let Some((partition, previous)) = last.insert(key.clone(), (m.partition, offset)) {
            assert_eq!(
                partition,
                m.partition,
                "key {:?} split over partitions",
                String::from_utf8_lossy(&key)
            );
            assert!(
                offset > previous,
                "key {:?}: offset {offset} after {previous}",
                String::from_utf8_lossy(&key)
            );
        }
    }
    assert_eq!(last.len(), 120, "3 tables x 40 users");
}

/// Batches on either side of the bound under which a batch is transformed on the
/// invocation's own task instead of in tasks (32 records, one chunk, 64 KiB): every
/// record is produced once, in source order, its value its own, whichever way it went.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_around_the_inline_bound_produce_every_record_in_order() {
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    let routes = |topic: &str| {
        Routes::parse(
            &format!("[[route]]\ntable = \"public.*\"\ntopic = \"{topic}\"\nkey = [\"id\"]\n"),
            "test",
        )
        .expect("routes")
    };
    // (records, chunk size, bytes of padding per value)
    let cases = [
        (1, 256, 0),
        (31, 256, 0),
        (32, 256, 0),
        (33, 256, 0),
        (20, 10, 0),
        (8, 256, 10_000),
    ];
    for (records, chunk, padding) in cases {
        let topic = format!("inline-{records}-{chunk}-{padding}");
        kafka.cluster().create_topic(&topic, 1, 1).expect("topic");
        let chunk_size = chunk.to_string();
        let relay = util::relay(
            &kafka,
            routes(&topic),
            &[
                ("RELAY_CONCURRENCY", "2"),
                ("RELAY_CHUNK_SIZE", &chunk_size),
            ],
        );
        let mut builder = util::EventBuilder::new();
        for i in 0..records {
            builder = builder.data(
                "dms.cdc",
                0,
                1000 + i,
                "insert",
                "things",
                json!({"id": i, "pad": "x".repeat(padding)}),
            );
        }
        let response = util::invoke(&relay, builder.build())
            .await
            .expect("success");
        assert!(
            response.batch_item_failures.is_empty(),
            "{topic}: {:?}",
            response.batch_item_failures
        );
        let messages = util::consume(&kafka, &[topic.as_str()]);
        let offsets: Vec<i64> = messages
            .iter()
            .map(|m| {
                let value: serde_json::Value =
                    serde_json::from_slice(m.value.as_deref().expect("value")).expect("json");
                let offset: i64 = m
                    .header(header::SOURCE_OFFSET)
                    .and_then(|o| o.parse().ok())
                    .expect("offset header");
                assert_eq!(value["data"]["id"], offset - 1000, "{topic}: its own value");
                offset
            })
            .collect();
        let expected: Vec<i64> = (1000..1000 + records).collect();
        assert_eq!(offsets, expected, "{topic}: every record once, in order");
    }
}
