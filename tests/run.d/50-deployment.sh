#!/usr/bin/env bash
# Deployment checks (issue 10): Terraform modules, rendered configs, systemd
# units, the Debian package. Under CI=true a missing tool fails the check.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export TF_CLI_CONFIG_FILE="$tmp/terraformrc" TF_IN_AUTOMATION=1 CHECKPOINT_DISABLE=1
: > "$TF_CLI_CONFIG_FILE"
say() { echo "50-deployment: $*"; }
missing() {
  if [[ ${CI:-} == true ]]; then say "FAIL: $1 missing (CI=true)"; exit 1; fi
  say "SKIP: $1 missing; $2"
}
tf=0; command -v terraform >/dev/null && tf=1

# 1. Terraform: fmt everywhere, validate + test the provider-free module.
if ((tf)); then
  say "terraform fmt -check -recursive terraform"
  terraform fmt -check -recursive -diff terraform
  for d in terraform/modules/geosteer-config terraform/examples/render; do
    say "terraform init/validate $d"
    terraform -chdir="$d" init -backend=false -input=false -no-color >/dev/null
    terraform -chdir="$d" validate -no-color
  done
  say "terraform test (modules/geosteer-config)"
  terraform -chdir=terraform/modules/geosteer-config test -no-color
  # Self-contained: the module's folder alone (a registry-style copy), used
  # by an absolute local path, still plans and passes its tests.
  say "geosteer-config from a copy of its folder, by absolute path"
  cp -r terraform/modules/geosteer-config "$tmp/mod"
  rm -rf "$tmp/mod/.terraform" "$tmp/mod/.terraform.lock.hcl"
  terraform -chdir="$tmp/mod" init -backend=false -input=false -no-color >/dev/null
  terraform -chdir="$tmp/mod" test -no-color >/dev/null
  mkdir "$tmp/root"
  sed -e "s#source *= *\"../../modules/geosteer-config\"#source = \"$tmp/mod\"#" \
    terraform/examples/render/main.tf > "$tmp/root/main.tf"
  grep -q "source = \"$tmp/mod\"" "$tmp/root/main.tf" || { say "FAIL: examples/render has no module source to rewrite"; exit 1; }
  terraform -chdir="$tmp/root" init -backend=false -input=false -no-color >/dev/null
  terraform -chdir="$tmp/root" plan -input=false -no-color -var "config_dir=$tmp/root-etc" >/dev/null
else
  missing terraform "fmt, validate, test and rendering are not checked"
fi

# 2. Every .tf parses (python-hcl2).
if python3 -c 'import hcl2' 2>/dev/null; then
  say "python-hcl2 parse of every .tf"
  python3 - <<'PY'
import hcl2, pathlib, sys
files = sorted(p for p in pathlib.Path("terraform").rglob("*.tf") if ".terraform" not in p.parts)
for p in files:
    with open(p) as f:
        try:
            hcl2.load(f)
        except Exception as e:
            sys.exit(f"{p}: {e}")
print(f"  {len(files)} files parse")
PY
else
  missing "python-hcl2 (pip)" "HCL parse not checked"
fi

# 2b. examples/global: module inputs against module variables, one provider
# and module block per accepted AWS region (terraform validate needs the AWS
# provider, which cannot be downloaded here).
if python3 -c 'import hcl2' 2>/dev/null; then
  say "examples/global: inputs, providers and regions"
  python3 tests/support/check_global_example.py terraform/examples/global
fi

# 3. checkov on the cloud modules (skips are justified next to each resource).
aws_modules=(terraform/modules/aws-* terraform/examples/global)
if [[ -e ${aws_modules[0]} ]]; then
  if command -v checkov >/dev/null; then
    for m in "${aws_modules[@]}"; do
      say "checkov $m"
      checkov -d "$m" --framework terraform --quiet --compact --skip-download
    done
  else
    missing "checkov (pip)" "cloud modules not scanned"
  fi
fi

# 4. Render a three-region deployment and check every file for real.
if ((tf)); then
  say "build geosteer and geosteer-relay"
  nice cargo build -q -p geosteer -p geosteer-relay --bins
  bin="$root/target/debug"
  etc="$tmp/etc"; mkdir -p "$etc/secrets" "$etc/tls" "$tmp/units"
  r=terraform/examples/render
  terraform -chdir="$r" apply -auto-approve -input=false -no-color -state="$tmp/tf.tfstate" \
    -var "config_dir=$etc" >/dev/null
  terraform -chdir="$r" output -state="$tmp/tf.tfstate" -json > "$tmp/out.json"
  python3 - "$tmp/out.json" "$etc" <<'PY'
import json, sys, pathlib
out = json.load(open(sys.argv[1]))
etc = pathlib.Path(sys.argv[2])
for name, text in out["files"]["value"].items():
    (etc / name).write_text(text)
json.dump(out["relay_firewall"]["value"], open(etc / "relay_firewall.json", "w"))
json.dump(out["dns_firewall"]["value"], open(etc / "dns_firewall.json", "w"))
PY
  cp geoip/demo.mmdb "$etc/GeoLite2-City.mmdb"
  # What geosteer-fetch-secrets writes at boot, with throwaway values.
  printf 'test-secret-0123456789\n' > "$etc/secrets/turn-secrets"
  printf 'test-api-token-0123456789\n' > "$etc/secrets/api-token"
  printf 'test-ice-api-key-0123456789\n' > "$etc/secrets/ice-api-keys"
  printf '{"turn_secrets": ["new-secret-0123456789", "old-secret-0123456789"], "nonce_key": "nonce-key-0123456789abcdef"}\n' > "$tmp/secret.json"
  if command -v openssl >/dev/null; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=turn.example.com \
      -keyout "$etc/tls/key.pem" -out "$etc/tls/cert.pem" 2>/dev/null
  else
    : > "$etc/tls/key.pem"; : > "$etc/tls/cert.pem"
  fi
  say "geosteer check (rendered geosteer.toml + zone)"
  "$bin/geosteer" check --config "$etc/geosteer.toml"
  say "geosteer check (rendered anycast agent) + bird -p (rendered BIRD include)"
  "$bin/geosteer" check --config "$etc/anycast.toml"
  grep -q 'speaker = { kind = "bird"' "$etc/anycast.toml" || { say "FAIL: the rendered agent does not drive BIRD"; exit 1; }
  if command -v bird >/dev/null; then
    # The operator's bird.conf: a session to their router, exporting the
    # agent's protocols, and the rendered include.
    printf 'router id 192.0.2.11;\nprotocol device {}\ninclude "%s";\nprotocol bgp up { local 192.0.2.11 as 64512; neighbor 192.0.2.1 as 64500; ipv4 { import none; export where proto ~ "anycast_*"; next hop self; }; }\n' \
      "$etc/bird-geosteer-anycast.conf" > "$tmp/bird.conf"
    bird -p -c "$tmp/bird.conf"
    # Every protocol the agent names exists in the include, disabled.
    for p in $(sed -n 's/^bird_protocol = "\(.*\)"/\1/p' "$etc/anycast.toml"); do
      grep -A1 "^protocol static $p {" "$etc/bird-geosteer-anycast.conf" | grep -q disabled \
        || { say "FAIL: $p is not a disabled static protocol of the include"; exit 1; }
    done
  else
    missing bird "the rendered BIRD include is not parsed"
  fi
  for base in "$etc"/relay-*.toml.base; do
    final=${base%.base}
    say "geosteer-relay-finish-config + geosteer-relay check ($(basename "$final"))"
    PATH="$bin:$PATH" packaging/scripts/geosteer-relay-finish-config "$base" "$tmp/secret.json" 10.0.1.5 192.0.2.10 "$final"
    "$bin/geosteer-relay" check --config "$final"
  done
  say "a broken base is refused by finish-config"
  sed '/^\[relay\]/,$d' "$etc/relay-us-east.toml.base" > "$tmp/bad.base"
  if PATH="$bin:$PATH" packaging/scripts/geosteer-relay-finish-config "$tmp/bad.base" "$tmp/secret.json" 10.0.1.5 "" "$tmp/bad.toml" 2>/dev/null; then
    say "FAIL: finish-config accepted a base without [relay]"; exit 1
  fi

  say "secret names: what aws-relay-region creates == what each region's user-data reads"
  python3 - "$tmp/out.json" <<'PY'
import json, re, sys, pathlib
out = json.load(open(sys.argv[1]))
names = out["secret_names"]["value"]["relay"]
for region in names:
    text = out["files"]["value"][f"relay-{region}-user-data.yaml"]
    want = f"[/usr/lib/geosteer/geosteer-fetch-secrets, relay, {names[region]}]"
    if want not in text:
        sys.exit(f"relay user-data of {region} does not fetch {names[region]}")
tf = pathlib.Path("terraform/modules/aws-relay-region/main.tf").read_text()
m = re.search(r'resource "aws_secretsmanager_secret" "relay" \{[^}]*?\bname\s*=\s*(\S+)', tf, re.S)
if not m or m.group(1) != "var.secret_name":
    sys.exit(f"aws-relay-region: the secret must be named var.secret_name as given, found {m and m.group(1)}")
# One name per region for the group, its EIP pool tag and the metric's
# dimension: the user-data's helpers get relay_group_names[region], and
# aws-relay-region names all three by the same rule.
groups = out["relay_group_names"]["value"]
for region, g in groups.items():
    text = out["files"]["value"][f"relay-{region}-user-data.yaml"]
    if f"[/usr/lib/geosteer/geosteer-aws-claim-eip, {g}, /etc/geosteer/public-ip]" not in text:
        sys.exit(f"relay user-data of {region} does not claim from pool {g}")
rule = '"geosteer-${var.deployment}-${var.region_name}"'
if not re.search(r'^\s*name\s*=\s*' + re.escape(rule) + r'\s*$', tf, re.M):
    sys.exit(f"aws-relay-region: local.name must be {rule}")
cfg = pathlib.Path("terraform/modules/geosteer-config/main.tf").read_text()
if not re.search(r'relay_group_name\s*=\s*' + re.escape('{ for r in var.regions : r.name => "geosteer-${var.deployment}-${r.name}" }'), cfg):
    sys.exit("geosteer-config: relay_group_names must follow the rule aws-relay-region uses")
if any(g != f"geosteer-prod-{r}" for r, g in groups.items()):
    sys.exit(f"relay_group_names: {groups}")
for what, pat in [("ASG name", r'resource "aws_autoscaling_group" "relay" \{\s*name\s*=\s*local\.name'),
                  ("EIP pool tag", r'"geosteer:pool"\s*=\s*local\.name'),
                  ("metric dimension", r'name\s*=\s*"AutoScalingGroupName"\s*\n\s*value\s*=\s*local\.name'),
                  ("hook named drain", r'initial_lifecycle_hook \{\s*name\s*=\s*"drain"')]:
    if not re.search(pat, tf):
        sys.exit(f"aws-relay-region: {what} must be local.name")
lc = pathlib.Path("packaging/scripts/geosteer-aws-lifecycle").read_text()
if "hook=${GEOSTEER_HOOK:-drain}" not in lc:
    sys.exit("geosteer-aws-lifecycle's default hook must be the module's 'drain'")
fetch = pathlib.Path("packaging/scripts/geosteer-fetch-secrets").read_text()
if not re.search(r'name=\$2\b', fetch) or '--secret-id "$name"' not in fetch:
    sys.exit("geosteer-fetch-secrets must read the secret named by its second argument")
print(f"  {len(names)} regions: user-data, module and helpers agree on secret, group, pool, metric and hook names")
PY

  say "security-group ports == rendered listen ports"
  python3 - "$etc" <<'PY'
import json, sys, pathlib, tomllib, re
etc = pathlib.Path(sys.argv[1])
fw = json.load(open(etc / "relay_firewall.json"))
opened = {(r["protocol"], r["from"], r["to"], r["source"]) for r in fw}
for p in sorted(etc.glob("relay-*.toml")):
    c = tomllib.loads(p.read_text())
    port = lambda a: int(a.rsplit(":", 1)[1])
    listens = {("udp", port(a), port(a), "public") for a in c["listen"]["udp"]}
    listens |= {("tcp", port(a), port(a), "public") for a in c["listen"]["tcp"] + c["listen"].get("tls", [])}
    listens.add(("udp", c["relay"]["port_min"], c["relay"]["port_max"], "public"))
    listens.add(("tcp", port(c["listen"]["http"]), port(c["listen"]["http"]), "dns_nodes"))
    if listens != opened:
        sys.exit(f"{p.name}: opened-not-listened {sorted(opened - listens)}, listened-not-opened {sorted(listens - opened)}")
print(f"  {len(opened)} rules match the listeners of every relay")
# DNS nodes: what the rendered geosteer.toml listens on (DNS public, the
# admin/ICE API for admin_cidrs) is exactly dns_firewall.
dfw = json.load(open(etc / "dns_firewall.json"))
d_opened = {(r["protocol"], r["from"], r["to"], r["source"]) for r in dfw}
c = tomllib.loads((etc / "geosteer.toml").read_text())
port = lambda a: int(a.rsplit(":", 1)[1])
d_listens = {(proto, port(a), port(a), "public") for a in c["server"]["listen"] for proto in ("udp", "tcp")}
d_listens.add(("tcp", port(c["api"]["listen"]), port(c["api"]["listen"]), "admin"))
if d_listens != d_opened:
    sys.exit(f"geosteer.toml: opened-not-listened {sorted(d_opened - d_listens)}, listened-not-opened {sorted(d_listens - d_opened)}")
print(f"  {len(d_opened)} rules match the listeners of the DNS nodes")
# The cloud modules build their ingress only from those lists (plus SSH, 22
# only and only from ssh_cidrs).
for m, fw_var, want in [
    ("aws-relay-region", "relay_firewall", {"public": "local.public_rules", "dns_nodes": "local.dns_rules", "ssh": "toset(var.ssh_cidrs)"}),
    ("aws-dns-node", "dns_firewall", {"public": "local.public_rules", "admin": "local.admin_rules", "ssh": "toset(var.ssh_cidrs)"}),
]:
    m = pathlib.Path("terraform/modules") / m
    text = "".join(f.read_text() for f in m.glob("*.tf"))
    if re.search(r"^\s*ingress\s*\{", text, re.M):
        sys.exit(f"{m}: inline ingress blocks; rules must come from {fw_var}")
    rules = dict(re.findall(r'resource "aws_vpc_security_group_ingress_rule" "(\w+)" \{\n\s*for_each\s*=\s*(.*)', text))
    if rules != want:
        sys.exit(f"{m}: ingress resources {rules}, expected {want}")
    if not re.search(r"rules\s*=\s*\{\s*for r in var." + fw_var, text):
        sys.exit(f"{m}: local.rules must be built from var.{fw_var}")
    if not re.search(r'"ssh"[^}]*from_port\s*=\s*22\s*\n\s*to_port\s*=\s*22', text, re.S):
        sys.exit(f"{m}: the ssh rule must open 22 only")
    print(f"  {m}: ingress only from {fw_var} (+ SSH from ssh_cidrs, default none)")
PY

  if command -v systemd-analyze >/dev/null; then
    say "systemd-analyze verify (rendered units == terraform/modules/geosteer-config/files)"
    for u in terraform/modules/geosteer-config/files/*.service terraform/modules/geosteer-config/files/*.timer; do
      cmp "$u" "$etc/$(basename "$u")"
      # verify needs the binaries where ExecStart names them.
      sed -e "s#/usr/bin/geosteer#$bin/geosteer#g" -e "s#/usr/lib/geosteer/#$root/packaging/scripts/#g" \
        "$u" > "$tmp/units/$(basename "$u")"
    done
    out=$(systemd-analyze verify "$tmp"/units/*.service "$tmp"/units/*.timer 2>&1 || true)
    echo "$out" | grep -v -e 'Failed to connect to bus' -e '^$' > "$tmp/verify.log" || true
    if [[ -s $tmp/verify.log ]]; then cat "$tmp/verify.log"; say "FAIL: systemd-analyze verify"; exit 1; fi
  else
    missing systemd-analyze "units not verified"
  fi
fi

# 5. The Debian package: build, contents, unit files.
if command -v cargo-deb >/dev/null || cargo install --list | grep -q '^cargo-deb '; then
  say "cargo deb (dev profile; publish with the release profile)"
  nice cargo build -q -p geosteer -p geosteer-relay --bins
  deb=$(cargo deb -p geosteer --no-build --profile dev --fast -o "$tmp/" 2>&1 | tail -1)
  [[ -f $deb ]] || { echo "$deb"; say "FAIL: no .deb"; exit 1; }
  dpkg-deb -I "$deb" > "$tmp/info"
  dpkg-deb -c "$deb" > "$tmp/contents"
  for f in ./usr/bin/geosteer ./usr/bin/geosteer-relay ./usr/lib/systemd/system/geosteer.service \
    ./usr/lib/systemd/system/geosteer-relay.service ./usr/lib/sysctl.d/60-geosteer-relay.conf \
    ./usr/lib/sysusers.d/geosteer.conf ./usr/lib/geosteer/geosteer-fetch-secrets \
    ./usr/lib/geosteer/geosteer-relay-finish-config ./usr/share/geosteer/examples/relay.toml \
    ./usr/lib/systemd/system/geosteer-anycast.service ./usr/lib/geosteer/geosteer-anycast-start \
    ./usr/share/geosteer/examples/anycast/exabgp.conf ./usr/share/doc/geosteer/anycast.md \
    ./usr/share/doc/geosteer/deployment.md ./usr/share/doc/geosteer/relay.md; do
    grep -q " $f\$" "$tmp/contents" || { say "FAIL: $f not in the package"; cat "$tmp/contents"; exit 1; }
  done
  grep -q '^ Package: geosteer$' "$tmp/info" && grep -q 'postinst' "$tmp/info" || { cat "$tmp/info"; say "FAIL: package metadata"; exit 1; }
  mkdir "$tmp/deb"; dpkg-deb -x "$deb" "$tmp/deb"
  for u in terraform/modules/geosteer-config/files/*.service terraform/modules/geosteer-config/files/*.timer; do
    cmp "$u" "$tmp/deb/usr/lib/systemd/system/$(basename "$u")"
  done
  say "package $(basename "$deb"): $(wc -l < "$tmp/contents") entries, units identical to terraform/modules/geosteer-config/files"

  # 6. dpkg -i three times into a throwaway copy of this machine (an overlay
  # on / in a private mount namespace, discarded after): the postinst is
  # idempotent, the user is created once, units and helpers are in place.
  if [[ $(id -u) == 0 ]] && command -v unshare >/dev/null && command -v chroot >/dev/null; then
    say "dpkg -i three times in a throwaway root (overlay on /)"
    cp "$deb" "$tmp/geosteer.deb"
    unshare -m bash -eu -s "$tmp" <<'OUTER'
o=$1/overlay
mkdir -p "$o"
mount -t tmpfs tmpfs "$o"
mkdir -p "$o/u" "$o/w" "$o/m"
mount -t overlay overlay -o "lowerdir=/,upperdir=$o/u,workdir=$o/w" "$o/m"
mount --bind /proc "$o/m/proc"
mount --bind /dev "$o/m/dev"
cp "$1/geosteer.deb" "$o/m/geosteer.deb"
chroot "$o/m" sh -eu <<'IN'
export DEBIAN_FRONTEND=noninteractive
fail() { echo "50-deployment: FAIL: $*"; exit 1; }
# The real test: no leftovers of an earlier geosteer in this copy.
! getent passwd geosteer >/dev/null || userdel geosteer
getent group bird >/dev/null || groupadd --system bird
for i in 1 2 3; do
  dpkg -i /geosteer.deb > /tmp/dpkg.log 2>&1 || { cat /tmp/dpkg.log; fail "dpkg -i #$i"; }
  [ "$i" = 1 ] && uid=$(id -u geosteer)
done
[ "$(id -u geosteer)" = "$uid" ] || fail "the geosteer user changed between installs"
[ "$(grep -c '^geosteer:' /etc/passwd)" = 1 ] || fail "geosteer in /etc/passwd more than once"
[ "$(grep -c '^geosteer:' /etc/group)" = 1 ] || fail "group geosteer more than once"
grep '^bird:' /etc/group | tr ':,' '\n\n' | grep -cx geosteer | grep -qx 1 || fail "geosteer not in group bird exactly once"
[ "$(stat -c '%a %U:%G' /etc/geosteer)" = "750 root:geosteer" ] || fail "/etc/geosteer is $(stat -c '%a %U:%G' /etc/geosteer)"
for f in /usr/lib/systemd/system/geosteer.service /usr/lib/systemd/system/geosteer-relay.service \
  /usr/lib/systemd/system/geosteer-anycast.service /usr/lib/geosteer/geosteer-anycast-start /usr/bin/geosteer; do
  [ -e "$f" ] || fail "$f missing after install"
done
! systemctl is-enabled geosteer-anycast.service >/dev/null 2>&1 || fail "units must not be enabled by the package"
/usr/bin/geosteer --version >/dev/null || fail "installed geosteer does not run"
dpkg -r geosteer > /tmp/dpkg.log 2>&1 || { cat /tmp/dpkg.log; fail "dpkg -r"; }
[ ! -e /usr/bin/geosteer ] || fail "dpkg -r left /usr/bin/geosteer"
echo "  installed 3 times: uid $uid kept, user and group once, in group bird once, /etc/geosteer 750 root:geosteer, units present and not enabled; removed cleanly"
IN
OUTER
  else
    missing "root, unshare or chroot" "dpkg -i idempotency not checked"
  fi
else
  missing cargo-deb "tests/run.sh installs it (tests/deps.d/deployment.txt)"
fi
say "ok"
