//! The MSK event parser (the handler's payload type) and the source stage: any bytes
//! Lambda could hand the function.
#![no_main]

use cdc_relay_core::source::MskEvent;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The handler's payload type: what Lambda's JSON is parsed into.
    if let Ok(MskEvent(event)) = serde_json::from_slice::<MskEvent>(data) {
        let (_, records) = cdc_relay_core::source::records(event);
        for record in &records {
            let _ = record.decode();
            let _ = record.original_parts();
        }
    }
});
