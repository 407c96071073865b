//! The MSK event parser and the source stage: any bytes Lambda could hand the function.
//! What the handler parses (the payload's bytes, values shared with them) and the serde
//! reading of the same type (copies) must agree on every event; only the handler's
//! refuses bytes that are not UTF-8 where serde_json skips them unread.
#![no_main]

use cdc_relay_core::source::MskEvent;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parsed = MskEvent::parse(data.to_vec());
    let read = serde_json::from_slice::<MskEvent>(data);
    if parsed.is_ok() != read.is_ok() {
        assert!(
            parsed.is_err() && std::str::from_utf8(data).is_err(),
            "one reading accepts what the other refuses"
        );
    }
    if let (Ok(event), Ok(read)) = (parsed, read) {
        assert_eq!(event.origin, read.origin);
        assert_eq!(event.records.len(), read.records.len());
        for (record, copy) in event.records.iter().zip(&read.records) {
            assert_eq!(
                (&record.batch_partition, &record.topic, record.partition, record.offset, record.timestamp_ms),
                (&copy.batch_partition, &copy.topic, copy.partition, copy.offset, copy.timestamp_ms)
            );
            assert_eq!((&record.key, &record.value, &record.headers), (&copy.key, &copy.value, &copy.headers));
            let _ = record.decode();
            let _ = record.original_parts();
        }
    }
});
