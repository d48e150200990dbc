#!/usr/bin/env bash
# The main job on one machine, on the local platform: site west with link access,
# a token issued there and shown, the grant's status; site east redeems the token
# and the link is active on both sides; an HTTP server at west answers a client at east
# through a listener there. Everything lives in a temporary data home
# that is removed at the end, daemons included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
SKUPPER="$PWD/.venv/bin/skupper"

demo_home=$(mktemp -d)
export XDG_DATA_HOME="$demo_home/data" XDG_CONFIG_HOME="$demo_home/config"
export SKUPPER_PLATFORM=systemd SKUPPER_SERVICE_MANAGER=process
export SKUPPER_LINK_ACCESS_HOST=127.0.0.1
http_pid=""
cleanup() {
  if [ -n "$http_pid" ]; then kill "$http_pid" 2>/dev/null || true; wait "$http_pid" 2>/dev/null || true; fi
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

# A real service: an HTTP server at west, reached from east through a listener there.
free_port() { "$PWD/.venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
mkdir -p "$demo_home/www"
echo "Hello from west, served through a skupper link." > "$demo_home/www/index.html"
backend_port=$(free_port)
"$PWD/.venv/bin/python" -m http.server "$backend_port" --bind 127.0.0.1 --directory "$demo_home/www" >/dev/null 2>&1 &
http_pid=$!
step "$SKUPPER" connector create backend "$backend_port" -n west
frontend_port=$(free_port)
step "$SKUPPER" listener create backend "$frontend_port" --host 127.0.0.1 -n east --wait ready
step "$SKUPPER" listener status -n east
step "$SKUPPER" connector status -n west
step "$SKUPPER" site status -n east
if command -v curl >/dev/null; then
  step curl -sS --fail --max-time 10 "http://127.0.0.1:$frontend_port/"
else
  step "$PWD/.venv/bin/python" -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())' "http://127.0.0.1:$frontend_port/"
fi
