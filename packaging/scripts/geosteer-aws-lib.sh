# Shared by geosteer's AWS boot and runtime helpers (sourced, not run).
# IMDSv2 only (the launch templates require tokens). GEOSTEER_IMDS overrides
# the endpoint (tests point it at a local stand-in).
GEOSTEER_IMDS=${GEOSTEER_IMDS:-http://169.254.169.254}

# imds PATH: one metadata value (fails when absent).
imds() {
  _tok=$(curl -fsS -m 5 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' "$GEOSTEER_IMDS/latest/api/token") || return 1
  curl -fsS -m 5 -H "X-aws-ec2-metadata-token: $_tok" "$GEOSTEER_IMDS/latest/meta-data/$1"
}

# log MESSAGE: to stderr (the journal), prefixed with the helper's name.
log() {
  echo "${0##*/}: $*" >&2
}
