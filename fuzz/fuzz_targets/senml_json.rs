//! SenML JSON: any bytes decode to observations and rejections, or an error; never a panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = medmesh_codecs::senml::decode_json(data, 1_700_000_000_000);
});
