"""A throwaway PostgreSQL cluster for tests: initdb in a temp dir as user postgres, listen on a
unix socket dir and a free 127.0.0.1 port, create a database, remove everything at exit.

    with run_postgres() as url:          # postgresql+psycopg://postgres@127.0.0.1:PORT/taas
        other = create_database(url, "taas_other")
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from taas.testing.server import free_port

PG_BIN = Path(os.environ.get("TAAS_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "postgres"


def _as_postgres(*cmd: str, timeout: float = 60) -> None:
    argv = list(cmd) if os.geteuid() != 0 else ["runuser", "-u", PG_USER, "--", *cmd]
    subprocess.run(argv, check=True, capture_output=True, timeout=timeout)


def _conninfo(url: str, dbname: str | None = None) -> str:
    u = make_url(url).set(drivername="postgresql")
    if dbname:
        u = u.set(database=dbname)
    return u.render_as_string(hide_password=False)


def create_database(url: str, name: str) -> str:
    """Create database `name` on the cluster of `url`; its URL."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise ValueError(f"bad database name {name!r}")
    with psycopg.connect(_conninfo(url, "postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return make_url(url).set(database=name).render_as_string(hide_password=False)


class Cluster:
    """A running throwaway cluster: `.url` of its first database; `.stop()`/`.start()` take
    it down and up again (fault tests)."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.workdir, self.port = workdir, port
        self.data, self.log = workdir / "data", workdir / "postgres.log"
        self.url = ""
        self.running = False

    def start(self) -> None:
        options = (f"-k {self.workdir / 'sock'} -p {self.port} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                   "-c max_connections=200")
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o",
                     options, "-w", "-t", "60", "start")
        self.running = True

    def stop(self) -> None:
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w",
                     "stop")
        self.running = False


@contextmanager
def postgres_cluster(dbname: str = "taas") -> Iterator[Cluster]:
    """Start a cluster with a fresh database `dbname`; removed at exit."""
    workdir = Path(tempfile.mkdtemp(prefix="taas-test-pg-"))
    sockdir = workdir / "sock"
    sockdir.mkdir()
    if os.geteuid() == 0:
        pw = pwd.getpwnam(PG_USER)
        for p in (workdir, sockdir):
            os.chown(p, pw.pw_uid, pw.pw_gid)
    cluster = Cluster(workdir, free_port())
    try:
        _as_postgres(str(PG_BIN / "initdb"), "-D", str(cluster.data), "-U", PG_USER, "-A",
                     "trust", "-E", "UTF8", "--no-sync")
        cluster.start()
        url = f"postgresql+psycopg://{PG_USER}@127.0.0.1:{cluster.port}/postgres"
        cluster.url = create_database(url, dbname)
        yield cluster
    except subprocess.CalledProcessError as exc:
        text = cluster.log.read_text(errors="replace") if cluster.log.exists() else ""
        raise RuntimeError(
            f"PostgreSQL failed: {exc.cmd}: {exc.stderr.decode(errors='replace')}\n{text}"
        ) from None
    finally:
        if cluster.running:
            try:
                cluster.stop()
            except (subprocess.SubprocessError, OSError):
                pass
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def run_postgres(dbname: str = "taas") -> Iterator[str]:
    """Start a cluster and yield the `postgresql+psycopg://` URL of a fresh database."""
    with postgres_cluster(dbname) as cluster:
        yield cluster.url
