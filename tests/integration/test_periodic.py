"""Periodic tasks on real Postgres: one message per tick however many schedulers race, the
catch-up policies after an outage, ``pgqueue schedule list``, and 4 real workers on a per-second
schedule across a SIGKILL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from pgqueue.cron import Cron
from pgqueue.periodic import Schedule
from pgqueue.ticking import Scheduler
from tests.support.workers import REPO, WorkerFactory, wait_until

RUNS_DDL = """
CREATE TABLE periodic_runs (
    run_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tick text NOT NULL,
    phase text NOT NULL,
    pid integer NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""  # written by tests.support.periodic_tasks in the workers

T0 = datetime(2026, 3, 29, 0, 59, 0, 200_000, tzinfo=UTC)  # Paris jumps 02:00 → 03:00 at 01:00Z


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _rows(dsn: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, params).fetchall()


def test_racing_schedulers_enqueue_each_tick_once(pg_dsn: str) -> None:
    schedule = Schedule(
        key="race", task="t.record", cron=Cron.parse("* * * * * *", "Europe/Paris"), queue="race"
    )
    clock = FakeClock(T0)
    schedulers = [Scheduler(pg_dsn, [schedule], worker_id=f"s{i}", clock=clock) for i in range(6)]
    for scheduler in schedulers:
        scheduler.turn()  # nothing fired yet: the cursor starts at now, no backfill
    steps = 8
    barrier = threading.Barrier(len(schedulers))
    errors: list[BaseException] = []

    def race(scheduler: Scheduler) -> None:
        try:
            for _ in range(steps):
                barrier.wait(timeout=60)
                scheduler.turn()
                barrier.wait(timeout=60)
                if scheduler is schedulers[0]:
                    clock.now += timedelta(seconds=1)
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    # Every scheduler fires every tick at the same moment; the key lets one in.
    threads = [threading.Thread(target=race, args=(s,)) for s in schedulers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for scheduler in schedulers:
        scheduler.stop()
    assert not errors, errors
    ticks = _rows(pg_dsn, "SELECT tick_at, msg_id FROM pgqueue.periodic_tick ORDER BY tick_at")
    messages = _rows(
        pg_dsn, "SELECT msg_id, payload FROM pgqueue.message WHERE queue = 'race' ORDER BY msg_id"
    )
    # Ticks of T0 + 1 s .. T0 + 8 s (the clock moved after each turn; the first turn saw T0).
    expected = [T0.replace(microsecond=0) + timedelta(seconds=s) for s in range(1, steps)]
    assert [t for t, _ in ticks] == expected
    assert [m for _, m in ticks] == [m for m, _ in messages]
    assert [p["headers"]["tick"] for _, p in messages] == [t.isoformat() for t in expected]
    assert sum(s.fired for s in schedulers) == len(expected)


def test_catch_up_policies_after_every_worker_was_down(pg_dsn: str) -> None:
    every_minute = Cron.parse("* * * * *", "Europe/Paris")
    policies = ("latest", "all", "skip")
    schedules = [
        Schedule(key=p, task="t.record", cron=every_minute, queue=p, catch_up=p, grace=30)
        for p in policies
    ]
    start = datetime(2026, 6, 1, 12, 0, 30, tzinfo=UTC)
    clock = FakeClock(start)
    first = Scheduler(pg_dsn, schedules, worker_id="before", clock=clock)
    first.turn()
    clock.now = start + timedelta(seconds=31)  # 12:01:01: the 12:01 tick is on time
    first.turn()
    # Every worker down from 12:01:01 to 12:10:40: ticks 12:02 .. 12:10 were missed (12:10 is
    # 40 s old, past the 30 s grace). A new scheduler starts from the last tick recorded.
    clock.now = datetime(2026, 6, 1, 12, 10, 40, tzinfo=UTC)
    after = Scheduler(pg_dsn, schedules, worker_id="after", clock=clock)
    after.turn()
    clock.now = datetime(2026, 6, 1, 12, 11, 2, tzinfo=UTC)
    after.turn()
    first.stop()
    after.stop()

    def minutes(key: str) -> list[int]:
        rows = _rows(
            pg_dsn,
            "SELECT tick_at FROM pgqueue.periodic_tick WHERE schedule = %s ORDER BY tick_at",
            key,
        )
        return [t.astimezone(UTC).minute for (t,) in rows]

    assert minutes("latest") == [1, 10, 11]
    assert minutes("all") == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    assert minutes("skip") == [1, 11]
    counts = dict(_rows(pg_dsn, "SELECT queue, count(*) FROM pgqueue.message GROUP BY queue"))
    assert counts == {"latest": 3, "all": 11, "skip": 2}

    # What a person sees: each schedule, its last tick and next run, from the tick table alone.
    out = subprocess.run(
        [sys.executable, "-m", "pgqueue.cli", "schedule", "list", "--json"],
        env={**os.environ, "PGQUEUE_DSN": pg_dsn},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    listed = {row["schedule"]: row for row in json.loads(out.stdout)}
    assert set(listed) == set(policies)
    assert listed["all"]["last_tick"] == "2026-06-01T12:11:00+00:00"
    assert listed["all"]["cron"] == "* * * * *"
    assert listed["all"]["tz"] == "Europe/Paris"
    assert listed["all"]["source"] == "ticks"
    assert datetime.fromisoformat(listed["all"]["next_run"]) > datetime.now(UTC)


def test_schedule_list_shows_schedules_of_the_task_modules(pg_dsn: str) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pgqueue.cli",
            "schedule",
            "list",
            "--tasks",
            "tests.support.periodic_tasks",
        ],
        env={**os.environ, "PGQUEUE_DSN": pg_dsn, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    header, row = out.stdout.splitlines()
    assert header.split()[:7] == [
        "SCHEDULE", "TASK", "CRON", "TZ", "QUEUE", "CATCH_UP", "NEXT_RUN"
    ]  # fmt: skip
    assert row.split()[0] == "p.every_second"
    assert "Europe/Paris" in row
    assert row.split()[-2:] == ["-", "-"]  # never fired: no last tick, no msg_id


def test_four_workers_run_each_second_once_across_a_kill(
    pg_dsn: str, workers: WorkerFactory
) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(RUNS_DDL)
    fleet = [
        workers.start(
            pg_dsn,
            tasks="tests.support.periodic_tasks",
            queues="periodic",
            concurrency=1,
            extra=["--lease", "3", "--worker-id", f"w{i}", "--vacuum-interval", "0"],
        )
        for i in range(4)
    ]
    by_id = {f"w{i}": w for i, w in enumerate(fleet)}

    def ticks_fired() -> int:
        return int(_rows(pg_dsn, "SELECT count(*) FROM pgqueue.periodic_tick")[0][0])

    wait_until(lambda: ticks_fired() >= 3, 60, "the first ticks")

    # Kill the worker running a tick, mid-run (its task takes a second).
    victim: dict[str, Any] = {}

    def running() -> bool:
        rows = _rows(
            pg_dsn,
            "SELECT m.claimed_by, m.payload->'headers'->>'tick' FROM pgqueue.message m "
            "WHERE m.queue = 'periodic' AND m.vt > now() AND m.claimed_by IS NOT NULL "
            # Started within 0.4 s: the kill below lands with 0.6 s of the run still to go,
            # never just as it ends (the run would then be acked, or count twice).
            "AND EXISTS (SELECT FROM periodic_runs r "
            "            WHERE r.tick = m.payload->'headers'->>'tick' AND r.phase = 'start' "
            "            AND r.at > clock_timestamp() - interval '400 milliseconds') "
            "AND NOT EXISTS (SELECT FROM periodic_runs r "
            "                WHERE r.tick = m.payload->'headers'->>'tick' AND r.phase = 'end')",
        )
        if rows:
            victim["worker"], victim["tick"] = rows[0]
        return bool(rows)

    wait_until(running, 60, "a tick running on a worker")
    by_id[victim["worker"]].kill()
    killed_at = datetime.now(UTC)

    # Ten more seconds of ticks with three workers left.
    wait_until(
        lambda: (
            _rows(
                pg_dsn, "SELECT count(*) FROM pgqueue.periodic_tick WHERE tick_at > %s", killed_at
            )[0][0]
            >= 10
        ),
        90,
        "ten ticks after the kill",
    )
    last = _rows(pg_dsn, "SELECT max(tick_at) FROM pgqueue.periodic_tick")[0][0]

    def all_ran() -> bool:
        fired = _rows(pg_dsn, "SELECT tick_at FROM pgqueue.periodic_tick WHERE tick_at <= %s", last)
        ended = {
            tick for (tick,) in _rows(pg_dsn, "SELECT tick FROM periodic_runs WHERE phase = 'end'")
        }
        return all(t.astimezone(UTC).isoformat() in ended for (t,) in fired)

    # The killed worker's tick comes back when its lease (3 s) runs out.
    wait_until(all_ran, 90, "every tick fired so far to have run")
    for worker in fleet:
        if worker is not by_id[victim["worker"]]:
            worker.terminate(timeout=60)

    ticks = [
        t
        for (t,) in _rows(
            pg_dsn, "SELECT tick_at FROM pgqueue.periodic_tick WHERE tick_at <= %s "
            "ORDER BY tick_at", last,
        )
    ]  # fmt: skip
    # None missed: one tick every second from the first to the last, across the kill.
    assert ticks == [ticks[0] + timedelta(seconds=i) for i in range(len(ticks))]
    assert len(ticks) >= 13
    runs = _rows(pg_dsn, "SELECT tick, phase FROM periodic_runs")
    starts = Counter(tick for tick, phase in runs if phase == "start")
    ends = Counter(tick for tick, phase in runs if phase == "end")
    names = [t.astimezone(UTC).isoformat() for t in ticks]
    # Exactly one completed run per tick; the tick the kill interrupted started twice.
    assert [ends[n] for n in names] == [1] * len(names)
    assert starts[victim["tick"]] == 2
    assert [starts[n] for n in names if n != victim["tick"]] == [1] * (len(names) - 1)


def test_a_worker_runs_schedules_given_by_configuration(
    pg_dsn: str, workers: WorkerFactory
) -> None:
    from tests.support import core_tasks

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(core_tasks.DDL)
    schedules = [
        {"task": "t.record", "cron": "* * * * * *", "kwargs": {"key": "configured"},
         "key": "by-env", "queue": "cfg"}
    ]  # fmt: skip
    workers.start(
        pg_dsn,
        tasks="tests.support.core_tasks",
        queues="cfg",
        env={"PGQUEUE_SCHEDULES": json.dumps(schedules)},
    )
    wait_until(
        lambda: _rows(pg_dsn, "SELECT count(*) FROM test_runs WHERE key = 'configured' "
                      "AND phase = 'end'")[0][0] >= 2,
        60,
        "two runs of the configured schedule",
    )  # fmt: skip
    keys = _rows(pg_dsn, "SELECT DISTINCT schedule, task_name FROM pgqueue.periodic_tick")
    assert keys == [("by-env", "t.record")]
