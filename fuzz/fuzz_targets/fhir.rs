//! FHIR Observation / Bundle JSON: decode or fail cleanly.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = medmesh_codecs::fhir::decode(data);
});
