//! The MSK event parser (the handler's payload type) and the source stage: any bytes
//! Lambda could hand the function.
#![no_main]

use cdc_relay_core::source::MskEvent;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // What the handler parses Lambda's payload bytes with.
    if let Ok(event) = MskEvent::parse(data.to_vec()) {
        for record in &event.records {
            let _ = record.decode();
            let _ = record.original_parts();
        }
    }
});
