//! Bluetooth GATT measurements: the first byte picks the characteristic, the
//! rest is its value.
#![no_main]
use medmesh_codecs::gatt::{Characteristic, decode};

const ALL: [&str; 8] = ["2a37", "2a35", "2a1c", "2a5e", "2a5f", "2a18", "2a9d", "2a19"];

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some((pick, value)) = data.split_first() {
        let which = Characteristic::parse(ALL[usize::from(*pick) % ALL.len()]).expect("known");
        let _ = decode(which, value, 1_700_000_000_000);
    }
});
