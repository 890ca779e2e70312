#!/usr/bin/env bash
# Our scenario `a` (acquire + commit, 1 limit) against the Python original's, on one fresh
# DynamoDB Local, in alternating blocks; prints the ratios ours / python. A measuring tool,
# not a test: CI does not run it.
#
#   scripts/compare-python.sh [--ops N] [--blocks B] [--bin PATH] [--python PATH]
#
#   --ops N       timed acquire + commit per side in all (default 2000)
#   --blocks B    rounds; each is one Python block of N/B, then one of ours (default 5)
#   --bin PATH    our CLI (default $ZAEL_BIN, else target/release/zae-limiter)
#   ZAEL_BENCH_ARGS extra arguments for every `zae-limiter bench` of ours (e.g.
#                 "--runtime multi-thread"), split on spaces
#   --python PATH a Python with the original installed (default $ZAEL_PYTHON, else
#                 /work/pyorig/bin/python; install: python3 -m venv /work/pyorig &&
#                 /work/pyorig/bin/pip install zae-limiter==0.17.0)
#
# Steps: a fresh server (scripts/dynamodb-local.sh); the server warm-up of our bench (5000
# untimed mixed operations, `--server-warmup-ops`, on our table); then scripts/compare-python.py
# (own table, 500 untimed acquires) runs its B timed blocks and, after each, one
# `zae-limiter bench --scenarios a --ops N/B --server-warmup-ops 0` (20 untimed acquires
# of its own, the timed block, then its capacity pass of 200 more). Client CPU is each
# process's own (CLOCK_PROCESS_CPUTIME_ID, `time.process_time()`) over its timed blocks;
# server CPU is the DynamoDB Local JVM's over the same blocks (from /proc).
# Output: every block's JSON line, one summary line per side and a ratio line; the raw lines
# are kept in the directory printed at the end.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ops=2000
blocks=5
bin="${ZAEL_BIN:-target/release/zae-limiter}"
py="${ZAEL_PYTHON:-/work/pyorig/bin/python}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --ops) ops="$2"; shift 2 ;;
    --blocks) blocks="$2"; shift 2 ;;
    --bin) bin="$2"; shift 2 ;;
    --python) py="$2"; shift 2 ;;
    *) echo "usage: scripts/compare-python.sh [--ops N] [--blocks B] [--bin PATH] [--python PATH]" >&2; exit 2 ;;
  esac
done
[[ "$bin" == /* ]] || bin="$root/$bin"
[[ -x "$bin" ]] || { echo "error: no zae-limiter binary at $bin (cargo build --release -p zae-limiter-cli, or --bin)" >&2; exit 1; }
"$py" -c 'import zae_limiter' 2>/dev/null || { echo "error: $py cannot import zae_limiter (see --python)" >&2; exit 1; }
(( blocks >= 1 && ops >= blocks )) || { echo "error: need --blocks >= 1 and --ops >= --blocks" >&2; exit 2; }

# Outside the server: start one and come back in.
if [[ -z "${ZAEL_COMPARE_INNER:-}" ]]; then
  export ZAEL_COMPARE_INNER=1
  exec "$root/scripts/dynamodb-local.sh" "$0" --ops "$ops" --blocks "$blocks" --bin "$bin" --python "$py"
fi

ep="$ZAEL_TEST_DYNAMODB_ENDPOINT"
out="$(mktemp -d /tmp/compare-python.XXXXXX)"
per=$(( ops / blocks ))
port="${ep##*:}"
server_pid="$(pgrep -f -- "DynamoDBLocal.jar .*-port $port( |\$)" | head -n1 || true)"
read -r -a extra <<<"${ZAEL_BENCH_ARGS:-}"
ours=("$bin" --endpoint-url "$ep" --name zael-compare-ours bench --scenarios a "${extra[@]}")

echo "load before: $(uptime)" | tee "$out/uptime"
echo "ours: $("$bin" --version 2>/dev/null || echo "$bin") (tree at $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')); python original: $("$py" -c 'from importlib.metadata import version; print(version("zae-limiter"))')" | tee "$out/versions"
echo "server warm-up (our bench, 5000 untimed operations) ..." >&2
# (a fresh JVM can take over the library's 1 s attempt timeout to create the table: 10 s here)
"${ours[@]}" --ops 20 --server-warmup-ops 5000 --attempt-timeout-ms 10000 >"$out/warmup.jsonl" 2>"$out/warmup.log" \
  || { echo "error: server warm-up failed; its log:" >&2; cat "$out/warmup.log" >&2; exit 1; }

# Python block i, then our block i, for i = 1..B (the Python process stays up between).
printf -v between '%q ' "${ours[@]}" --ops "$per" --server-warmup-ops 0
"$py" "$root/scripts/compare-python.py" --endpoint "$ep" --ops $(( per * blocks )) --blocks "$blocks" \
  ${server_pid:+--server-pid "$server_pid"} \
  --between "${between} >>$(printf %q "$out/ours.jsonl") 2>>$(printf %q "$out/ours.log")" | tee "$out/python.jsonl"
echo "load after: $(uptime)" | tee -a "$out/uptime"

python3 - "$out/python.jsonl" "$out/ours.jsonl" <<'PY'
import json, statistics, sys

def lines(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip().startswith("{")]

py = lines(sys.argv[1])
py_blocks = [l for l in py if "block" in l]
py_summary = next(l for l in py if "block" not in l)
ours = [l for l in lines(sys.argv[2]) if l.get("scenario") == "a" and "pass" not in l]
for b in ours:
    print(json.dumps({"impl": "zae-limiter", "ops": b["ops"], "wall_s": b["wall_s"],
                      "ops_per_s": b["ops_per_s"], "p50_ms": b["latency_ms"]["p50"],
                      "client_cpu_ms_per_op": b["client_cpu_ms_per_op"],
                      "server_cpu_ms_per_op": b.get("server_cpu_ms_per_op"),
                      "ddb_calls_per_op": b["ddb_calls_per_op"], "post_check_ok": b["post_check_ok"]}))
if len(ours) != len(py_blocks) or not all(b["post_check_ok"] for b in ours):
    sys.exit(f"error: {len(ours)} blocks of ours for {len(py_blocks)} Python blocks, or a failed post-check")

def summary(impl, blocks, ops_key, wall, cpu_ms, p50):
    ops = sum(b[ops_key] for b in blocks)
    return {"impl": impl, "ops": ops, "blocks": len(blocks),
            "ops_per_s": round(ops / sum(wall(b) for b in blocks), 1),
            # the median of the blocks' p50 (the same way for both sides)
            "p50_ms": round(statistics.median(p50(b) for b in blocks), 4),
            "client_cpu_ms_per_op": round(sum(cpu_ms(b) for b in blocks) / ops, 4),
            "server_cpu_ms_per_op": round(sum((b.get("server_cpu_ms_per_op") or 0) * b["ops"] for b in blocks) / ops, 4)}

p = summary("python-original", py_blocks, "ops", lambda b: b["wall_s"],
            lambda b: b["cpu_s"] * 1000, lambda b: b["p50_ms"])
p["version"] = py_summary["version"]
o = summary("zae-limiter", ours, "ops", lambda b: b["wall_s"],
            lambda b: b["client_cpu_ms_per_op"] * b["ops"], lambda b: b["latency_ms"]["p50"])
print(json.dumps(p))
print(json.dumps(o))
r = {k: round(o[k] / p[k], 4) if p[k] else None
     for k in ("client_cpu_ms_per_op", "ops_per_s", "p50_ms", "server_cpu_ms_per_op")}
print(json.dumps({"ratio": "zae-limiter / python-original", **r,
                  "client_cpu_target_le_0.1": r["client_cpu_ms_per_op"] <= 0.1}))
PY
echo "raw lines: $out" >&2
