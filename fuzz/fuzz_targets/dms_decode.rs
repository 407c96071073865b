//! The DMS decoder: any bytes as a Kafka record value.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cdc_relay_core::dms::Decoder::default().decode(data);
});
