//! A whole DNS request through the handler, over UDP and TCP, with the
//! oracle of `geosteer::dns::harness::Dns::check` (no panic; a reply parses,
//! has the query's id and question and fits the client's UDP size).
#![no_main]

use std::sync::OnceLock;

use geosteer::dns::harness::Dns;
use libfuzzer_sys::fuzz_target;

static DNS: OnceLock<Dns> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    if let Err(e) = DNS.get_or_init(Dns::new).check(data) {
        panic!("oracle: {e}");
    }
});
