//! EDNS option parsing (Client Subnet, Cookie): `data` is the OPT RDATA of a
//! well-formed query, run through the handler with the same oracle as
//! `dns_handler`.
#![no_main]

use std::sync::OnceLock;

use geosteer::dns::harness::Dns;
use libfuzzer_sys::fuzz_target;

static DNS: OnceLock<Dns> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    if let Err(e) = DNS.get_or_init(Dns::new).check_options(data) {
        panic!("oracle: {e}");
    }
});
