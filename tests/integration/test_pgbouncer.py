"""Through PgBouncer in transaction pooling mode: enqueue, work and call succeed by polling."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.request import urlopen

import psycopg
import pytest

from pgqueue import Client, ClientSettings
from pgqueue.embedded import free_port
from tests.support.postgres import PgServer
from tests.support.workers import WorkerFactory, wait_until


@pytest.fixture
def bouncer_dsn(pg_server: PgServer, pg_dsn: str) -> Iterator[str]:
    # pgbouncer drops to an unprivileged user: its folder must be reachable by that user.
    tmp_path = Path(tempfile.mkdtemp(prefix="pgqueue-pgbouncer-"))
    tmp_path.chmod(0o755)
    shutil.chown(tmp_path, "nobody")
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(binary).exists():
        raise RuntimeError(
            "pgbouncer is not installed (apt-get install pgbouncer; .ci/run does it)"
        )
    dbname = psycopg.conninfo.conninfo_to_dict(pg_dsn)["dbname"]
    port = free_port()
    ini = tmp_path / "pgbouncer.ini"
    (tmp_path / "users.txt").write_text('"postgres" ""\n')
    ini.write_text(
        f"""[databases]
{dbname} = host={pg_server.host} port={pg_server.port} dbname={dbname}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {tmp_path / "users.txt"}
pool_mode = transaction
max_client_conn = 200
default_pool_size = 10
ignore_startup_parameters = extra_float_digits,options
logfile = {tmp_path / "pgbouncer.log"}
pidfile = {tmp_path / "pgbouncer.pid"}
"""
    )
    proc = subprocess.Popen(
        [binary, "-u", "nobody", str(ini)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    dsn = f"postgresql://postgres@127.0.0.1:{port}/{dbname}"

    def up() -> bool:
        try:
            with psycopg.connect(dsn, connect_timeout=1, prepare_threshold=None) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False

    try:
        wait_until(up, 15, "pgbouncer to accept connections", interval=0.1)
        yield dsn
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(tmp_path, ignore_errors=True)


def test_enqueue_work_and_call_through_transaction_pooling(
    bouncer_dsn: str, workers: WorkerFactory
) -> None:
    workers.start(bouncer_dsn, concurrency=2, extra=["--pooled", "--poll-interval", "0.05"])
    with Client(bouncer_dsn, ClientSettings(pooled=True)) as client:
        ids = [client.enqueue("demo.noop") for _ in range(20)]
        assert len(set(ids)) == 20
        started = time.monotonic()
        results = [client.call("demo.add", [i, i], timeout=20) for i in range(20)]
        assert [r.value for r in results] == [2 * i for i in range(20)]
        assert time.monotonic() - started < 20
        assert client.call("demo.fail", timeout=20).kind == "task_error"

    def drained() -> bool:
        with psycopg.connect(bouncer_dsn, prepare_threshold=None) as conn:
            return conn.execute("SELECT count(*) FROM pgqueue.message").fetchone() == (0,)

    wait_until(drained, 20, "the fire-and-forget messages to run")


def test_pause_and_resume_through_transaction_pooling(
    bouncer_dsn: str, pg_dsn: str, workers: WorkerFactory
) -> None:
    """The pause's lock and the claim's are transaction-scoped, so both hold through a pooler:
    a pooled CLI pauses the queue a pooled worker consumes, and a resume drains it (by polling:
    no LISTEN through a pooler)."""
    from tests.integration.test_cli import pgq

    done = pgq("queue", "pause", "default", "--pooled", "--json", dsn=bouncer_dsn)
    assert done.returncode == 0, done.stderr
    worker = workers.start(bouncer_dsn, extra=["--pooled", "--poll-interval", "0.1"])
    with Client(bouncer_dsn, ClientSettings(pooled=True)) as client:
        ids = [client.enqueue("demo.noop") for _ in range(5)]

    def claims() -> float:
        text = urlopen(worker.url("/metrics"), timeout=5).read().decode()
        found = re.search(r'^pgqueue_worker_claims_total\{queue="default"\} (\S+)$', text, re.M)
        return float(found.group(1)) if found else 0.0

    seen = claims()
    wait_until(lambda: claims() >= seen + 3, 30, "three polls of the paused queue")
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute("SELECT count(*), max(read_ct) FROM pgqueue.message").fetchone()
    assert row == (len(ids), 0)

    done = pgq("queue", "resume", "default", "--pooled", dsn=bouncer_dsn)
    assert done.returncode == 0, done.stderr

    def drained() -> bool:
        with psycopg.connect(pg_dsn) as conn:
            return conn.execute("SELECT count(*) FROM pgqueue.message").fetchone() == (0,)

    wait_until(drained, 30, "the resumed queue to drain through the pooler")
