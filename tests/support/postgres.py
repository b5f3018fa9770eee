"""A throwaway PostgreSQL 15 cluster for tests.

:func:`running_postgres` runs ``initdb`` into a temporary directory and starts the server on a
free loopback port (trust authentication, ``fsync=off``: the data is thrown away), and stops and
removes it afterwards. PostgreSQL refuses to run as root, so as root the binaries run as the
``postgres`` OS user (``runuser``) on a directory owned by it.

The binaries come from the Debian package ``postgresql`` (``/usr/lib/postgresql/15/bin``; another
directory can be named in ``BUDTEST_PG_BIN``). When they are missing the fixtures fail if the
environment variable ``CI`` is set, and skip otherwise.

Use the session fixture :func:`postgres_cluster` (import it into a conftest) and
:meth:`PostgresCluster.create_database` for a fresh database per test.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

PG_BIN = Path(os.environ.get("BUDTEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_OS_USER = "postgres"
START_TIMEOUT_S = 60


def postgres_available() -> bool:
    """Whether the PostgreSQL server binaries are installed."""
    return all((PG_BIN / name).is_file() for name in ("initdb", "pg_ctl", "postgres"))


def require_postgres() -> None:
    """Fails (under CI) or skips (locally) the calling test when PostgreSQL is not installed."""
    if postgres_available():
        return
    message = f"PostgreSQL binaries not found in {PG_BIN} (Debian: apt-get install -y postgresql)"
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@dataclass
class PostgresCluster:
    """A running cluster: superuser ``postgres`` over TCP on 127.0.0.1, no password."""

    root: Path
    port: int

    @property
    def host(self) -> str:
        """Address the server listens on."""
        return "127.0.0.1"

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL (psycopg 3) of a database in this cluster."""
        return f"postgresql+psycopg://{PG_OS_USER}@{self.host}:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> psycopg.Connection:
        """A plain autocommit psycopg connection."""
        return psycopg.connect(
            host=self.host, port=self.port, user=PG_OS_USER, dbname=database, autocommit=True
        )

    def create_database(self, name: str | None = None) -> str:
        """Creates an empty database and returns its name."""
        name = name or f"test_{uuid.uuid4().hex[:12]}"
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        """Drops a database, disconnecting whoever still uses it."""
        with self.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _as_pg_user(args: list[str]) -> list[str]:
    # The server refuses to start as root; the cluster then belongs to the postgres OS user.
    return ["runuser", "-u", PG_OS_USER, "--", *args] if os.geteuid() == 0 else args


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(args: list[str]) -> None:
    result = subprocess.run(_as_pg_user(args), capture_output=True, text=True, timeout=START_TIMEOUT_S + 30)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")


@contextmanager
def running_postgres() -> Iterator[PostgresCluster]:
    """Starts a fresh cluster; stops it and deletes its files on exit."""
    root = Path(tempfile.mkdtemp(prefix="bud-pg-"))
    try:
        if os.geteuid() == 0:
            pw = pwd.getpwnam(PG_OS_USER)
            os.chown(root, pw.pw_uid, pw.pw_gid)
        data, sockets, log = root / "data", root / "sock", root / "server.log"
        _run(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(data),
                "-U",
                PG_OS_USER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ]
        )
        _run(["mkdir", "-p", str(sockets)])
        started = None
        for _attempt in range(3):  # the free port may be taken between probing and binding
            port = _free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -p {port} -k {sockets} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
            )
            try:
                _run(
                    [
                        str(PG_BIN / "pg_ctl"),
                        "-D",
                        str(data),
                        "-l",
                        str(log),
                        "-w",
                        "-t",
                        str(START_TIMEOUT_S),
                        "-o",
                        options,
                        "start",
                    ]
                )
            except RuntimeError as err:
                started = err
                continue
            started = port
            break
        if not isinstance(started, int):
            server_log = log.read_text() if log.exists() else ""
            raise RuntimeError(f"PostgreSQL did not start: {started}\n{server_log}")
        try:
            yield PostgresCluster(root=root, port=started)
        finally:
            subprocess.run(
                _as_pg_user([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
                capture_output=True,
                timeout=START_TIMEOUT_S,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """One cluster for the test session (skipped or failed when PostgreSQL is missing)."""
    require_postgres()
    with running_postgres() as cluster:
        yield cluster


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> Iterator[str]:
    """The URL of a fresh, empty database, dropped after the test."""
    name = postgres_cluster.create_database()
    try:
        yield postgres_cluster.url(name)
    finally:
        postgres_cluster.drop_database(name)
