//! Decode + transform of DMS records whose rows have many columns in table order (not
//! by name), for instruction-level profiles of the column selection:
//!
//! ```text
//! cargo build --release -p cdc-relay-core --example wide
//! valgrind --tool=callgrind --toggle-collect='wide::pass' target/release/examples/wide 40
//! ```
//! Instructions per record = the callgrind total / 4,000. The argument is the number of
//! columns per row (default 40); every record is an update with a full before-image.

use std::hint::black_box;

use cdc_relay_core::dms::Decoder;
use cdc_relay_core::source::SourcePosition;
use cdc_relay_core::transform::{Routes, Transformed, Transformer};

const RECORDS: usize = 4_000;

fn main() {
    let columns: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(40);
    // Table order: the key first, then the rest in an order that is not by name.
    let names: Vec<String> = std::iter::once("id".to_owned())
        .chain((1..columns).map(|i| format!("col_{:02}", (i * 7) % columns)))
        .collect();
    let distinct: std::collections::HashSet<&String> = names.iter().collect();
    assert_eq!(
        distinct.len(),
        columns,
        "every column named once: choose a count that 7 does not divide"
    );
    let row = |n: usize| {
        let cells: Vec<String> = names
            .iter()
            .enumerate()
            .map(|(i, name)| format!("\"{name}\":{}", n * 100 + i))
            .collect();
        format!("{{{}}}", cells.join(","))
    };
    let documents: Vec<String> = (0..RECORDS)
        .map(|n| {
            format!(
                "{{\"data\":{},\"before-image\":{},\"metadata\":{{\"timestamp\":\"2024-11-21T14:40:00.123456Z\",\
                 \"record-type\":\"data\",\"operation\":\"update\",\"partition-key-type\":\"schema-table\",\
                 \"schema-name\":\"app\",\"table-name\":\"wide\",\"transaction-id\":{n}}}}}",
                row(n + 1),
                row(n)
            )
        })
        .collect();
    let routes = Routes::parse(
        "[[route]]\ntable = \"app.wide\"\ntopics = [\"wide\"]\nkey = [\"id\"]\nexclude = [\"col_03\"]\n",
        "routes",
    )
    .expect("valid routes");
    let (decoder, transformer) = (Decoder::default(), Transformer::new(routes));
    let messages = pass(&documents, &decoder, &transformer);
    // One event per update: otherwise the count measured an error path.
    assert_eq!(messages, RECORDS, "every record made its message");
    println!("{messages} messages");
}

#[inline(never)]
fn pass(documents: &[String], decoder: &Decoder, transformer: &Transformer) -> usize {
    let mut messages = 0;
    for (offset, document) in documents.iter().enumerate() {
        let change = decoder.decode(document.as_bytes()).expect("decodes");
        let position = SourcePosition {
            cluster: "cluster",
            timestamp_ms: 1_732_200_000_000,
            topic: "dms",
            partition: 0,
            offset: offset as i64,
            kafka_key: None,
        };
        if let Ok(Transformed::Messages(m)) = black_box(transformer.transform(position, &change)) {
            messages += m.len();
        }
    }
    messages
}
