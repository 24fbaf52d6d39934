//! Hot reload: a new config is swapped in atomically under load without
//! losing queries; a broken one is rejected and the old one keeps serving.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use hickory_proto::rr::RecordType;

const LONDON: &str = "81.2.69.0/24";

/// The A addresses `server` answers a London client for turn.example.com.
fn london(server: SocketAddr) -> Vec<String> {
    addrs(&udp(
        server,
        "turn.example.com.",
        RecordType::A,
        ecs(LONDON),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_config_without_losing_queries_and_rejects_bad_ones() {
    let base = demo_toml(&demo_mmdb());
    let dir = demo_dir("reload", &base);
    let cfg = dir.join("g.toml");
    let node = start_file(&cfg).await;
    let s = node.dns.addrs[0];
    assert_eq!(london(s), ["127.0.2.1"]);

    // Load: a client thread sending queries back to back, counting answers.
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, answered) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load = {
        let (stop, sent, answered) = (stop.clone(), sent.clone(), answered.clone());
        std::thread::spawn(move || {
            let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let q = build("turn.example.com.", RecordType::A, ecs(LONDON));
            let mut buf = [0u8; 1500];
            while !stop.load(Ordering::Relaxed) {
                sock.send_to(&q, s).unwrap();
                sent.fetch_add(1, Ordering::Relaxed);
                if sock.recv(&mut buf).is_ok() {
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    // Move eu-central's relay to another address and back, 20 times.
    let moved = base.replace("\"127.0.2.1\"", "\"127.0.2.9\"");
    for i in 0..20 {
        std::fs::write(&cfg, if i % 2 == 0 { &moved } else { &base }).unwrap();
        node.reload().expect("valid config reloads");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::fs::write(&cfg, &moved).unwrap();
    node.reload().unwrap();
    assert_eq!(london(s), ["127.0.2.9"]);

    // A broken config is rejected with its errors; the old one keeps serving.
    std::fs::write(
        &cfg,
        moved.replace("latitude = 50.1109", "latitude = 500.0"),
    )
    .unwrap();
    let err = node.reload().unwrap_err();
    assert!(
        err.to_string().contains("regions.eu-central.latitude"),
        "{err}"
    );
    std::fs::write(dir.join("example.com.zone"), "garbage here\n").unwrap();
    std::fs::write(&cfg, &base).unwrap();
    let err = node.reload().unwrap_err();
    assert!(err.to_string().contains("example.com.zone:1"), "{err}");
    assert_eq!(london(s), ["127.0.2.9"]);

    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    let (sent, answered) = (
        sent.load(Ordering::Relaxed),
        answered.load(Ordering::Relaxed),
    );
    assert!(sent > 100, "load ran ({sent} queries)");
    assert_eq!(sent, answered, "queries lost during reloads");
    node.dns.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Writes a database placing London (81.2.69.0/24) in Singapore to
/// `dir/geo.mmdb.new` and renames it over `dir/geo.mmdb`.
fn replace_with_singapore_db(dir: &std::path::Path) {
    use geosteer::geo::build::{parse_source, write_mmdb};
    let src = parse_source("81.2.69.0/24,AS,SG,1.29,103.85,Singapore\n", "new").unwrap();
    let bytes = write_mmdb(&src, "test-City", "test", 1).unwrap();
    std::fs::write(dir.join("geo.mmdb.new"), bytes).unwrap();
    std::fs::rename(dir.join("geo.mmdb.new"), dir.join("geo.mmdb")).unwrap();
}

/// Waits (bounded) until London is steered to Singapore's relay.
async fn wait_for_singapore(s: SocketAddr) {
    let start = std::time::Instant::now();
    while london(s) != ["127.0.3.1"] {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the new database was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_the_geoip_database_file_reloads_it() {
    let dir = demo_dir("geowatch", &demo_toml("geo.mmdb"));
    std::fs::copy(repo("geoip/demo.mmdb"), dir.join("geo.mmdb")).unwrap();
    let node = start_file(&dir.join("g.toml")).await;
    let s = node.dns.addrs[0];
    assert_eq!(london(s), ["127.0.2.1"]);
    replace_with_singapore_db(&dir);
    wait_for_singapore(s).await;
    assert_eq!(node.shared().state.load().generation, 2);
    node.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The race behind the old one-in-six failure: the file is replaced after
/// the database was loaded but before the watcher first looks at it. The
/// watcher compares with the stamp taken at load, so it still reloads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_between_load_and_the_first_watch_is_not_missed() {
    use geosteer::config::Config;
    use geosteer::dns::ServeState;
    use geosteer::node::Node;
    let dir = demo_dir("georace", &demo_toml("geo.mmdb"));
    std::fs::copy(repo("geoip/demo.mmdb"), dir.join("geo.mmdb")).unwrap();
    let st = ServeState::load(Config::load(&dir.join("g.toml")).unwrap(), 1).unwrap();
    replace_with_singapore_db(&dir);
    let node = Node::start(st).await.unwrap();
    let s = node.dns.addrs[0];
    wait_for_singapore(s).await;
    assert_eq!(node.shared().state.load().generation, 2);
    node.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
