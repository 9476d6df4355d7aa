"""Postgres CPU per NOTIFY commit against idle listening sessions on OTHER channels (issue 20).

Run from a clone: PYTHONPATH=. .venv/bin/python docs/benchmarks/fleet-wake-one/notify_signals.py
Output of 2026-12-02 on Postgres 18.6 (load ~2): README.md of this folder.
"""
import sys, time, shutil
from pathlib import Path
import psycopg
from pgqueue import embedded
from bench.cpu import postgres_ticks, ticks_between, postmaster_pid

work = Path("/tmp/h20-mb/pg"); shutil.rmtree(work, ignore_errors=True)
srv = embedded.EmbeddedPostgres(work, settings={"max_connections": "400"})
srv.start()
try:
    dsn = srv.dsn
    pm = postmaster_pid(work)
    with psycopg.connect(dsn, autocommit=True) as c:
        print(c.execute("select version()").fetchone()[0][:40])
    sender = psycopg.connect(dsn, autocommit=True)
    listeners = []
    def ctxsw(pid):
        d = dict(l.split(":\t") for l in Path(f"/proc/{pid}/status").read_text().splitlines() if ":\t" in l)
        return int(d["voluntary_ctxt_switches"].strip())
    for L in (0, 10, 50, 200):
        while len(listeners) < L:
            c = psycopg.connect(dsn, autocommit=True)
            c.execute(f"LISTEN other_{len(listeners)}")
            listeners.append(c)
        pids = [c.info.backend_pid for c in listeners[:5]]
        cs0 = [ctxsw(p) for p in pids]
        n = 2000
        for _ in range(200):
            sender.execute("SELECT pg_notify('nobody', 'x')")
        b = postgres_ticks(pm); t0 = time.perf_counter()
        for _ in range(n):
            sender.execute("SELECT pg_notify('nobody', 'x')")
        time.sleep(0.3)
        used = ticks_between(b, postgres_ticks(pm)); dt = time.perf_counter() - t0
        cs1 = [ctxsw(p) for p in pids]
        woke = [b_ - a for a, b_ in zip(cs0, cs1)]
        print(f"L={L:4d}: PG CPU {1e6*used/n:7.1f} us per NOTIFY commit; "
              f"{n/dt:6.0f}/s; wake-ups of 5 bystanders over {n+200}: {woke}", flush=True)
    # cost of a poll statement for comparison (no listeners involved)
    for c in listeners: c.close()
    sender.execute("CREATE TABLE IF NOT EXISTS r (k text primary key, v text)")
    b = postgres_ticks(pm)
    for i in range(n):
        sender.execute("SELECT v FROM r WHERE k = %s", (f"k{i}",))
    used = ticks_between(b, postgres_ticks(pm))
    print(f"poll statement: PG CPU {1e6*used/n:.1f} us each")
finally:
    srv.stop("fast"); srv.cleanup()
