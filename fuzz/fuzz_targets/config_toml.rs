//! The TOML configuration loader and validation: never panics; errors name
//! the file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = geosteer::dns::harness::config_text(data) {
        panic!("oracle: {e}");
    }
});
