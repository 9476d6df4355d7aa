"""The fault proxy itself: traffic passes, a stall blocks a query, a cut resets the session."""

from __future__ import annotations

import threading

import psycopg
import pytest

from tests.support.faultproxy import FaultProxy
from tests.support.postgres import PgServer


def test_proxy_passes_stalls_and_cuts(pg_server: PgServer, proxy_factory: object) -> None:
    proxy: FaultProxy = proxy_factory(pg_server.host, pg_server.port)  # type: ignore[operator]
    dsn = proxy.dsn_for(pg_server.dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        proxy.stall()
        done = threading.Event()

        def query() -> None:
            conn.execute("SELECT 2").fetchone()
            done.set()

        t = threading.Thread(target=query, daemon=True)
        t.start()
        assert not done.wait(0.5), "a stalled proxy let a query through"
        proxy.resume()
        assert done.wait(5), "the query did not finish after the stall ended"
        proxy.cut()
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 3")
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT 4").fetchone() == (4,)
