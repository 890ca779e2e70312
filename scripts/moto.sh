#!/usr/bin/env bash
# Run a command with a moto server (AWS API emulator from PyPI: STS, later CloudFormation,
# IAM, S3, Lambda) beside it, then stop the server whatever happens.
#
#   scripts/moto.sh --install          install moto into .cache/moto-venv (needs PyPI)
#   scripts/moto.sh COMMAND [ARGS...]  COMMAND sees ZAEL_TEST_MOTO_ENDPOINT=http://127.0.0.1:PORT
#
# moto is never used for DynamoDB (DynamoDB Local is). It binds 127.0.0.1 only and runs
# under a memory cap.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.cache/moto-venv"
version="5.2.5"

install() {
  if [[ -x "$venv/bin/moto_server" ]]; then
    return
  fi
  command -v python3 >/dev/null 2>&1 || { echo "error: moto needs python3" >&2; exit 1; }
  echo "installing moto[server]==$version into $venv ..." >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$version"
}

if [[ "${1:-}" == "--install" ]]; then
  install
  exit 0
fi
[[ "${1:-}" == "--" ]] && shift
if [[ $# -eq 0 ]]; then
  echo "usage: scripts/moto.sh --install | COMMAND [ARGS...]" >&2
  exit 2
fi
if [[ ! -x "$venv/bin/moto_server" ]]; then
  install
fi

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
log="$root/.cache/moto.log"
( ulimit -v 4000000; exec "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" ) >"$log" 2>&1 &
server=$!
cleanup() { kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; }
trap cleanup EXIT INT TERM

for _ in $(seq 1 150); do
  if ! kill -0 "$server" 2>/dev/null; then
    echo "error: moto exited during start-up; its log ($log):" >&2
    cat "$log" >&2
    exit 1
  fi
  if python3 - "$port" <<'PY' 2>/dev/null; then
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/moto-api/", timeout=1)
PY
    break
  fi
  sleep 0.2
done
echo "moto ready on 127.0.0.1:$port" >&2

export ZAEL_TEST_MOTO_ENDPOINT="http://127.0.0.1:$port"
set +e
"$@"
status=$?
set -e
exit "$status"
