//! Decode + transform with fixed routes (the example routes.toml and the flat test
//! routes): any value must give messages, a skip or an error, never a panic.
#![no_main]

use std::sync::OnceLock;

use cdc_relay_core::dms::Decoder;
use cdc_relay_core::source::SourcePosition;
use cdc_relay_core::transform::{HashKey, Routes, Transformer};
use libfuzzer_sys::fuzz_target;

fn transformers() -> &'static [Transformer; 2] {
    static T: OnceLock<[Transformer; 2]> = OnceLock::new();
    T.get_or_init(|| {
        let load = |text: &str| {
            let mut routes = Routes::parse(text, "fuzz").expect("fixed routes are valid");
            routes.set_hash_key(Some(HashKey::local())).expect("a hash key");
            Transformer::new(routes)
        };
        [
            load(include_str!("../../routes.toml")),
            load(include_str!("../../tests/routes/flat.toml")),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(event) = Decoder::default().decode(data) else {
        return;
    };
    let position = SourcePosition {
        cluster: "",
        timestamp_ms: 0,
        topic: "dms.fuzz",
        partition: 0,
        offset: 1,
        kafka_key: Some(b"public.orders"),
    };
    for transformer in transformers() {
        let first = transformer.transform(position, &event);
        assert_eq!(first, transformer.transform(position, &event), "transform is deterministic");
    }
});
