#!/usr/bin/env bash
# geosteer's test command: installs what the test suites need (as root, with
# apt and pip), then runs formatting and lint checks, every test of the
# workspace, and the extra checks in tests/run.d/.
# Usage: tests/run.sh        (CI runs exactly this via .ci/run, with CI=true)
#
# Dependencies are listed per area in tests/deps.d/*.txt; extra checks
# (Terraform, packaging, rules, ...) are scripts in tests/run.d/*.sh, run in
# name order after `cargo test`. Each prints its own result and exits non-zero
# on failure.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_missing=()
pip_missing=()
while read -r kind probe pkg; do
  case "$kind" in
    apt) command -v "$probe" >/dev/null 2>&1 || apt_missing+=("$pkg") ;;
    pip) python3 -c "import $probe" >/dev/null 2>&1 || pip_missing+=("$pkg") ;;
    ''|'#'*) ;;
    *) echo "!! tests/deps.d: unknown kind '$kind' (apt or pip)" >&2; exit 2 ;;
  esac
done < <(cat tests/deps.d/*.txt | sed -e 's/#.*//' -e '/^[[:space:]]*$/d')
# Several probes may name one package.
mapfile -t apt_missing < <(printf '%s\n' "${apt_missing[@]}" | sed '/^$/d' | sort -u)
mapfile -t pip_missing < <(printf '%s\n' "${pip_missing[@]}" | sed '/^$/d' | sort -u)

missing_report() {
  echo "!! missing $1 packages: ${*:2}"
  if [[ ${CI:-} == true ]]; then
    echo "!! CI=true: interop suites must not be skipped, failing." >&2
    exit 1
  fi
  echo "!! continuing: the tests that need them will say so and skip (they fail under CI=true)."
}
if ((${#apt_missing[@]})); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "== installing Debian packages: ${apt_missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >/dev/null
  else
    echo "!! install them with: apt-get install ${apt_missing[*]} (or run this script as root)"
    missing_report Debian "${apt_missing[@]}"
  fi
fi
if ((${#pip_missing[@]})); then
  if [[ $(id -u) == 0 ]] && command -v pip3 >/dev/null; then
    echo "== installing PyPI packages: ${pip_missing[*]}"
    pip3 install -q --disable-pip-version-check --root-user-action=ignore "${pip_missing[@]}"
  else
    echo "!! install them with: pip3 install ${pip_missing[*]} (or run this script as root)"
    missing_report PyPI "${pip_missing[@]}"
  fi
fi
# Some packages start their daemon on install (coturn's turnserver, bird,
# etcd, haproxy, ...): our tests bind those ports on 127.x addresses and run
# their own instances, so make sure no system instance holds them.
for daemon in turnserver bird exabgp etcd haproxy unbound nsd gdnsd; do
  if pgrep -x "$daemon" >/dev/null 2>&1; then
    pkill -x "$daemon" || true
  fi
done

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked --no-fail-fast -- --test-threads=2

shopt -s nullglob
for check in tests/run.d/*.sh; do
  echo "== $check"
  bash "$check"
done
