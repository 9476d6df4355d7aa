"""db: the I/O bounds every connection gets, and DSN parsing that never shows the password."""

from __future__ import annotations

import pytest
from psycopg.conninfo import conninfo_to_dict

from pgqueue import db
from pgqueue.errors import ConfigurationError
from pgqueue.settings import ConnectionSettings


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://app:S3cr%zzet@db/app",
        "postgresql://app:S3cr%zzet@db:notaport/app",
        "host=db password='S3cr%zzet' user=app dbname",
        "host=db password=S3cr%zzet = oops",
    ],
)
def test_a_malformed_dsn_error_never_holds_the_password(dsn: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        db.parse_dsn(dsn)
    assert caught.value.field == "dsn"
    assert "S3cr" not in str(caught.value) and "zzet" not in str(caught.value)
    assert "S3cr" not in db.redact(dsn)


def test_scrub_removes_every_spelling_of_the_password() -> None:
    dsn = "postgresql://app:p%40ss-word@db/app"
    text = "failed for p%40ss-word and p@ss-word at db"
    assert db.scrub(text, dsn) == "failed for *** and *** at db"
    assert db.scrub("x password=hunter2 y", "host=db password=hunter2") == "x password=*** y"


def test_connections_get_keepalives_timeouts_and_keep_the_dsns_own_values() -> None:
    settings = ConnectionSettings(statement_timeout=30, idle_in_transaction_timeout=0)
    info = conninfo_to_dict(
        db.conninfo("postgresql://app@db/app?keepalives_idle=99", settings, pooled=False)
    )
    assert info["keepalives"] == "1"
    assert info["keepalives_idle"] == "99"  # the DSN wins
    assert info["keepalives_interval"] == "3" and info["keepalives_count"] == "3"
    assert info["tcp_user_timeout"] == "20000"
    assert "-c statement_timeout=30000" in info["options"]
    assert "idle_in_transaction" not in info["options"]  # 0: the server's own setting
    own = conninfo_to_dict(
        db.conninfo("host=db options='-c statement_timeout=5'", settings, pooled=False)
    )
    assert own["options"].endswith("-c statement_timeout=5")  # later -c wins in Postgres
    pooled = conninfo_to_dict(db.conninfo("host=db", settings, pooled=True))
    assert "options" not in pooled  # a pooler does not pass startup options on
    assert pooled["tcp_user_timeout"] == "20000"
    assert db.io_bound(settings) == 35.0
    off = ConnectionSettings(statement_timeout=0, idle_in_transaction_timeout=0)
    assert db.io_bound(off) is None
    assert "options" not in conninfo_to_dict(db.conninfo("host=db", off, pooled=False))


def test_bounds_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGQUEUE_STATEMENT_TIMEOUT", "7")
    monkeypatch.setenv("PGQUEUE_TCP_USER_TIMEOUT", "2.5")
    settings = ConnectionSettings()
    assert settings.statement_timeout == 7 and settings.tcp_user_timeout == 2.5
    with pytest.raises(ValueError, match="keepalives_count"):
        ConnectionSettings(keepalives_count=0)
