"""Fault matrix, client side: Postgres and PgBouncer restart under an idle client.

Every pooled connection dies while idle. The first call after the restart must succeed: the
pool drops the dead connections on checkout (their sockets are readable: the server's FATAL or
its end of stream) instead of handing them out.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from pgqueue import Client, ClientSettings, admin
from pgqueue.embedded import free_port
from pgqueue.gating import ENABLED, Gate
from tests.support.postgres import PgServer
from tests.support.workers import WorkerFactory, wait_until


def test_first_call_after_a_postgres_restart_succeeds(
    pg_server: PgServer, pg_dsn: str, workers: WorkerFactory
) -> None:
    workers.start(pg_dsn, concurrency=1)
    with Client(settings=ClientSettings(dsn=pg_dsn, pool_size=4)) as client:
        # Fill the pool: four connections, all to die in the restart.
        with client.connection(), client.connection(), client.connection():
            assert client.call("demo.echo", ["warm-up"], timeout=30).ok
        assert client.pool_stats()["pool_size"] >= 2
        pg_server.stop("immediate")
        pg_server.start()
        result = client.call("demo.echo", ["first"], timeout=60)
        assert result.ok, result
        assert client.call("demo.echo", ["second"], timeout=30).ok


def test_first_gate_read_after_a_postgres_restart_reads_the_flag(
    pg_server: PgServer, pg_dsn: str
) -> None:
    admin.set_flag(pg_dsn, admin.GATE_FLAG, enabled=True, value="on", source="test")
    with Gate(pg_dsn, ttl=0) as gate:
        assert gate.decide() == ENABLED
        pg_server.stop("immediate")
        pg_server.start()
        # Its connection died while idle: a fresh one, not a fail-closed read.
        assert gate.decide() == ENABLED


@dataclass
class Bouncer:
    """A real PgBouncer in transaction pooling mode that the test can restart on its port."""

    binary: str
    ini: Path
    dsn: str
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "-u", "nobody", str(self.ini)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )

        def up() -> bool:
            try:
                with psycopg.connect(self.dsn, connect_timeout=1, prepare_threshold=None) as c:
                    c.execute("SELECT 1")
                return True
            except psycopg.OperationalError:
                return False

        wait_until(up, 30, "pgbouncer to accept connections")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()  # SIGTERM: PgBouncer closes every client connection
            self.proc.wait(30)
            self.proc = None


@pytest.fixture
def bouncer(pg_server: PgServer, pg_dsn: str) -> Iterator[Bouncer]:
    tmp = Path(tempfile.mkdtemp(prefix="pgqueue-pgbouncer-"))
    tmp.chmod(0o755)
    shutil.chown(tmp, "nobody")
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(binary).exists():
        raise RuntimeError("pgbouncer is not installed (apt-get install pgbouncer)")
    dbname = psycopg.conninfo.conninfo_to_dict(pg_dsn)["dbname"]
    port = free_port()
    (tmp / "users.txt").write_text('"postgres" ""\n')
    ini = tmp / "pgbouncer.ini"
    ini.write_text(
        f"""[databases]
{dbname} = host={pg_server.host} port={pg_server.port} dbname={dbname}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {tmp / "users.txt"}
pool_mode = transaction
max_client_conn = 200
default_pool_size = 10
ignore_startup_parameters = extra_float_digits,options
logfile = {tmp / "pgbouncer.log"}
pidfile = {tmp / "pgbouncer.pid"}
"""
    )
    b = Bouncer(binary, ini, f"postgresql://postgres@127.0.0.1:{port}/{dbname}")
    b.start()
    try:
        yield b
    finally:
        b.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def test_first_call_after_a_pgbouncer_restart_succeeds(
    pg_dsn: str, bouncer: Bouncer, workers: WorkerFactory
) -> None:
    workers.start(pg_dsn, concurrency=1)
    settings = ClientSettings(dsn=bouncer.dsn, pooled=True, pool_size=2, poll_max=0.05)
    with Client(settings=settings) as client:
        with client.connection():
            assert client.call("demo.echo", ["warm-up"], timeout=30).ok
        bouncer.stop()
        bouncer.start()
        result = client.call("demo.echo", ["first"], timeout=30)
        assert result.ok, result
