//! STUN/TURN/ChannelData input of the protocol core, with the oracle of
//! `geosteer_relay::proto::harness` (no panic, replies parse, bounded state).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = geosteer_relay::proto::harness::run(data) {
        panic!("oracle: {e}");
    }
});
