"""The servers a run compares on: one embedded Postgres, a private Redis, a PgBouncer.

All listen on loopback, on free ports, with their files in the run's work folder. Postgres keeps
fsync and synchronous_commit on (the durable default the targets are stated for) and preloads
pg_stat_statements, which the run resets and reads per scenario for the profile.
"""

from __future__ import annotations

import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from bench.procs import BenchError, Proc, Processes, wait_until
from pgqueue import embedded
from pgqueue.migrating import migrate


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Postgres:
    server: embedded.EmbeddedPostgres

    def dsn_for(self, database: str) -> str:
        return self.server.dsn_for(database)

    def version(self) -> str:
        with psycopg.connect(self.server.dsn, autocommit=True) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "?"

    def fresh_database(self, name: str, *, pgqueue_schema: bool = True) -> str:
        """Drop and create a database; migrate the pgqueue schema into it when asked."""
        with psycopg.connect(self.server.dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        dsn = self.dsn_for(name)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        if pgqueue_schema:
            migrate(dsn)
        return dsn


def start_postgres(workdir: Path) -> Postgres:
    data = workdir / "pgdata"
    server = embedded.EmbeddedPostgres(
        data,
        # max_connections: the fleet scenario's 200 callers hold two sessions each.
        settings={
            "fsync": "on",
            "synchronous_commit": "on",
            "track_io_timing": "on",
            "max_connections": "800",
        },
    )
    try:
        server.start()
    except BaseException:
        server.cleanup()
        raise
    return Postgres(server)


def stop_postgres(pg: Postgres) -> None:
    pg.server.stop("fast")


@dataclass
class Redis:
    port: int
    proc: Proc

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def start_redis(procs: Processes) -> Redis:
    binary = shutil.which("redis-server")
    if binary is None:
        raise BenchError("redis-server not found: apt-get install redis-server")
    port = embedded.free_port()
    proc = procs.start(
        "redis",
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
            "--dir",
            str(procs.workdir),
        ],
    )

    def up() -> bool:
        proc.check_alive()
        return _listening(port)

    wait_until(up, 15, "redis-server to listen")
    return Redis(port, proc)


@dataclass
class PgBouncer:
    port: int
    proc: Proc

    def dsn_for(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"


def start_pgbouncer(procs: Processes, pg: Postgres, database: str) -> PgBouncer:
    """PgBouncer in transaction pooling mode in front of one database (None when absent)."""
    binary = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
    )
    if binary is None:
        raise BenchError("pgbouncer not found: apt-get install pgbouncer")
    port = embedded.free_port()
    folder = procs.workdir / "pgbouncer"
    folder.mkdir(exist_ok=True)
    ini = folder / "pgbouncer.ini"
    ini.write_text(
        "[databases]\n"
        f"{database} = host=127.0.0.1 port={pg.server.port} dbname={database} user=postgres\n"
        "[pgbouncer]\n"
        "listen_addr = 127.0.0.1\n"
        f"listen_port = {port}\n"
        f"unix_socket_dir = {folder}\n"
        "auth_type = any\n"
        "pool_mode = transaction\n"
        "default_pool_size = 20\n"
        "max_client_conn = 200\n"
        "ignore_startup_parameters = extra_float_digits,options\n"
        "log_connections = 0\n"
        "log_disconnections = 0\n"
    )
    argv = [binary]
    if os.geteuid() == 0:
        # PgBouncer refuses to run as root: drop to the embedded server's system user.
        user = embedded.SERVER_USER
        shutil.chown(folder, user, user)
        shutil.chown(ini, user, user)
        argv += ["-u", user]
    argv.append(str(ini))
    proc = procs.start("pgbouncer", argv)

    def up() -> bool:
        proc.check_alive()
        return _listening(port)

    wait_until(up, 15, "pgbouncer to listen")
    return PgBouncer(port, proc)
