#!/bin/sh
# Checks the shipped Prometheus rules (promtool check + unit tests) and that
# the Grafana dashboard is valid JSON naming only metrics the code exports.
set -eu
here=$(cd "$(dirname "$0")/../.." && pwd)
mon="$here/packaging/monitoring"
command -v promtool >/dev/null || { echo "40-monitoring: promtool missing (Debian package prometheus)"; exit 1; }
echo "40-monitoring: promtool check rules"
promtool check rules "$mon/geosteer-rules.yml"
echo "40-monitoring: promtool test rules"
(cd "$mon" && promtool test rules geosteer-rules.test.yml)
echo "40-monitoring: dashboard JSON and metric names"
python3 - "$mon/geosteer-fleet.json" "$here" <<'PY'
import json, re, sys, pathlib
dash = json.load(open(sys.argv[1]))
root = pathlib.Path(sys.argv[2])
src = "".join(p.read_text() for d in ("src", "relay/src") for p in (root / d).rglob("*.rs"))
exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
rules = (root / "packaging/monitoring/geosteer-rules.yml").read_text()
bad = []
for e in exprs + re.findall(r"expr: (.*)", rules):
    for m in re.findall(r"(?<![:\w])((?:turn|geosteer)_[a-z_]+)(?![:\w])", e):
        base = re.sub(r"_(bucket|sum|count)$", "", m)
        if base not in src and m not in src:
            bad.append(m)
if bad:
    sys.exit("unknown metrics: " + ", ".join(sorted(set(bad))))
print(f"  {len(dash['panels'])} panels, {len(exprs)} queries: metric names exist")
PY
