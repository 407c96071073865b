//! The MSK event parser and the source stage: any bytes Lambda could hand the function.
#![no_main]

use aws_lambda_events::event::kafka::KafkaEvent;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = serde_json::from_slice::<KafkaEvent>(data) {
        let (_, records) = cdc_relay::source::records(event);
        for record in &records {
            let _ = record.decode();
            let _ = record.original_parts();
        }
    }
});
