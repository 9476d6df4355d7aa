"""``pgqueue web``'s options: bad values end in one line naming the option, exit code 2."""

from __future__ import annotations

import pytest

from pgqueue.cli import main


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["web", "--write-token", "short"], {}, "--write-token: must be at least 16 characters"),
        (["web"], {"PGQUEUE_WEB_WRITE_TOKEN": "short"}, "--write-token: must be at least 16"),
        (["web", "--root-path", "pgqueue"], {}, "--root-path: must start with /"),
        (["web", "--port", "70000"], {}, "must be a TCP port"),
        (["web", "--refresh", "0"], {}, "must be > 0 seconds"),
    ],
)
def test_bad_options_name_the_option(
    argv: list[str],
    env: dict[str, str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PGQUEUE_DSN", "postgresql://u:secret@127.0.0.1:1/db")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "secret" not in err


def test_help_names_the_env_vars_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["web", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for text in ("PGQUEUE_WEB_WRITE_TOKEN", "PGQUEUE_WEB_ROOT_PATH", "exit codes: 0", "read-only"):
        assert text in out
