//! The MSK event parsed from its bytes, then decode + transform of each of its 6,000
//! generated records with the example routes: what an invocation does before it
//! produces, for instruction-level profiles (the criterion bench measures time; this
//! counts work):
//!
//! ```text
//! cargo build --release -p cdc-relay-core --example profile
//! valgrind --tool=callgrind --toggle-collect='profile::pass' \
//!   target/release/examples/profile 3 [ROUTES.toml]
//! ```
//! Instructions per record = the callgrind total / (6,000 x the rounds argument).

use std::hint::black_box;

use cdc_relay_core::dms::Decoder;
use cdc_relay_core::generate::{generate, GenOptions};
use cdc_relay_core::source::MskEvent;
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
    let body = bytes::Bytes::from(event);
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
    let (mut records, mut messages) = (0, 0);
    for _ in 0..rounds {
        let (r, m) = pass(&body, &decoder, &transformer, cluster);
        records += r;
        messages += m;
    }
    println!("{records} records, {messages} messages");
}

/// One event: parsed from its bytes (a shared copy of them, as Lambda's runtime hands
/// them over), each record decoded and transformed. Returns records and messages.
#[inline(never)]
fn pass(
    body: &bytes::Bytes,
    decoder: &Decoder,
    transformer: &Transformer,
    cluster: &str,
) -> (usize, usize) {
    let event = MskEvent::parse(black_box(body.clone())).expect("generated event parses");
    let mut messages = 0;
    for record in &event.records {
        if let Ok(cdc_relay_core::transform::Transformed::Messages(m)) =
            black_box(cdc_relay_core::process(decoder, transformer, record, cluster, false).result)
        {
            messages += m.len();
        }
    }
    (event.records.len(), messages)
}
