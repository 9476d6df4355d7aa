"""Fault matrix: a DSN's password appears in no output, log line or result.

libpq quotes a malformed URI (``postgresql://app:S3cr%zzet@db/app``: a bad percent-escape in
the password) in its error, so an unwrapped parse prints the password to stderr, logs and
``CallResult.error``. Everything pgqueue parses goes through ``db.parse_dsn``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from pgqueue import Client, ClientSettings, db
from pgqueue.embedded import free_port
from pgqueue.errors import ConfigurationError
from pgqueue.gating import FAILED, Gate
from pgqueue.migrating import migrate

PASSWORD = "S3cr%zzet"
FRAGMENTS = ("S3cr", "zzet")  # any piece of it, raw or decoded


def _clean(text: str) -> None:
    for fragment in FRAGMENTS:
        assert fragment not in text, f"the password leaked: {text!r}"


def _malformed() -> str:
    return f"postgresql://app:{PASSWORD}@127.0.0.1:{free_port()}/app"


def _cli(*argv: str, dsn: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pgqueue.cli", *argv],
        env={**os.environ, "PGQUEUE_DSN": dsn},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_malformed_dsn_never_shows_its_password(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    dsn = _malformed()
    for attempt in (
        lambda: Client(dsn),
        lambda: Client(settings=ClientSettings(dsn=dsn, pooled=True)),
        lambda: db.connect(dsn),
        lambda: migrate(dsn),
    ):
        with pytest.raises(ConfigurationError) as caught:
            attempt()
        assert caught.value.field == "dsn"
        _clean(str(caught.value))
    _clean(db.redact(dsn))
    with Gate(dsn, ttl=0) as gate:  # fail-closed: the fallback, and a warning without it
        assert gate.decide() == FAILED
    for argv in (
        ("call", "demo.echo", "--timeout", "3"),
        ("stats",),
        ("worker", "--tasks", "pgqueue.demo_tasks", "--metrics-port", "0"),
    ):
        out = _cli(*argv, dsn=dsn)
        assert out.returncode != 0, out
        assert "dsn" in out.stderr
        _clean(out.stdout + out.stderr)
    _clean(caplog.text)


def test_a_failing_connection_never_shows_the_password(caplog: pytest.LogCaptureFixture) -> None:
    # Well-formed, but nothing listens there: the error is libpq's, about the host.
    caplog.set_level(logging.DEBUG)
    secret = "S3cretzzet"
    dsn = f"postgresql://app:{secret}@127.0.0.1:{free_port()}/app"
    settings = ClientSettings(dsn=dsn, connect_timeout=1)
    with Client(settings=settings) as client:
        result = client.call("demo.echo", ["x"], timeout=3)
    assert result.kind == "enqueue_error", result
    _clean(result.error + result.to_json())
    out = _cli("call", "demo.echo", "--timeout", "3", dsn=dsn)
    assert out.returncode != 0
    _clean(out.stdout + out.stderr)
    out = _cli("stats", dsn=dsn)
    assert out.returncode != 0
    _clean(out.stdout + out.stderr)
    _clean(caplog.text)
    assert secret not in db.scrub(f"failed for {dsn}", dsn)
