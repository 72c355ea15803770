//! The MQTT broker side's packet reading (CONNECT sniffing, then v3.1.1 and
//! v5 packets) on arbitrary bytes.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    medmesh_sources::mqtt::read_all_for_fuzzing(data);
});
