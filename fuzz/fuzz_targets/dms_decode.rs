//! The DMS decoder: any bytes as a Kafka record value, read by the decoder's scanner and
//! by serde_json (the reference it replaced). Both must accept and refuse alike and read
//! the same event; neither may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let decoder = cdc_relay_core::dms::Decoder::default();
    if let Err(difference) = cdc_relay_core::dms::compare_with_serde(&decoder, data) {
        panic!("the readings differ on {:?}:\n{difference}", String::from_utf8_lossy(data));
    }
});
