//! The MSK event parser and the source stage: any bytes Lambda could hand the function.
//! What the handler parses (the payload's bytes, values shared with them, read by the
//! core's scanner) and the serde reading of the same type (copies) must agree on every
//! event, except where `compare_with_serde` says they differ on purpose.
#![no_main]

use cdc_relay_core::source::{compare_with_serde, MskEvent};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(difference) = compare_with_serde(data) {
        panic!("the readings differ on {:?}:\n{difference}", String::from_utf8_lossy(data));
    }
    if let Ok(event) = MskEvent::parse(data.to_vec()) {
        for record in &event.records {
            let _ = record.decode();
            let _ = record.original_parts();
        }
    }
});
