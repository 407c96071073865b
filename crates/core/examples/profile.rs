//! Decode + transform of a generated 6,000-record batch with the example routes, for
//! instruction-level profiles (the criterion bench measures time; this counts work):
//!
//! ```text
//! cargo build --release -p cdc-relay-core --example profile
//! valgrind --tool=callgrind --toggle-collect='cdc_relay_core::process' \
//!   target/release/examples/profile 3 [ROUTES.toml]
//! ```
//! Instructions per record = the callgrind total / (6,000 x the rounds argument).

use std::hint::black_box;

use cdc_relay_core::dms::Decoder;
use cdc_relay_core::generate::{generate, GenOptions};
use cdc_relay_core::source::{self, MskEvent};
use cdc_relay_core::transform::{HashKey, Routes, Transformer};

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3);
    let event = generate(&GenOptions {
        records: 6_000,
        value_bytes: 400,
        ..GenOptions::default()
    })
    .to_string();
    let MskEvent(event) = serde_json::from_str(&event).expect("generated event parses");
    let (_, records) = source::records(event);
    // A routes file to profile instead of the example (e.g. bench/routes.toml).
    let text = match std::env::args().nth(2) {
        Some(path) => std::fs::read_to_string(&path).expect("a readable routes file"),
        None => include_str!("../../../routes.toml").to_owned(),
    };
    let mut routes = Routes::parse(&text, "routes").expect("valid routes");
    routes
        .set_hash_key(Some(HashKey::local()))
        .expect("a hash key");
    let (decoder, transformer) = (Decoder::default(), Transformer::new(routes));
    let cluster = "arn:aws:kafka:eu-west-1:111122223333:cluster/cdc/abcd-1234-5";
    let mut messages = 0;
    for _ in 0..rounds {
        for record in &records {
            if let Ok(cdc_relay_core::transform::Transformed::Messages(m)) = black_box(
                cdc_relay_core::process(&decoder, &transformer, record, cluster, false).result,
            ) {
                messages += m.len();
            }
        }
    }
    println!("{} records, {messages} messages", records.len() * rounds);
}
