//! Replays the committed fuzz corpora (`fuzz/corpus/<target>`) through the
//! DNS side's fuzz oracles (`geosteer::dns::harness`), and runs a seeded
//! random pass per target, so the oracles run under stable `cargo test`.

use std::path::Path;

use geosteer::dns::harness::{config_text, zone_text, Dns};

/// The bytes of `fuzz/corpus/<path>`.
fn corpus_file(path: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(path),
    )
    .unwrap()
}

/// Every file of `fuzz/corpus/<target>` through `run`; how many there were.
fn replay(target: &str, run: impl Fn(&[u8]) -> Result<(), String>) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = e.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        if let Err(e) = run(&data) {
            panic!("{}: {e}", path.display());
        }
        n += 1;
    }
    n
}

/// xorshift64: the same inputs on every run.
fn random_inputs(seed: u64, count: usize, max_len: usize) -> impl Iterator<Item = Vec<u8>> {
    let mut rng = seed;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    (0..count).map(move |_| {
        let len = (next() % max_len as u64) as usize;
        (0..len).map(|_| next() as u8).collect()
    })
}

#[test]
fn dns_requests_replay_clean() {
    let dns = Dns::new();
    let n = replay("dns_handler", |d| dns.check(d));
    assert!(n >= 15, "dns_handler corpus has only {n} inputs");
    let n = replay("edns_options", |d| dns.check_options(d));
    assert!(n >= 10, "edns_options corpus has only {n} inputs");
    // Random bytes behind a valid header and question prefix reach the
    // parser's later stages more often than pure noise.
    let seed = corpus_file("dns_handler/a_ecs_london");
    for (i, tail) in random_inputs(0x9e37_79b9_7f4a_7c15, 3000, 200).enumerate() {
        let cut = i % seed.len();
        let mut data = seed[..cut].to_vec();
        data.extend_from_slice(&tail);
        if let Err(e) = dns.check(&data) {
            panic!("iteration {i}: {e}; input {data:02x?}");
        }
        if let Err(e) = dns.check_options(&tail) {
            panic!("options iteration {i}: {e}; input {tail:02x?}");
        }
    }
}

/// Text mutations of a real file: `count` runs of printable noise from
/// `alphabet` (up to `max_len` bytes each) spliced in at a point that moves
/// by `stride` bytes per iteration, each checked with `run`.
fn splice_pass(
    seed_file: &str,
    rng: u64,
    (count, max_len, stride): (usize, usize, usize),
    alphabet: &[u8],
    run: impl Fn(&[u8]) -> Result<(), String>,
) {
    let seed = corpus_file(seed_file);
    for (i, noise) in random_inputs(rng, count, max_len).enumerate() {
        let at = (i * stride) % seed.len();
        let mut data = seed[..at].to_vec();
        data.extend(noise.iter().map(|b| alphabet[*b as usize % alphabet.len()]));
        data.extend_from_slice(&seed[at..]);
        if let Err(e) = run(&data) {
            panic!(
                "iteration {i}: {e}; input {:?}",
                String::from_utf8_lossy(&data)
            );
        }
    }
}

#[test]
fn zone_files_replay_clean() {
    let n = replay("zone_file", zone_text);
    assert!(n >= 4, "zone_file corpus has only {n} inputs");
    splice_pass(
        "zone_file/kinds.zone",
        0x5851_f42d_4c95_7f2d,
        (2000, 40, 7),
        b" \t\n();$@.*\\\"0123456789abcINSOAMX:",
        zone_text,
    );
}

#[test]
fn config_files_replay_clean() {
    let n = replay("config_toml", config_text);
    assert!(n >= 3, "config_toml corpus has only {n} inputs");
    splice_pass(
        "config_toml/test.toml",
        0x2545_f491_4f6c_dd1d,
        (1000, 20, 13),
        b"[]{}=,\"'.\n 0123456789-_aetz",
        config_text,
    );
}
