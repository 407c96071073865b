//! The benchmark's ceiling: produce already-transformed messages with rdkafka and await
//! every acknowledgement, nothing else (no event parsing, no base64, no DMS, no routes).
//! Same producer configuration as cdc-relay (idempotent, acks=all), and like cdc-relay it
//! flushes once everything is enqueued, so neither waits out `linger.ms` for the last
//! messages.
//!
//!   raw_produce BROKERS ROUNDS MESSAGES.jsonl...
//!
//! Each file is the output of `cdc-relay check-routes ROUTES EVENT` for one invocation;
//! files are loaded before timing starts. Prints one JSON line per invocation.

use std::time::Instant;

use cdc_relay::kafka::producer::producer_config;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use serde_json::Value;

struct Message {
    topic: String,
    key: Option<String>,
    value: Option<String>,
    headers: Vec<(String, String)>,
}

fn load(path: &str) -> anyhow::Result<Vec<Message>> {
    let mut out = Vec::new();
    for line in std::fs::read_to_string(path)?.lines() {
        let record: Value = serde_json::from_str(line)?;
        for m in record["outcome"]["produces"]
            .as_array()
            .into_iter()
            .flatten()
        {
            out.push(Message {
                topic: m["topic"].as_str().unwrap_or_default().to_owned(),
                key: m["key"].as_str().map(str::to_owned),
                value: (!m["value"].is_null()).then(|| m["value"].to_string()),
                headers: m["headers"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect(),
            });
        }
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(
        args.len() >= 3,
        "usage: raw_produce BROKERS ROUNDS MESSAGES.jsonl..."
    );
    let (brokers, rounds) = (&args[0], args[1].parse::<usize>()?);
    let batches: Vec<(String, Vec<Message>)> = args[2..]
        .iter()
        .map(|p| load(p).map(|m| (p.clone(), m)))
        .collect::<anyhow::Result<_>>()?;
    let t0 = Instant::now();
    let producer: FutureProducer = producer_config(brokers, &[]).create()?;
    producer
        .client()
        .fetch_metadata(None, std::time::Duration::from_secs(10))?;
    println!(
        "{}",
        serde_json::json!({"init_ms": t0.elapsed().as_secs_f64() * 1e3})
    );
    for round in 0..rounds {
        for (path, messages) in &batches {
            let t = Instant::now();
            let mut futures = Vec::with_capacity(messages.len());
            for m in messages {
                let mut headers = OwnedHeaders::new_with_capacity(m.headers.len());
                for (k, v) in &m.headers {
                    headers = headers.insert(Header {
                        key: k,
                        value: Some(v),
                    });
                }
                let mut record: FutureRecord<'_, str, str> =
                    FutureRecord::to(&m.topic).headers(headers);
                if let Some(k) = &m.key {
                    record = record.key(k);
                }
                if let Some(v) = &m.value {
                    record = record.payload(v);
                }
                futures.push(producer.send_result(record).map_err(|(e, _)| e)?);
            }
            // As the relay does at the end of a batch: librdkafka sends what is queued at
            // once while a flush is under way (rdkafka's own `flush` polls with a zero
            // timeout, which ends it before the broker thread looks).
            let flusher = producer.clone();
            let flush = tokio::task::spawn_blocking(move || {
                // SAFETY: the handle belongs to `flusher`'s producer, kept alive by this
                // closure until the call returns; rd_kafka_flush may be called from any
                // thread. Each message's own delivery report decides.
                unsafe {
                    rdkafka::bindings::rd_kafka_flush(flusher.client().native_ptr(), 30_000);
                }
            });
            let mut ok = true;
            for f in futures {
                ok &= matches!(f.await, Ok(Ok(_)));
            }
            flush.await?;
            println!(
                "{}",
                serde_json::json!({"round": round, "event": path, "ms": t.elapsed().as_secs_f64() * 1e3,
                    "records": messages.len(), "messages": messages.len(), "ok": ok})
            );
        }
    }
    Ok(())
}
