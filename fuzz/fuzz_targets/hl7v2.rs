//! HL7 v2: any text parses to an ORU or a rejection, and an ACK can be built for either.
#![no_main]
use medmesh_codecs::hl7v2::{AckCode, ack, parse_oru};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let header = match parse_oru(&text, 1_700_000_000_000) {
        Ok(oru) => oru.header,
        Err(rejection) => rejection.header,
    };
    let _ = ack(
        &header,
        AckCode::Error,
        &text,
        "FUZZ",
        "20260101000000+0000",
    );
});
