"""A throwaway PostgreSQL cluster for tests: ``initdb`` in a temp dir, stopped at the end.

The server listens only on a unix socket in its own temp dir (no TCP port to collide
with other test runs on the machine). Run as root, every server command runs as the
``postgres`` user (``runuser``), which owns the cluster's directory; run as anyone
else, as that user.

The binaries are found through ``BITLOOT_PG_BINDIR``, then ``pg_ctl`` on the ``PATH``,
then Debian's ``/usr/lib/postgresql/<version>/bin``. ``.ci/run`` installs Debian's
``postgresql`` package when they are missing.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

SERVER_USER = "postgres"
PORT = 5432  # only names the socket file, which lives in the cluster's own dir


class PostgresMissing(RuntimeError):
    pass


def find_bindir() -> Path:
    explicit = os.environ.get("BITLOOT_PG_BINDIR")
    if explicit:
        return Path(explicit)
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).parent

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", path.parent.parent.name))

    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=version)
    if not found:
        raise PostgresMissing(
            "no PostgreSQL server binaries (apt-get install postgresql, or set BITLOOT_PG_BINDIR)"
        )
    return found[-1].parent


class PgCluster:
    """One cluster; ``url(db)`` for a connection, ``new_database()`` for an empty one."""

    def __init__(self, bindir: Path, *, durable: bool = False) -> None:
        self.bindir = bindir
        self.durable = durable
        self.root = Path(tempfile.mkdtemp(prefix="bitloot-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._names = itertools.count()
        self._as_root = os.geteuid() == 0
        if self._as_root:
            user = pwd.getpwnam(SERVER_USER)
            os.chown(self.root, user.pw_uid, user.pw_gid)

    def _run(self, *argv: str) -> None:
        command = [str(self.bindir / argv[0]), *argv[1:]]
        if self._as_root:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(
                f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}{done.stderr}{log}"
            )

    def init(self) -> PgCluster:
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            SERVER_USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        settings = [
            f"unix_socket_directories = '{self.root}'",
            "listen_addresses = ''",
            f"port = {PORT}",
            "max_connections = 200",
            "shared_buffers = 32MB",
        ]
        if not self.durable:
            # Test data is thrown away: skip the fsyncs that make a commit durable.
            settings += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("\n".join(settings) + "\n")
        return self

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SERVER_USER}@/{database}?host={self.root}&port={PORT}"

    def new_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"'.encode())
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = database_name(url)
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())

    def destroy(self) -> None:
        with contextlib.suppress(RuntimeError):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def database_name(url: str) -> str:
    """The database a URL of ``PgCluster.url`` names (its host is a path: split with care)."""
    return urlsplit(url).path.lstrip("/")


def start_cluster(*, durable: bool = False) -> PgCluster:
    cluster = PgCluster(find_bindir(), durable=durable).init()
    try:
        cluster.start()
    except BaseException:
        cluster.destroy()
        raise
    return cluster
