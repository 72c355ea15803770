//! SenML CBOR: any bytes decode or fail cleanly.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = medmesh_codecs::senml::decode_cbor(data, 1_700_000_000_000);
});
