"""The console's queue page over a million waiting messages (issue 21: it must answer in under
200 ms). Measured through the real ``pgqueue web`` process over HTTP; the figures are printed
and written to ``$PGQUEUE_WEB_BENCH_OUT`` (``make bench-web`` writes docs/benchmarks/web.json).
Speed is reported, not asserted (benchmarks measure); what is asserted is the plan that makes it
fast at any depth: a walk of the primary key, with neither a sequential scan nor a sort."""

from __future__ import annotations

import json
import os
import statistics
import time
import urllib.request
from pathlib import Path

import psycopg

from bench.scenarios import copy_messages
from pgqueue import sqlfiles
from tests.support.console import ConsoleFactory

MESSAGES = int(os.environ.get("PGQUEUE_WEB_BENCH_MESSAGES", "1000000"))
SAMPLES = 30


def _get_ms(url: str) -> float:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as response:
        body = response.read()
        assert response.status == 200
    assert b"</main>" in body
    return (time.perf_counter() - started) * 1000


def _figures(url: str) -> dict[str, float]:
    _get_ms(url)  # warm: the first request waits for the first sample of the queue totals
    times = sorted(_get_ms(url) for _ in range(SAMPLES))
    return {
        "median_ms": round(statistics.median(times), 1),
        "p95_ms": round(times[int(len(times) * 0.95) - 1], 1),
        "max_ms": round(times[-1], 1),
    }


def test_queue_page_with_a_million_waiting(pg_dsn: str, tmp_path: Path) -> None:
    half = MESSAGES // 2
    copy_messages(pg_dsn, half, queue="default", tenant="", notify=False)
    copy_messages(pg_dsn, MESSAGES - half, queue="default", tenant="acme", notify=False)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        # A few messages in flight, claimed as a worker claims them, for the in-flight filter.
        conn.execute("SELECT * FROM pgqueue.claim('default', 8, 8, 600, 'bench:1', '', 1, 's')")
        conn.execute("ANALYZE pgqueue.message")
        deep = conn.execute(
            "SELECT msg_id FROM pgqueue.message ORDER BY msg_id OFFSET %s LIMIT 1", (half,)
        ).fetchone()
        assert deep is not None
        explain = b"EXPLAIN (ANALYZE, COSTS OFF) " + sqlfiles.query("web_messages").as_bytes(conn)
        plans = {
            label: "\n".join(
                row[0]
                for row in conn.execute(
                    explain,
                    {"queue": "default", "after": after, "limit": 51, "scan": 20_000, "task": None,
                     "tenant": None, "state": state},
                ).fetchall()
            )
            for label, after, state in (
                ("first_page", 0, None),
                ("deep_page", deep[0], None),
                ("ready_only", 0, "ready"),
                ("in_flight_only", 0, "in_flight"),
            )
        }  # fmt: skip
    for plan in plans.values():
        assert "message_pkey" in plan, plan
        assert "Seq Scan" not in plan and "Sort" not in plan, plan
    # A filter that matches little looks at the scan cap's worth of rows, not at the queue.
    assert "rows=20000.00" in plans["in_flight_only"], plans["in_flight_only"]

    factory = ConsoleFactory(tmp_path)
    try:
        console = factory.start(pg_dsn)
        results = {
            "messages": MESSAGES,
            "first_page": _figures(console.url("/queues/default")),
            "deep_page": _figures(console.url(f"/queues/default?after={deep[0]}")),
            "tenant_filter": _figures(console.url("/queues/default?tenant=acme")),
            "in_flight_filter": _figures(console.url("/queues/default?state=in_flight")),
            "overview": _figures(console.url("/queues")),
            "plans": plans,
        }
    finally:
        factory.stop_all()
    print(json.dumps(results, indent=2))
    out = os.environ.get("PGQUEUE_WEB_BENCH_OUT")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(results, indent=2) + "\n")
