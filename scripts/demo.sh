#!/usr/bin/env bash
# The main job on one machine, on the local platform: site west with link access,
# a token issued there and shown, the grant's status; site east redeems the token
# and the link is active on both sides. Everything lives in a temporary data home
# that is removed at the end, daemons included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
SKUPPER="$PWD/.venv/bin/skupper"

demo_home=$(mktemp -d)
export XDG_DATA_HOME="$demo_home/data" XDG_CONFIG_HOME="$demo_home/config"
export SKUPPER_PLATFORM=systemd SKUPPER_SERVICE_MANAGER=process
export SKUPPER_LINK_ACCESS_HOST=127.0.0.1
cleanup() {
  "$SKUPPER" site delete -n east >/dev/null 2>&1 || true
  "$SKUPPER" site delete -n west >/dev/null 2>&1 || true
  rm -rf "$demo_home"
}
trap cleanup EXIT

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step "$SKUPPER" site create west --enable-link-access -n west
step "$SKUPPER" site status -n west
step "$SKUPPER" access-token issue "$demo_home/token.yaml" -n west
step cat "$demo_home/token.yaml"
step "$SKUPPER" access-grant status -n west
step "$SKUPPER" site create east -n east
step "$SKUPPER" access-token redeem "$demo_home/token.yaml" -n east
step "$SKUPPER" link status -n east
step "$SKUPPER" link status -n west
step "$SKUPPER" site status -n west
step "$SKUPPER" access-grant status -n west
