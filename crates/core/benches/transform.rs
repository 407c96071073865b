//! Criterion benches of the pure stages, on one core (no broker, no C library): MSK
//! event parsing with base64, DMS decode, transform, and decode with transform of a
//! whole batch (`cdc_relay_core::process`, what the pipeline runs per record).
//! Throughput is reported per record and per byte of DMS value.

use std::hint::black_box;

use cdc_relay_core::dms::Decoder;
use cdc_relay_core::generate::{generate, GenOptions};
use cdc_relay_core::process;
use cdc_relay_core::source::SourcePosition;
use cdc_relay_core::source::{MskEvent, SourceRecord};
use cdc_relay_core::transform::{HashKey, Routes, Transformer};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

const RECORDS: usize = 6_000;

/// The source cluster event ids are made for.
const CLUSTER: &str = "arn:aws:kafka:eu-west-1:111122223333:cluster/cdc/abcd-1234-5";

fn event() -> (String, Vec<SourceRecord>, Vec<Vec<u8>>) {
    let json = generate(&GenOptions {
        records: RECORDS,
        value_bytes: 400,
        ..GenOptions::default()
    })
    .to_string();
    let records = MskEvent::parse(json.clone().into_bytes())
        .expect("generated event parses")
        .records;
    let values = records
        .iter()
        .map(|r| {
            r.decode()
                .expect("generated records decode")
                .value
                .unwrap_or_default()
        })
        .collect();
    (json, records, values)
}

fn routes() -> Routes {
    let mut routes = Routes::parse(include_str!("../../../routes.toml"), "routes.toml")
        .expect("example routes are valid");
    routes
        .set_hash_key(Some(HashKey::local()))
        .expect("a hash key");
    routes
}

fn stages(c: &mut Criterion) {
    let (json, records, values) = event();
    let body = bytes::Bytes::from(json);
    let value_bytes: u64 = values.iter().map(|v| v.len() as u64).sum();
    let decoder = Decoder::default();
    let transformer = Transformer::new(routes());
    let changes: Vec<_> = values
        .iter()
        .map(|v| decoder.decode(v).expect("valid"))
        .collect();

    let mut g = c.benchmark_group("records");
    g.throughput(Throughput::Elements(RECORDS as u64));
    g.bench_function("msk_parse_and_base64", |b| {
        b.iter(|| {
            let event = MskEvent::parse(black_box(body.clone())).expect("parses");
            for r in &event.records {
                black_box(r.decode().expect("decodes"));
            }
        })
    });
    g.bench_function("dms_decode", |b| {
        b.iter(|| {
            for v in &values {
                black_box(decoder.decode(black_box(v)).expect("valid"));
            }
        })
    });
    g.bench_function("transform", |b| {
        b.iter(|| {
            for (i, change) in changes.iter().enumerate() {
                let pos = SourcePosition {
                    cluster: CLUSTER,
                    timestamp_ms: 1_732_200_000_000,
                    topic: "dms.cdc",
                    partition: 0,
                    offset: i as i64,
                    kafka_key: Some(b"public.orders"),
                };
                black_box(
                    transformer
                        .transform(pos, black_box(change))
                        .expect("transforms"),
                );
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Bytes(value_bytes));
    g.bench_function("decode_and_transform_bytes", |b| {
        b.iter_batched(
            || records.clone(),
            |records| {
                for r in &records {
                    let _ = black_box(process(&decoder, &transformer, r, CLUSTER, false).result);
                }
            },
            BatchSize::LargeInput,
        )
    });
    g.throughput(Throughput::Elements(RECORDS as u64));
    g.bench_function("decode_and_transform_records", |b| {
        b.iter(|| {
            for r in &records {
                let _ = black_box(process(&decoder, &transformer, r, CLUSTER, false).result);
            }
        })
    });
    // What an invocation does before it produces: the MSK event parsed from its bytes
    // (shared, as the runtime hands them over), then each record decoded and transformed.
    g.bench_function("parse_decode_and_transform_records", |b| {
        b.iter(|| {
            let event = MskEvent::parse(black_box(body.clone())).expect("parses");
            for r in &event.records {
                let _ = black_box(process(&decoder, &transformer, r, CLUSTER, false).result);
            }
        })
    });
    // The peers' mapping (bench/routes.toml): include, rename and keys only, none of the
    // options that cost per record (filter, hash, truncate); what the side-by-side
    // benchmark runs.
    let plain = Transformer::new(
        Routes::parse(
            include_str!("../../../bench/routes.toml"),
            "bench/routes.toml",
        )
        .expect("bench routes are valid"),
    );
    g.bench_function("decode_and_transform_records_bench_routes", |b| {
        b.iter(|| {
            for r in &records {
                let _ = black_box(process(&decoder, &plain, r, CLUSTER, false).result);
            }
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = stages
}
criterion_main!(benches);
