//! Replays the committed fuzz corpora (`relay/fuzz/corpus/proto`) through the
//! protocol core's fuzz harness, and runs a seeded random-input pass, so the
//! fuzz oracle (no panic, replies parse, bounded state) runs under stable
//! `cargo test`.

use geosteer_relay::proto::harness::run;

#[test]
fn committed_corpus_replays_clean() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/proto");
    let (mut n, mut allocating) = (0, 0);
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = e.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        match run(&data) {
            Ok(peak) => allocating += (peak > 0) as usize,
            Err(e) => panic!("{}: {e}", path.display()),
        }
        n += 1;
    }
    assert!(n >= 4, "corpus at {} has only {n} inputs", dir.display());
    // The seeds reach authenticated states, not just the parser.
    assert!(allocating >= 4, "only {allocating} inputs allocate");
}

#[test]
fn seeded_random_inputs() {
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for i in 0..1500 {
        let len = (next() % 600) as usize;
        let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if let Err(e) = run(&data) {
            panic!("iteration {i}: {e}; input {data:02x?}");
        }
    }
}
