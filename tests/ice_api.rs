//! `POST /v1/ice-servers` and the status page.

mod common;

use common::*;
use geosteer::node::Node;

const KEY: &str = "ice-api-key-0123456789";
const OLD_KEY: &str = "ice-api-key-rotated-out-1";
const SECRET: &str = "relay-shared-secret";

async fn node(mode: &str, test: &str) -> Node {
    let text = demo_toml(&demo_mmdb())
        + &format!("\n[ice]\napi_keys = [\"{KEY}\", \"{OLD_KEY}\"]\nsecrets = [\"{SECRET}\"]\nmax_ttl = 7200\ndefault_ttl = 1800\nmode = \"{mode}\"\n");
    let dir = demo_dir(&format!("ice-{test}"), &text);
    start_file(&dir.join("g.toml")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_servers_in_hostname_mode() {
    let n = node("hostname", "hostname").await;
    let url = format!("http://{}/v1/ice-servers", n.api_addr.unwrap());
    let c = reqwest::Client::new();
    let r = post_body(&c, &url, None, "{\"ttl\":600}").await;
    assert_eq!(r.status, 401);
    let r = post_body(&c, &url, Some("not-a-key-not-a-key"), "{}").await;
    assert_eq!(r.status, 401);
    for (body, want) in [
        ("{\"ttl\":", "body:"),
        ("{\"ttl\":-5}", "body:"),
        ("{\"ttl\":0}", "ttl:"),
        ("{\"ttl\":99999}", "ttl: must be within 1..=7200"),
        ("{\"client_ip\":\"nope\"}", "client_ip:"),
        ("{\"user\":\"a b\"}", "user:"),
        ("{\"colour\":1}", "unknown field"),
        ("[]", "body:"),
    ] {
        let r = post_body(&c, &url, Some(KEY), body).await;
        assert_eq!(r.status, 400, "{body}");
        let v = r.json();
        assert!(v["error"].as_str().unwrap().contains(want), "{body}: {v}");
    }
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for key in [KEY, OLD_KEY] {
        let r = post_body(&c, &url, Some(key), "{\"ttl\":3600,\"user\":\"alice\"}").await;
        assert_eq!(r.status, 201);
        let v = r.json();
        let s = &v["iceServers"];
        assert_eq!(s[0]["urls"][0], "stun:turn.example.com:3478");
        assert_eq!(
            s[1]["urls"],
            serde_json::json!([
                "turn:turn.example.com:3478?transport=udp",
                "turn:turn.example.com:3478?transport=tcp",
                "turns:turn.example.com:5349?transport=tcp"
            ])
        );
        let user = s[1]["username"].as_str().unwrap();
        let (expiry, name) = user.split_once(':').unwrap();
        let expiry: u64 = expiry.parse().unwrap();
        assert_eq!(name, "alice");
        assert!(
            (before + 3600..=before + 3602).contains(&expiry),
            "{expiry} vs {before}"
        );
        assert_eq!(
            s[1]["credential"],
            geosteer_relay::auth::rest_password(SECRET.as_bytes(), user)
        );
    }
    // An empty body gets the default TTL.
    let r = post(&c, &url, Some(KEY)).await;
    assert_eq!(r.status, 201);
    let v = r.json();
    assert_eq!(v["ttl"], 1800);
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_servers_in_direct_mode_name_the_steered_relays() {
    let n = node("direct", "direct").await;
    let url = format!("http://{}/v1/ice-servers", n.api_addr.unwrap());
    let c = reqwest::Client::new();
    for (ip, relay) in [
        ("81.2.69.7", "127.0.2.1"),
        ("1.0.0.9", "127.0.3.1"),
        ("8.8.8.8", "127.0.1.1"),
    ] {
        let body = format!("{{\"ttl\":60,\"client_ip\":\"{ip}\"}}");
        let r = post_body(&c, &url, Some(KEY), &body).await;
        assert_eq!(r.status, 201);
        let v = r.json();
        assert_eq!(
            v["iceServers"][1]["urls"][0],
            format!("turn:{relay}:3478?transport=udp"),
            "{ip}"
        );
    }
    // Without client_ip the caller (loopback: unknown to GeoIP, default order) is used.
    let v = post_body(&c, &url, Some(KEY), "{\"ttl\":60}").await.json();
    assert_eq!(v["iceServers"][0]["urls"][0], "stun:127.0.1.1:3478");
    n.shutdown().await;
}

/// `turns:` URLs only for relays in regions with TLS (`[regions.X] tls`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turns_urls_only_where_the_region_has_tls() {
    for mode in ["direct", "hostname"] {
        let text = demo_toml(&demo_mmdb()).replace(
            "description = \"Singapore, SG\"",
            "description = \"Singapore, SG\"\ntls = false",
        ) + &format!(
            "\n[ice]\napi_keys = [\"{KEY}\"]\nsecrets = [\"{SECRET}\"]\nmode = \"{mode}\"\n"
        );
        let dir = demo_dir(&format!("ice-tls-{mode}"), &text);
        let n = start_file(&dir.join("g.toml")).await;
        let url = format!("http://{}/v1/ice-servers", n.api_addr.unwrap());
        let c = reqwest::Client::new();
        for (ip, turns) in [("81.2.69.7", true), ("1.0.0.9", false)] {
            let body = format!("{{\"client_ip\":\"{ip}\"}}");
            let v = post_body(&c, &url, Some(KEY), &body).await.json();
            let urls: Vec<&str> = v["iceServers"][1]["urls"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u.as_str().unwrap())
                .collect();
            assert_eq!(
                urls.iter().any(|u| u.starts_with("turns:")),
                turns,
                "{mode} {ip}: {urls:?}"
            );
            assert!(
                urls.iter().any(|u| u.ends_with("?transport=tcp")),
                "{urls:?}"
            );
        }
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_lists_regions_and_members() {
    let n = node("hostname", "status").await;
    let c = reqwest::Client::new();
    let html = get(&c, &format!("http://{}/", n.api_addr.unwrap()))
        .await
        .body;
    for want in [
        "<table id=\"regions\">",
        "data-region=\"eu-central\"",
        "data-member=\"turn/euc1-a\"",
        "Frankfurt",
    ] {
        assert!(html.contains(want), "{want} missing in\n{html}");
    }
    n.shutdown().await;
}

/// `api_keys_file` and `secrets_file`: what geosteer-fetch-secrets writes on
/// a cloud node. A rotated key or secret takes effect on reload, no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_and_secrets_from_files_follow_a_reload() {
    let text = demo_toml(&demo_mmdb())
        + "\n[ice]\napi_keys_file = \"ice-api-keys\"\nsecrets_file = \"turn-secrets\"\n";
    let dir = demo_dir("ice-files", &text);
    std::fs::write(dir.join("ice-api-keys"), format!("# one per line\n{KEY}\n")).unwrap();
    std::fs::write(dir.join("turn-secrets"), format!("{SECRET}\n")).unwrap();
    let n = start_file(&dir.join("g.toml")).await;
    let url = format!("http://{}/v1/ice-servers", n.api_addr.unwrap());
    let c = reqwest::Client::new();
    let credential = |v: &serde_json::Value, secret: &str| {
        let user = v["iceServers"][1]["username"].as_str().unwrap().to_string();
        v["iceServers"][1]["credential"]
            == geosteer_relay::auth::rest_password(secret.as_bytes(), &user)
    };
    let r = post(&c, &url, Some(KEY)).await;
    assert_eq!(r.status, 201);
    assert!(credential(&r.json(), SECRET));
    assert_eq!(post(&c, &url, Some(OLD_KEY)).await.status, 401);

    // Rotation: a new key replaces the old one, a new secret goes first.
    std::fs::write(dir.join("ice-api-keys"), format!("{OLD_KEY}\n")).unwrap();
    std::fs::write(
        dir.join("turn-secrets"),
        format!("new-{SECRET}\n{SECRET}\n"),
    )
    .unwrap();
    n.reload().unwrap();
    assert_eq!(post(&c, &url, Some(KEY)).await.status, 401);
    let r = post(&c, &url, Some(OLD_KEY)).await;
    assert_eq!(r.status, 201);
    assert!(credential(&r.json(), &format!("new-{SECRET}")));

    // A key file that loses every key is refused; the node keeps serving.
    std::fs::write(dir.join("ice-api-keys"), "# emptied by mistake\n").unwrap();
    let err = n.reload().unwrap_err().to_string();
    assert!(
        err.contains("ice.api_keys_file") && err.contains("no key in the file"),
        "{err}"
    );
    std::fs::write(dir.join("ice-api-keys"), "short\n").unwrap();
    let err = n.reload().unwrap_err().to_string();
    assert!(err.contains("at least 16 characters"), "{err}");
    assert_eq!(post(&c, &url, Some(OLD_KEY)).await.status, 201);
    n.shutdown().await;
}
