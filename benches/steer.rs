//! Micro-benchmarks of the hot paths, without sockets:
//! - `decide`: the pure steering decision;
//! - `handle/*`: the whole per-packet pipeline (parse, locate, cache, finish)
//!   on cache hits and misses, and for names the zone does not hold (a
//!   random-subdomain flood) or zones it does not serve, as the UDP workers
//!   run it;
//! - `rrl/check`: response rate limiting's per-answer accounting.

use std::net::IpAddr;
use std::path::Path;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use geosteer::config::Config;
use geosteer::dns::{ServeState, Shared, Transport};
use geosteer::geo::Location;
use geosteer::health::HealthSnapshot;
use geosteer::steer::{decide, Placement};

fn state() -> ServeState {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/test.toml");
    ServeState::load(Config::load(&path).unwrap(), 1).unwrap()
}

/// A query for turn.example.com A with ECS `a.b.c.0/24`.
fn query(a: u8, b: u8, c: u8) -> Vec<u8> {
    let mut p = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
    p.extend_from_slice(b"\x04turn\x07example\x03com\x00\x00\x01\x00\x01");
    p.extend_from_slice(&[
        0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 11, 0, 8, 0, 7, 0, 1, 24, 0, a, b, c,
    ]);
    p
}

/// A query for `<label>.<zone>` A with EDNS (no options).
fn random_label(label: &str, zone: &[u8]) -> Vec<u8> {
    let mut p = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
    p.push(label.len() as u8);
    p.extend_from_slice(label.as_bytes());
    p.extend_from_slice(zone);
    p.extend_from_slice(&[0, 1, 0, 1]);
    p.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    p
}

fn bench(c: &mut Criterion) {
    let st = state();
    let health = HealthSnapshot::all_up(st.steering.members.len(), 1);
    let paris = Location {
        latitude: Some(48.85),
        longitude: Some(2.35),
        country: Some("FR".into()),
        continent: Some("EU".into()),
        city: None,
    };
    let ip: IpAddr = "192.0.2.1".parse().unwrap();
    let pool = st.steering.pool_id("wide").unwrap();
    c.bench_function("decide/4-member region, 2 answers", |b| {
        let mut h = 0u64;
        b.iter(|| {
            h = h.wrapping_add(0x9E37_79B9_7F4A_7C15);
            decide(
                &st.steering,
                &health,
                pool,
                Placement::of(&st.steering, ip, Some(&paris)),
                h,
                2,
            )
        })
    });

    let shared = Shared::new(
        state(),
        HealthSnapshot::all_up(st.steering.members.len(), 1),
    );
    let src: IpAddr = "127.0.0.1".parse().unwrap();
    let queries: Vec<Vec<u8>> = (0..10_000u32)
        .map(|i| query(193 + (i % 3) as u8 * 20, (i >> 8) as u8, i as u8))
        .collect();
    let mut out = Vec::with_capacity(4096);
    // A worker without a cache of its own (the shared cache only), and a
    // UDP worker's (its own cache in front).
    let mut shared_only = shared.worker(Transport::Tcp);
    let mut udp = shared.worker(Transport::Udp);
    {
        let (s, h) = shared.view();
        for q in &queries {
            shared.handle(&s, &h, q, src, Transport::Udp, &mut shared_only, &mut out);
        }
    }
    c.bench_function("handle/cache hit, 10k mixed ECS subnets", |b| {
        let (s, h) = shared.view();
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % queries.len();
            shared.handle(
                &s,
                &h,
                &queries[i],
                src,
                Transport::Udp,
                &mut shared_only,
                &mut out,
            )
        })
    });
    c.bench_function(
        "handle/worker-local cache hit, 10k mixed ECS subnets",
        |b| {
            let (s, h) = shared.view();
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % queries.len();
                shared.handle(&s, &h, &queries[i], src, Transport::Udp, &mut udp, &mut out)
            })
        },
    );
    for (what, zone) in [
        ("NXDOMAIN", &b"\x07example\x03com\x00"[..]),
        ("REFUSED", &b"\x07example\x03net\x00"[..]),
    ] {
        let names: Vec<Vec<u8>> = (0..10_000u64)
            .map(|i| {
                let label = format!("{:x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                random_label(&label, zone)
            })
            .collect();
        c.bench_function(&format!("handle/{what}, 10k random labels"), |b| {
            let (s, h) = shared.view();
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % names.len();
                shared.handle(&s, &h, &names[i], src, Transport::Udp, &mut udp, &mut out)
            })
        });
    }
    {
        use geosteer::dns::rrl::{Class, RrlParams, RrlTable};
        let mut cfg = st.config.file.server.rrl.clone();
        cfg.enabled = true;
        let params = RrlParams::from(&cfg);
        let mut table = RrlTable::new(cfg.table_size, 7);
        let sources: Vec<IpAddr> = (0..10_000u32)
            .map(|i| IpAddr::from([198, 18 + (i >> 16) as u8, (i >> 8) as u8, i as u8]))
            .collect();
        c.bench_function("rrl/check, 10k sources in 40 /24s", |b| {
            let mut i = 0;
            let mut now = 0u64;
            b.iter(|| {
                i = (i + 1) % sources.len();
                now += (i == 0) as u64;
                table.check(&params, sources[i], Class::Answer, now, false)
            })
        });
    }
    c.bench_function("handle/cache miss (engine + encode)", |b| {
        let (s, h) = shared.view();
        b.iter_batched(
            || shared.cache.clear(),
            |_| {
                shared.handle(
                    &s,
                    &h,
                    &queries[7],
                    src,
                    Transport::Udp,
                    &mut shared_only,
                    &mut out,
                )
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
