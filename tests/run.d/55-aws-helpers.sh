#!/usr/bin/env bash
# The AWS boot and runtime helpers of the package, against stand-ins for the
# instance metadata service and the AWS CLI (tests/support/aws_standin.py; no
# AWS is reachable from a test) and a real geosteer-relay on loopback:
#   geosteer-aws-claim-eip    pool address claimed, kept on reboot, races
#                             settled, an exhausted pool fails clearly
#   geosteer-aws-utilization  the relay's /health utilization published with
#                             the group's dimension; nothing while draining
#   geosteer-aws-lifecycle    nothing while InService; on Terminated the relay
#                             drains and exits, then the hook is completed
#   geosteer-fetch-secrets    --reload: unchanged = no action, a rotated relay
#                             secret reloads the relay, a DNS token restarts
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
say() { echo "55-aws-helpers: $*"; }
fail() { say "FAIL: $*"; exit 1; }
for c in curl jq python3 shuf; do
  command -v "$c" >/dev/null || {
    if [[ ${CI:-} == true ]]; then fail "$c missing (CI=true)"; fi
    say "SKIP: $c missing"; exit 0
  }
done
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
scripts=$root/packaging/scripts
export AWS_STANDIN_STATE=$tmp/aws
mkdir -p "$AWS_STANDIN_STATE" "$tmp/bin"
printf '#!/bin/sh\nexec python3 %s/tests/support/aws_standin.py cli "$@"\n' "$root" > "$tmp/bin/aws"
chmod +x "$tmp/bin/aws"
nice cargo build -q -p geosteer-relay --bins
export PATH="$tmp/bin:$root/target/debug:$PATH"

# EC2 as the test starts: pool geosteer-test-r1 has three addresses, one held
# by another instance; another group's pool has a free one.
cat > "$AWS_STANDIN_STATE/ec2.json" <<'JSON'
{"addresses": [
 {"AllocationId": "eipalloc-1", "PublicIp": "192.0.2.11", "Tags": {"geosteer:pool": "geosteer-test-r1"}},
 {"AllocationId": "eipalloc-2", "PublicIp": "192.0.2.12", "Tags": {"geosteer:pool": "geosteer-test-r1"}, "InstanceId": "i-other", "AssociationId": "eipassoc-0"},
 {"AllocationId": "eipalloc-3", "PublicIp": "192.0.2.13", "Tags": {"geosteer:pool": "geosteer-test-r1"}},
 {"AllocationId": "eipalloc-9", "PublicIp": "198.51.100.9", "Tags": {"geosteer:pool": "geosteer-test-r2"}}
],
 "secrets": {
  "geosteer/test/relay/r1": "{\"turn_secrets\": [\"s1-0123456789abcdef\"], \"nonce_key\": \"nonce-key-0123456789abcdef\"}",
  "geosteer/test/dns": "{\"turn_secrets\": [\"s1-0123456789abcdef\"], \"api_token\": \"token-1-0123456789\", \"ice_api_keys\": [\"ice-key-1-0123456789\"]}"
 }}
JSON
# start_imds INSTANCE: a metadata stand-in for one instance; url INSTANCE.
start_imds() {
  python3 tests/support/aws_standin.py imds "$tmp/imds-$1.port" "$1" "$AWS_STANDIN_STATE" > "$tmp/imds-$1.log" 2>&1 &
  pids+=($!)
}
url() {
  for _ in $(seq 100); do [[ -s $tmp/imds-$1.port ]] && break; sleep 0.05; done
  [[ -s $tmp/imds-$1.port ]] || fail "metadata stand-in for $1 did not start: $(cat "$tmp/imds-$1.log")"
  echo "http://127.0.0.1:$(cat "$tmp/imds-$1.port")"
}
holder() { jq -r --arg i "$1" '[.addresses[] | select(.InstanceId == $i) | .PublicIp] | join(" ")' "$AWS_STANDIN_STATE/ec2.json"; }
associations() { jq '[.calls[] | select(.op == "associate-address")] | length' "$AWS_STANDIN_STATE/ec2.json"; }

# 1. geosteer-aws-claim-eip
say "claim-eip: a free address of the right pool"
for i in i-a i-b i-c; do start_imds $i; done
ia=$(url i-a); ib=$(url i-b); ic=$(url i-c)
ip=$(GEOSTEER_IMDS=$ia "$scripts/geosteer-aws-claim-eip" geosteer-test-r1 "$tmp/public-ip-a")
[[ $ip == 192.0.2.11 || $ip == 192.0.2.13 ]] || fail "i-a claimed '$ip', not a free address of geosteer-test-r1"
[[ $(cat "$tmp/public-ip-a") == "$ip" && $(holder i-a) == "$ip" ]] || fail "i-a: file $(cat "$tmp/public-ip-a"), EC2 says $(holder i-a)"
[[ $(holder i-other) == 192.0.2.12 ]] || fail "the other instance's address was taken"
n=$(associations)
say "claim-eip: a reboot keeps the address, without a new association"
again=$(GEOSTEER_IMDS=$ia "$scripts/geosteer-aws-claim-eip" geosteer-test-r1 "$tmp/public-ip-a")
[[ $again == "$ip" && $(associations) == "$n" ]] || fail "reboot: '$again' (was $ip), associations $n -> $(associations)"
say "claim-eip: two instances booting together, one free address left"
GEOSTEER_IMDS=$ib GEOSTEER_EIP_TRIES=3 GEOSTEER_EIP_BACKOFF=0.2 "$scripts/geosteer-aws-claim-eip" geosteer-test-r1 "$tmp/public-ip-b" > "$tmp/b.out" 2> "$tmp/b.err" &
b=$!
GEOSTEER_IMDS=$ic GEOSTEER_EIP_TRIES=3 GEOSTEER_EIP_BACKOFF=0.2 "$scripts/geosteer-aws-claim-eip" geosteer-test-r1 "$tmp/public-ip-c" > "$tmp/c.out" 2> "$tmp/c.err" &
c=$!
rb=0; rc=0; wait "$b" || rb=$?; wait "$c" || rc=$?
if (( rb == 0 && rc == 0 )) || (( rb != 0 && rc != 0 )); then
  cat "$tmp/b.err" "$tmp/c.err"; fail "exactly one of two instances must get the last address (exit $rb, $rc)"
fi
winner=$([[ $rb == 0 ]] && echo i-b || echo i-c)
loser_err=$([[ $rb == 0 ]] && echo "$tmp/c.err" || echo "$tmp/b.err")
[[ -n $(holder "$winner") && $(holder "$winner") != "$ip" ]] || fail "$winner holds '$(holder "$winner")'"
grep -q "FAILED: no free address in pool geosteer-test-r1 after 3 tries" "$loser_err" || { cat "$loser_err"; fail "the loser must say why"; }
say "  $winner got $(holder "$winner"); the other: $(tail -1 "$loser_err")"
[[ $(jq '[.addresses[] | select(.Tags["geosteer:pool"] == "geosteer-test-r2" and .InstanceId != null)] | length' "$AWS_STANDIN_STATE/ec2.json") == 0 ]] \
  || fail "another pool's address was touched"

# A real relay on loopback for the next two helpers.
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http_port=$(port); turn_port=$(port)
cat > "$tmp/relay.toml" <<TOML
region = "r1"
[listen]
udp = ["127.0.0.1:$turn_port"]
http = "127.0.0.1:$http_port"
[limits]
capacity = 200
[operations]
drain_timeout = 30
admin_token = "admin-token-0123456789"
[relay]
port_min = 50000
port_max = 50100
ips = ["127.0.0.1"]
[auth]
secrets = ["s1-0123456789abcdef"]
TOML
start_relay() {
  geosteer-relay serve --config "$tmp/relay.toml" > "$tmp/relay.log" 2>&1 < /dev/null &
  relay=$!
  pids+=("$relay")
  for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$http_port/health" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -fsS "http://127.0.0.1:$http_port/health" >/dev/null || { cat "$tmp/relay.log"; fail "relay did not start"; }
}
start_relay

# 2. geosteer-aws-utilization
say "utilization: /health utilization x 100, dimension AutoScalingGroupName"
util=$(curl -fsS "http://127.0.0.1:$http_port/health" | jq '.utilization * 100')
GEOSTEER_IMDS=$ia GEOSTEER_GROUP=geosteer-test-r1 GEOSTEER_HEALTH_URL="http://127.0.0.1:$http_port/health" \
  "$scripts/geosteer-aws-utilization" 2> "$tmp/util.err" || { cat "$tmp/util.err"; fail "utilization"; }
m=$(jq -c '.metrics[-1]' "$AWS_STANDIN_STATE/ec2.json")
[[ $(jq -r '.namespace + " " + ."metric-name" + " " + .unit + " " + (.dimensions | join(","))' <<< "$m") == "GeosteerRelay Utilization Percent AutoScalingGroupName=geosteer-test-r1" ]] \
  || fail "metric published as $m"
awk -v a="$(jq -r .value <<< "$m")" -v b="$util" 'BEGIN { exit !(a == b) }' || fail "published $(jq -r .value <<< "$m"), /health says $util"
say "  published $m"
say "utilization: a relay that no longer answers publishes nothing and fails"
if GEOSTEER_IMDS=$ia GEOSTEER_GROUP=geosteer-test-r1 GEOSTEER_HEALTH_URL="http://127.0.0.1:$(port)/health" \
  "$scripts/geosteer-aws-utilization" 2>/dev/null; then fail "no relay, yet success"; fi

say "utilization: a draining relay (POST /admin/drain) publishes nothing"
# The drain response is the relay's /health document while draining; an
# idle relay ends its drain at once, so the document is served from a file.
mkdir -p "$tmp/draining"
curl -fsS -X POST -H "Authorization: Bearer admin-token-0123456789" "http://127.0.0.1:$http_port/admin/drain" > "$tmp/draining/health"
[[ $(jq -r .status "$tmp/draining/health") == draining ]] || fail "relay not draining after /admin/drain: $(cat "$tmp/draining/health")"
static_port=$(port)
python3 -m http.server -b 127.0.0.1 -d "$tmp/draining" "$static_port" > /dev/null 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$static_port/health" >/dev/null 2>&1 && break; sleep 0.05; done
n=$(jq '.metrics | length' "$AWS_STANDIN_STATE/ec2.json")
GEOSTEER_IMDS=$ia GEOSTEER_GROUP=geosteer-test-r1 GEOSTEER_HEALTH_URL="http://127.0.0.1:$static_port/health" \
  "$scripts/geosteer-aws-utilization" 2>/dev/null || fail "utilization failed on a draining relay"
[[ $(jq '.metrics | length' "$AWS_STANDIN_STATE/ec2.json") == "$n" ]] || fail "a draining relay published"
# A relay with no allocation left ends its drain and exits; a fresh one for the next step.
for _ in $(seq 100); do kill -0 "$relay" 2>/dev/null || break; sleep 0.1; done
kill "$relay" 2>/dev/null && wait "$relay" 2>/dev/null || true
start_relay

# 3. geosteer-aws-lifecycle
say "lifecycle: InService = nothing; Terminated = drain (relay exits), then complete the hook"
GEOSTEER_IMDS=$ia GEOSTEER_GROUP=geosteer-test-r1 GEOSTEER_POLL=0.2 \
  GEOSTEER_DRAIN_CMD="kill -TERM $relay; while kill -0 $relay 2>/dev/null; do sleep 0.1; done; date +%s.%N > $tmp/drained" \
  "$scripts/geosteer-aws-lifecycle" 2> "$tmp/lifecycle.err" &
lc=$!
pids+=("$lc")
sleep 1
[[ $(jq '.completed // [] | length' "$AWS_STANDIN_STATE/ec2.json") == 0 ]] || fail "completed while InService"
kill -0 "$relay" || fail "relay stopped while InService"
echo Terminated > "$AWS_STANDIN_STATE/lifecycle-i-a"
wait "$lc" || { cat "$tmp/lifecycle.err"; fail "lifecycle helper failed"; }
! kill -0 "$relay" 2>/dev/null || fail "relay still running after the drain"
grep -q "drain" "$tmp/relay.log" || { cat "$tmp/relay.log"; fail "the relay did not log a drain"; }
done_call=$(jq -c '[.calls[] | select(.op == "complete-lifecycle-action")][-1]' "$AWS_STANDIN_STATE/ec2.json")
[[ $(jq -r '.args | ."lifecycle-hook-name" + " " + ."auto-scaling-group-name" + " " + ."instance-id" + " " + ."lifecycle-action-result"' <<< "$done_call") == "drain geosteer-test-r1 i-a CONTINUE" ]] \
  || fail "completed as $done_call"
awk -v d="$(cat "$tmp/drained")" -v c="$(jq -r .t <<< "$done_call")" 'BEGIN { exit !(d <= c) }' || fail "hook completed before the relay had drained"
say "  $(tail -1 "$tmp/lifecycle.err")"

# 4. geosteer-fetch-secrets --reload (rotation)
say "fetch-secrets --reload: unchanged = nothing; rotated = reload (relay), restart for a new DNS token"
printf '#!/bin/sh\necho "$@" >> %s/systemctl.log\n' "$tmp" > "$tmp/bin/fake-systemctl"; chmod +x "$tmp/bin/fake-systemctl"
export GEOSTEER_SYSTEMCTL=fake-systemctl
mkdir -p "$tmp/etc-relay" "$tmp/etc-dns"
sed -n '1,/^\[relay\]/p' packaging/config/relay.toml | sed '/^\[relay\]/a port_min = 49152\nport_max = 65535' > "$tmp/etc-relay/relay.toml.base"
echo 192.0.2.11 > "$tmp/etc-relay/public-ip"
: > "$tmp/systemctl.log"
GEOSTEER_ETC=$tmp/etc-relay GEOSTEER_IMDS=$ia "$scripts/geosteer-fetch-secrets" relay geosteer/test/relay/r1 2>/dev/null
grep -q 'external_ip = "192.0.2.11"' "$tmp/etc-relay/relay.toml" || { cat "$tmp/etc-relay/relay.toml"; fail "the claimed address is not the relay's external_ip"; }
GEOSTEER_ETC=$tmp/etc-relay GEOSTEER_IMDS=$ia "$scripts/geosteer-fetch-secrets" --reload relay geosteer/test/relay/r1 2>/dev/null
[[ ! -s $tmp/systemctl.log ]] || fail "unchanged secret, yet: $(cat "$tmp/systemctl.log")"
python3 - "$AWS_STANDIN_STATE/ec2.json" <<'PY'
import json, sys
p = sys.argv[1]; s = json.load(open(p))
s["secrets"]["geosteer/test/relay/r1"] = json.dumps({"turn_secrets": ["s2-0123456789abcdef", "s1-0123456789abcdef"], "nonce_key": "nonce-key-0123456789abcdef"})
s["secrets"]["geosteer/test/dns"] = json.dumps({"turn_secrets": ["s1-0123456789abcdef"], "api_token": "token-2-0123456789", "ice_api_keys": ["ice-key-1-0123456789"]})
json.dump(s, open(p, "w"))
PY
GEOSTEER_ETC=$tmp/etc-relay GEOSTEER_IMDS=$ia "$scripts/geosteer-fetch-secrets" --reload relay geosteer/test/relay/r1 2>/dev/null
grep -q 's2-0123456789abcdef' "$tmp/etc-relay/relay.toml" || fail "rotated secret not in relay.toml"
[[ $(cat "$tmp/systemctl.log") == "reload geosteer-relay.service" ]] || fail "relay rotation ran: $(cat "$tmp/systemctl.log")"
: > "$tmp/systemctl.log"
GEOSTEER_ETC=$tmp/etc-dns GEOSTEER_IMDS=$ia "$scripts/geosteer-fetch-secrets" dns geosteer/test/dns 2>/dev/null
[[ $(cat "$tmp/etc-dns/secrets/ice-api-keys") == ice-key-1-0123456789 ]] || fail "ICE API keys not written"
python3 - "$AWS_STANDIN_STATE/ec2.json" <<'PY'
import json, sys
p = sys.argv[1]; s = json.load(open(p))
s["secrets"]["geosteer/test/dns"] = json.dumps({"turn_secrets": ["s1-0123456789abcdef"], "api_token": "token-2-0123456789", "ice_api_keys": ["ice-key-2-0123456789", "ice-key-1-0123456789"]})
json.dump(s, open(p, "w"))
PY
GEOSTEER_ETC=$tmp/etc-dns GEOSTEER_IMDS=$ia "$scripts/geosteer-fetch-secrets" --reload dns geosteer/test/dns 2>/dev/null
[[ $(cat "$tmp/systemctl.log") == "reload geosteer.service" ]] || fail "ICE key rotation ran: $(cat "$tmp/systemctl.log")"
: > "$tmp/systemctl.log"
python3 - "$AWS_STANDIN_STATE/ec2.json" <<'PY'
import json, sys
p = sys.argv[1]; s = json.load(open(p))
s["secrets"]["geosteer/test/dns"] = json.dumps({"turn_secrets": ["s1-0123456789abcdef"], "api_token": "token-3-0123456789", "ice_api_keys": ["ice-key-1-0123456789"]})
json.dump(s, open(p, "w"))
PY
GEOSTEER_ETC=$tmp/etc-dns GEOSTEER_IMDS=$ia "$scripts/geosteer-fetch-secrets" --reload dns geosteer/test/dns 2>/dev/null
[[ $(cat "$tmp/etc-dns/secrets/api-token") == token-3-0123456789 ]] || fail "new token not written"
[[ $(cat "$tmp/systemctl.log") == "restart geosteer.service" ]] || fail "DNS token rotation ran: $(cat "$tmp/systemctl.log")"
say "ok"
