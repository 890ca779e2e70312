#!/usr/bin/env python3
"""Client CPU, throughput and latency of the Python original (zae-limiter on PyPI) for
scenario `a` of `zae-limiter bench`: sequential acquire + commit, one limit, one entity.

A measuring tool, not a test: CI does not run it. It needs the original in a venv, e.g.

    python3 -m venv /work/pyorig && /work/pyorig/bin/pip install zae-limiter==0.17.0
    /work/pyorig/bin/python scripts/compare-python.py --endpoint http://127.0.0.1:8000

and a DynamoDB endpoint without CloudFormation (DynamoDB Local: `scripts/dynamodb-local.sh`).
`scripts/compare-python.sh` runs it beside `zae-limiter bench` on one server.

What it does: creates the original's table (its own name, --table) with its
`Repository.create_table()` (no stack), opens it with `Repository.open(endpoint_url=...)`
(registers the namespace and the version record), makes --warmup untimed acquires, then
--blocks blocks of --ops/--blocks timed ones, each `async with limiter.acquire(...)` on
resource `api` with `Limit.per_minute("rpm", 1_000_000_000)` and `consume={"rpm": 1}` (the
lease commits on exit), as our scenario `a` does. Per block it prints one JSON line: ops, wall
seconds, process CPU seconds (`time.process_time()`: every thread of this process, the asyncio
event loop included; not the server, not child processes), latency percentiles and the
DynamoDB calls per op (counted by a botocore event hook); with --server-pid also that
process's CPU per op (the DynamoDB Local JVM's, from /proc). Then a summary line
`{"impl":"python-original",...}`. With --between CMD, CMD runs through the shell after each
timed block (untimed; `compare-python.sh` runs our bench there so both alternate on the same
server state).
"""

import argparse
import asyncio
import collections
import json
import os
import subprocess
import sys
import time

RESOURCE = "api"
LIMIT_NAME = "rpm"
CAPACITY = 1_000_000_000  # per minute: never refuses


def server_cpu_s(pid):
    """CPU seconds (user + system, all threads) of process `pid` so far, from /proc (Linux)."""
    if pid is None:
        return None
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(sorted_values, q):
    """Nearest-rank percentile of an ascending list (as `zae-limiter bench` computes them)."""
    if not sorted_values:
        return 0.0
    rank = max(1, -(-len(sorted_values) * q // 100))  # ceil(n * q / 100)
    return sorted_values[int(rank) - 1]


async def open_limiter(endpoint, table, region):
    from zae_limiter import RateLimiter, Repository

    # The table directly (no CloudFormation): a bare Repository, then create_table().
    bare = Repository(name=table, region=region, endpoint_url=endpoint, _skip_deprecation_warning=True)
    await bare.create_table()
    await bare.close()
    # open() finds the table, registers the default namespace and writes the version record.
    repo = await Repository.open(stack=table, region=region, endpoint_url=endpoint)
    return repo, RateLimiter(repository=repo)


async def run(args):
    from zae_limiter import Limit

    repo, limiter = await open_limiter(args.endpoint, args.table, args.region)
    calls = collections.Counter()
    client = await repo._get_client()  # the repository's one aiobotocore client
    client.meta.events.register(
        "before-call.dynamodb", lambda model, **_: calls.update([model.name])
    )
    entity = f"cmp-{int(time.time() * 1000)}"
    limits = [Limit.per_minute(LIMIT_NAME, CAPACITY)]

    async def one():
        async with limiter.acquire(
            entity_id=entity, resource=RESOURCE, limits=limits, consume={LIMIT_NAME: 1}
        ):
            pass

    for _ in range(args.warmup):
        await one()

    per_block = args.ops // args.blocks
    blocks, all_latencies = [], []
    for b in range(args.blocks):
        calls.clear()
        latencies = []
        server0 = server_cpu_s(args.server_pid)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for _ in range(per_block):
            t0 = time.perf_counter()
            await one()
            latencies.append(time.perf_counter() - t0)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        server = server_cpu_s(args.server_pid)
        latencies.sort()
        ms = [x * 1000 for x in latencies]
        line = {
            "impl": "python-original",
            "block": b + 1,
            "ops": per_block,
            "wall_s": round(wall, 4),
            "cpu_s": round(cpu, 4),
            "ops_per_s": round(per_block / wall, 1),
            "p50_ms": round(percentile(ms, 50), 4),
            "p99_ms": round(percentile(ms, 99), 4),
            "client_cpu_ms_per_op": round(cpu * 1000 / per_block, 4),
            "ddb_calls_per_op": {k: round(v / per_block, 4) for k, v in sorted(calls.items())},
        }
        if server is not None:
            line["server_cpu_ms_per_op"] = round((server - server0) * 1000 / per_block, 4)
        print(json.dumps(line), flush=True)
        blocks.append(line)
        all_latencies.extend(ms)
        if args.between:
            subprocess.run(args.between, shell=True, check=True, stdout=sys.stderr)

    await limiter.close()
    await repo.close()

    ops = per_block * args.blocks
    wall = sum(b["wall_s"] for b in blocks)
    cpu = sum(b["cpu_s"] for b in blocks)
    all_latencies.sort()
    print(
        json.dumps(
            {
                "impl": "python-original",
                "version": version(),
                "ops": ops,
                "blocks": args.blocks,
                "ops_per_s": round(ops / wall, 1),
                "p50_ms": round(percentile(all_latencies, 50), 4),
                "p99_ms": round(percentile(all_latencies, 99), 4),
                "client_cpu_ms_per_op": round(cpu * 1000 / ops, 4),
                **server_summary(blocks, ops),
            }
        ),
        flush=True,
    )


def server_summary(blocks, ops):
    if not all("server_cpu_ms_per_op" in b for b in blocks):
        return {}
    total = sum(b["server_cpu_ms_per_op"] * b["ops"] for b in blocks)
    return {"server_cpu_ms_per_op": round(total / ops, 4)}


def version():
    from importlib.metadata import version as v

    return v("zae-limiter")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--endpoint", required=True, help="DynamoDB endpoint URL (e.g. DynamoDB Local)")
    p.add_argument("--ops", type=int, default=2000, help="timed acquire + commit in all (default 2000)")
    p.add_argument("--blocks", type=int, default=5, help="timed blocks of ops/blocks each (default 5)")
    p.add_argument("--warmup", type=int, default=500, help="untimed acquires first (default 500)")
    p.add_argument("--table", default="zael-python-original", help="the original's table (= its stack name)")
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--server-pid", type=int, help="also report this process's CPU per op (the server's)")
    p.add_argument("--between", metavar="CMD", help="shell command run (untimed) after each block")
    args = p.parse_args()
    if args.blocks < 1 or args.ops < args.blocks:
        p.error("need --blocks >= 1 and --ops >= --blocks")
    # DynamoDB Local accepts any credentials; botocore insists on some.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
