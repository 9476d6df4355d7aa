"""Paired A/B of sequential RPC latency: several trees take turns on one Postgres.

    python hack/rpc_pair.py PGPORT NAME=TREE[|WORKER ARGS[|DB SETTINGS]] [NAME=TREE ...]

Each TREE is a checkout (a `git worktree` of another commit); its ``worker/`` goes first on
PYTHONPATH, so one venv (this one's) serves every tree. Each tree gets its own database (migrated
by its own code; DB SETTINGS, e.g. ``synchronous_commit=off``, are set on it for every
session), one ``pgqueue worker --pool inline --concurrency 1`` and one caller process
(hack/rpc_pair_driver.py). The callers then take turns: BLOCKS rounds of SIZE sequential calls
each, the order flipped every round, so the machine's load falls on every tree alike; printed:
the median of each tree's per-block p50, calls/s and caller CPU per call, and the median of
the per-block ratios to the first tree. THREADS (default 1) callers share each tree's client,
PROCS (default 1) such caller processes run at once (each with its own client; a block's
calls/s is then all their calls over its wall time), and WORKERS (default 1) inline workers
serve it (WORKER ARGS ``--pool process --concurrency 2`` make each a process-pool worker).
PROFILE=1 also prints each tree's costliest statements over the rounds (pg_stat_statements:
calls and mean server time; the PROFILE_TOP costliest, default 6; nested statements too when
the server tracks them), e.g. to compare claims and waiting marks per call.
Postgres: any server on 127.0.0.1:PGPORT with a trusting ``postgres`` superuser (e.g.
``pgqueue.embedded.EmbeddedPostgres``, fsync and synchronous_commit on).
"""

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
port = sys.argv[1]
trees = [arg.split("=", 1) for arg in sys.argv[2:]]
blocks = int(os.environ.get("BLOCKS", "15"))
size = int(os.environ.get("SIZE", "200"))
workers, callers = [], {}
for n, (name, spec) in enumerate(trees):
    tree, _, extra = spec.partition("|")
    extra, _, settings = extra.partition("|")
    db = f"pair_{name}"
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {db}")
        for setting in settings.split():
            key, value = setting.split("=", 1)
            c.execute(f"ALTER DATABASE {db} SET {key} = '{value}'")
    dsn = f"postgresql://postgres@127.0.0.1:{port}/{db}"
    env = dict(os.environ, PYTHONPATH=f"{tree}/worker")
    cli = [sys.executable, "-m", "pgqueue.cli"]
    subprocess.run([*cli, "migrate", "--dsn", dsn], env=env, check=True, capture_output=True)
    for w in range(int(os.environ.get("WORKERS", "1"))):
        workers.append(subprocess.Popen(
            [*cli, "--log-level", "WARNING", "worker", "--dsn", dsn, "--pool", "inline",
             "--tasks", "pgqueue.demo_tasks", "--concurrency", "1",
             "--metrics-port", str(19100 + 10 * n + w), *extra.split()], env=env))  # fmt: skip
    callers[name] = [
        subprocess.Popen(
            [sys.executable, str(HERE / "rpc_pair_driver.py"), dsn],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(int(os.environ.get("PROCS", "1")))
    ]
    for caller in callers[name]:
        assert caller.stdout is not None
        assert caller.stdout.readline().strip() == "ready"
p50s: dict[str, list[float]] = {name: [] for name, _ in trees}
rates: dict[str, list[float]] = {name: [] for name, _ in trees}
cpus: dict[str, list[float]] = {name: [] for name, _ in trees}


def _statements(db: str, reset: bool) -> None:
    """PROFILE=1: each tree's costliest statements (calls, mean server time) since the reset."""
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/{db}", autocommit=True) as c:
        c.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        if reset:
            c.execute("SELECT pg_stat_statements_reset()")
            return
        rows = c.execute(
            "SELECT calls, mean_exec_time, left(regexp_replace(query, '\\s+', ' ', 'g'), 90)"
            " FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database"
            " WHERE datname = current_database()) ORDER BY total_exec_time DESC LIMIT %s",
            (int(os.environ.get("PROFILE_TOP", "6")),),
        ).fetchall()
    for calls, mean, query in rows:
        print(f"  {db}: {calls:>7} x {mean * 1000:6.1f} us  {query}")


profile = bool(os.environ.get("PROFILE"))
for name, _ in trees if profile else ():
    _statements(f"pair_{name}", reset=True)
for b in range(blocks):
    order = list(callers.items())
    for name, procs in order if b % 2 == 0 else reversed(order):
        started = time.perf_counter()
        for caller in procs:
            assert caller.stdin is not None
            caller.stdin.write(f"{size}\n")
            caller.stdin.flush()
        got = [json.loads(caller.stdout.readline()) for caller in procs if caller.stdout]
        elapsed = time.perf_counter() - started
        p50s[name].append(statistics.median(block["p50"] for block in got))
        rates[name].append(sum(block["calls"] for block in got) / elapsed)
        cpus[name].append(statistics.median(block["cpu_us"] for block in got))
for name, values in p50s.items():
    print(f"{name}: median of block p50s {statistics.median(values):.3f} ms "
          f"[{min(values):.2f}-{max(values):.2f}]; calls/s {statistics.median(rates[name]):.0f}; "
          f"caller CPU {statistics.median(cpus[name]):.0f} µs/call")  # fmt: skip
for name, _ in trees if profile else ():
    _statements(f"pair_{name}", reset=False)
base = trees[0][0]
for name, _ in trees[1:]:
    ratios = [a / b for a, b in zip(p50s[name], p50s[base], strict=True)]
    per_s = [a / b for a, b in zip(rates[name], rates[base], strict=True)]
    print(f"{name}/{base}: median ratio {statistics.median(ratios):.3f} (p50), "
          f"{statistics.median(per_s):.3f} (calls/s)")  # fmt: skip
for proc in [*workers, *(c for procs in callers.values() for c in procs)]:
    proc.terminate()
