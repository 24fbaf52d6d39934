//! `GET /`: a small status page — regions, members, state, utilization and
//! recent changes — rendered on the server and refreshed by the browser.

use std::fmt::Write as _;

use axum::extract::State;
use axum::response::Html;

use super::Api;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub(super) async fn page(State(api): State<Api>) -> Html<String> {
    let st = api.node.shared.state.load();
    let members = api.node.hub.state();
    let events = api.node.hub.events();
    let mut h = String::with_capacity(8192);
    let _ = write!(
        h,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>geosteer status</title>
<meta http-equiv="refresh" content="2">
<style>body{{font:14px system-ui,sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;margin-bottom:2em}}
td,th{{border:1px solid #ccc;padding:.3em .7em;text-align:left}}.up{{background:#dfd}}.down,.forced-down,.drained{{background:#fdd}}
.draining,.shedding,.shed{{background:#ffd}}</style></head><body>
<h1>geosteer</h1><p>Config <code>{}</code> · generation {} · GeoIP {}</p>"#,
        esc(&st.config.path.display().to_string()),
        st.generation,
        esc(&st.geo.describe())
    );
    h.push_str("<h2>Regions</h2><table id=\"regions\"><tr><th>region</th><th>location</th><th>usable members</th></tr>");
    for r in &st.steering.regions {
        let ms: Vec<_> = members.iter().filter(|m| m.region == r.name).collect();
        let usable = ms.iter().filter(|m| m.usable).count();
        let desc = &st.config.file.regions[&r.name].description;
        let _ = write!(
            h,
            "<tr data-region=\"{0}\" class=\"{1}\"><td>{0}</td><td>{2} ({3:.2}, {4:.2})</td><td class=\"usable\">{5} / {6}</td></tr>",
            esc(&r.name),
            if usable > 0 { "up" } else { "down" },
            esc(desc),
            r.coords.0,
            r.coords.1,
            usable,
            ms.len()
        );
    }
    h.push_str("</table><h2>Members</h2><table id=\"members\"><tr><th>member</th><th>region</th><th>state</th><th>utilization</th><th>last probe</th></tr>");
    for m in &members {
        let probe = m.last_probe.as_ref().map(|p| match &p.error {
            Some(e) => format!("failed {} ms ago: {}", p.ago_ms, esc(e)),
            None => format!("ok {} ms ago, {:.1} ms", p.ago_ms, p.latency_ms),
        });
        let _ = write!(
            h,
            "<tr data-member=\"{0}\" class=\"{1}\"><td>{0}</td><td>{2}</td><td class=\"state\">{1}</td><td class=\"utilization\">{3}</td><td>{4}</td></tr>",
            esc(&m.member),
            m.state,
            esc(&m.region),
            m.utilization.map(|u| format!("{:.0} %", u * 100.0)).unwrap_or_else(|| "-".into()),
            probe.unwrap_or_else(|| "not probed".into())
        );
    }
    h.push_str("</table><h2>Recent changes</h2><table id=\"events\"><tr><th>time (UTC)</th><th>member / region</th><th>change</th></tr>");
    for e in events.iter().rev().take(30) {
        let t = e.at_unix;
        let _ = write!(
            h,
            "<tr><td>{:02}:{:02}:{:02}</td><td>{}</td><td>{}</td></tr>",
            (t / 3600) % 24,
            (t / 60) % 60,
            t % 60,
            esc(&e.member),
            esc(&e.change)
        );
    }
    h.push_str("</table></body></html>");
    Html(h)
}
