//! Failover detection benchmark (not a test): real relays on loopback, a
//! steering DNS node probing them every 500 ms with fall 2 / rise 2. For each
//! trial, stop one relay at a random moment, measure the time until the DNS no
//! longer returns it; restart it and measure the time until it is returned
//! again. Prints min/median/max.
//!
//! `cargo bench --bench failover [-- TRIALS]` (default 20).

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use geosteer::config::Config;
use geosteer::dns::ServeState;
use geosteer::node::Node;
use geosteer_relay::RelayConfig;

const REGIONS: [(&str, f64, f64, &str); 2] = [
    ("us-east", 39.04, -77.49, "127.0.91.1"),
    ("eu-central", 50.11, 8.68, "127.0.92.1"),
];

fn relay_config(region: &str, ip: &str, http: &str) -> RelayConfig {
    toml::from_str(&format!(
        "region = \"{region}\"\n[listen]\nudp = [\"{ip}:0\"]\ntcp = [\"{ip}:0\"]\nhttp = \"{http}\"\n[relay]\nips = [\"{ip}\"]\n[auth]\nsecrets = [\"bench-secret\"]\n"
    ))
    .expect("relay config")
}

/// A query for turn.example.com A with ECS 81.2.69.0/24 (London → eu-central).
fn query(id: u16) -> Vec<u8> {
    let mut p = id.to_be_bytes().to_vec();
    p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 1]);
    p.extend_from_slice(b"\x04turn\x07example\x03com\x00\x00\x01\x00\x01");
    p.extend_from_slice(&[
        0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 11, 0, 8, 0, 7, 0, 1, 24, 0, 81, 2, 69,
    ]);
    p
}

/// Whether the answer contains `ip` (A record data).
fn answers_with(sock: &UdpSocket, dns: SocketAddr, ip: [u8; 4], id: u16) -> bool {
    sock.send_to(&query(id), dns).expect("send");
    let mut buf = [0u8; 1500];
    match sock.recv(&mut buf) {
        Ok(n) => buf[..n]
            .windows(6)
            .any(|w| w[..2] == [0, 4] && w[2..] == ip),
        Err(_) => false,
    }
}

fn stats(name: &str, v: &mut [Duration]) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name:<28} n={:<3} min {:>7.0} ms   median {:>7.0} ms   max {:>7.0} ms",
        v.len(),
        ms(v[0]),
        ms(v[v.len() / 2]),
        ms(v[v.len() - 1])
    );
}

fn main() {
    let trials: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20);
    let dir = std::env::temp_dir().join(format!("geosteer-failover-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut handles = Vec::new();
    let mut cfg = format!(
        // The probe loop polls every 5 ms: near the default RRL rate, and a
        // slipped answer would read as "removed", so loopback is allow-listed.
        "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_workers = 1\n[server.rrl]\nallow = [\"127.0.0.0/8\"]\n[geoip]\ndatabase = {:?}\n[health]\ninterval_ms = 500\ntimeout_ms = 400\nrise = 2\nfall = 2\nflap_threshold = 1000\n",
        concat!(env!("CARGO_MANIFEST_DIR"), "/geoip/demo.mmdb")
    );
    let mut members = String::new();
    for (i, (region, lat, lon, ip)) in REGIONS.iter().enumerate() {
        let h = geosteer_relay::start(relay_config(region, ip, &format!("{ip}:0"))).expect("relay");
        cfg.push_str(&format!(
            "[regions.{region}]\nlatitude = {lat}\nlongitude = {lon}\n"
        ));
        members.push_str(&format!("  {{ name = \"m{i}\", region = \"{region}\", addresses = [\"{ip}\"], health_url = \"http://{}/health\" }},\n", h.http));
        handles.push(Some(h));
    }
    cfg.push_str(&format!("[pools.turn]\nmembers = [\n{members}]\n[[zones]]\norigin = \"example.com\"\nfile = \"z.zone\"\n[[zones.steered]]\nname = \"turn\"\npool = \"turn\"\n"));
    std::fs::write(
        dir.join("z.zone"),
        "@ 3600 IN SOA ns hm 1 2 3 4 60\n@ 3600 IN NS ns\nns 3600 IN A 192.0.2.53\n",
    )
    .unwrap();
    std::fs::write(dir.join("g.toml"), cfg).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let node = rt.block_on(async {
        Node::start(ServeState::load(Config::load(&dir.join("g.toml")).unwrap(), 1).unwrap())
            .await
            .unwrap()
    });
    let dns = node.dns.addrs[0];
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let eu = [127, 0, 92, 1];
    let http = handles[1].as_ref().unwrap().http;
    let mut down = Vec::new();
    let mut up = Vec::new();
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    let mut id = 0u16;
    println!("failover detection: {trials} trials, probe interval 500 ms, timeout 400 ms, fall 2, rise 2");
    for t in 0..trials {
        // Wait a random 0..1 s so the stop lands anywhere in the probe cycle.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(seed % 1000));
        assert!(
            answers_with(&sock, dns, eu, id),
            "trial {t}: eu-central not answered before the stop"
        );
        let stop = Instant::now();
        handles[1].take().unwrap().stop();
        while answers_with(&sock, dns, eu, {
            id = id.wrapping_add(1);
            id
        }) {
            std::thread::sleep(Duration::from_millis(5));
            assert!(
                stop.elapsed() < Duration::from_secs(30),
                "no failover after 30 s"
            );
        }
        down.push(stop.elapsed());
        // Restart at a random moment too, not right after the failing probe.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(seed % 1000));
        let start = Instant::now();
        handles[1] = Some(
            geosteer_relay::start(relay_config("eu-central", "127.0.92.1", &http.to_string()))
                .expect("restart"),
        );
        while !answers_with(&sock, dns, eu, {
            id = id.wrapping_add(1);
            id
        }) {
            std::thread::sleep(Duration::from_millis(5));
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no recovery after 30 s"
            );
        }
        up.push(start.elapsed());
        eprintln!(
            "trial {t:>2}: removed after {:>5.0} ms, back after {:>5.0} ms",
            down[t].as_secs_f64() * 1000.0,
            up[t].as_secs_f64() * 1000.0
        );
    }
    stats("stop -> no longer answered", &mut down);
    stats("restart -> answered again", &mut up);
    rt.block_on(node.shutdown());
    for h in handles.into_iter().flatten() {
        h.stop();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
