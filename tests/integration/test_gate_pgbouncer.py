"""The gate behind PgBouncer in transaction pooling mode: no prepared statements, no session state
(its read limits are transaction-local), reads keep working past psycopg's prepare threshold."""

from __future__ import annotations

import logging

import pytest

from pgqueue import admin
from pgqueue.gating import Gate
from tests.integration.test_pgbouncer import bouncer_dsn  # noqa: F401 - the PgBouncer fixture


def test_gate_reads_through_a_transaction_pooler(
    bouncer_dsn: str,  # noqa: F811
    pg_dsn: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="pgqueue.gating")
    admin.set_flag(pg_dsn, admin.GATE_FLAG, enabled=True, value="on", source="test")
    with Gate(bouncer_dsn, ttl=0.0, pooled=True) as gate:
        assert [gate.decide().route for _ in range(20)] == ["pg"] * 20
        admin.set_flag(pg_dsn, admin.GATE_FLAG, enabled=False, value="off", source="test")
        assert [gate.decide().reason for _ in range(5)] == ["disabled"] * 5
        assert gate.reads == 25
    assert [r.getMessage() for r in caplog.records] == []
