//! The DMS decoder: any bytes as a Kafka record value, read by the decoder's scanner and
//! by serde_json (the reference it replaced). Both must accept and refuse alike and read
//! the same event, the decoder's values slices of the input; neither may panic. The first
//! byte picks the before-image field's name, among names that collide with the others.
//! Before the comparison the decoder reads the input itself (or, for an input of odd
//! length, a record in DMS's order), so that the metadata's keys are guessed from it.
#![no_main]

use libfuzzer_sys::fuzz_target;

const BEFORE_FIELDS: [&str; 5] = ["before-image", "data", "metadata", "control", "old"];

/// A record whose metadata keys come in DMS's order, to guess from.
const PRIMER: &[u8] = br#"{"data":{"id":1},"metadata":{"timestamp":"2024-11-21T14:40:00.123456Z","record-type":"data","operation":"insert","partition-key-type":"schema-table","schema-name":"s","table-name":"t","transaction-id":1}}"#;

fuzz_target!(|data: &[u8]| {
    let (before, value) = match data.split_first() {
        Some((&pick, rest)) if pick < 5 => (BEFORE_FIELDS[usize::from(pick)], rest),
        _ => ("before-image", data),
    };
    let decoder = cdc_relay_core::dms::Decoder::new(before);
    // The metadata reader guesses its keys from the metadata read before it on the
    // thread: from this input's own (read once first) or, for inputs of odd length, from
    // a document in DMS's order; never from an earlier input's, so that a finding
    // reproduces alone.
    cdc_relay_core::dms::forget_metadata_order();
    let _ = decoder.decode(if value.len() % 2 == 0 { value } else { PRIMER });
    if let Err(difference) = cdc_relay_core::dms::compare_with_serde(&decoder, value) {
        panic!("the readings differ on {:?} ({before}):\n{difference}", String::from_utf8_lossy(value));
    }
});
