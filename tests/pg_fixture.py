"""A throwaway PostgreSQL + PostGIS cluster for tests.

Import the fixtures into a test module (``from pg_fixture import pg_cluster, postgis_url``):

- ``pg_cluster`` (session): ``initdb`` into a temporary folder, ``pg_ctl start`` on a free
  127.0.0.1 port and a unix socket in that folder, a template database with
  ``CREATE EXTENSION postgis``; stopped and deleted at the end of the session.
- ``postgis_url`` (function): a fresh database cloned from the template; its URL.

Binaries come from ``$PATTOGIS_PG_BIN``, ``/usr/lib/postgresql/15/bin`` or ``pg_config``. When
they or PostGIS are missing the tests are skipped with the reason — except when ``CI=true``,
where they fail. PostgreSQL refuses to run as root: as root the cluster runs as the ``postgres``
system user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

DEFAULT_BIN = "/usr/lib/postgresql/15/bin"
TEMPLATE_DB = "pattogis_postgis_template"
SUPERUSER = "pattogis"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def unavailable(reason: str) -> None:
    """Skip (or, in CI, fail) the test that needed PostgreSQL."""
    if _in_ci():
        pytest.fail(f"PostgreSQL/PostGIS needed in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def find_bin() -> Path | None:
    """Folder holding initdb, pg_ctl and postgres."""
    cands = [os.environ.get("PATTOGIS_PG_BIN"), DEFAULT_BIN]
    cands += sorted((str(p) for p in Path("/usr/lib/postgresql").glob("*/bin")), reverse=True)
    if shutil.which("pg_config"):
        with contextlib.suppress(subprocess.CalledProcessError, OSError):
            cands.append(subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                                        check=True).stdout.strip())
    for c in cands:
        if c and all((Path(c) / b).exists() for b in ("initdb", "pg_ctl", "postgres")):
            return Path(c)
    return None


def postgis_control(bindir: Path) -> Path | None:
    """PostGIS's extension control file for this server, if installed."""
    try:
        share = subprocess.run([str(bindir / "pg_config"), "--sharedir"], capture_output=True,
                               text=True, check=True).stdout.strip()
    except (subprocess.CalledProcessError, OSError):
        share = str(Path("/usr/share/postgresql") / bindir.parent.name)
    p = Path(share) / "extension" / "postgis.control"
    return p if p.exists() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgCluster:
    """One PostgreSQL server in a temporary folder, owned by this test session."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="pattogis-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        self._as: list[str] = []
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                shutil.rmtree(self.root)
                unavailable("running as root and there is no 'postgres' user to run PostgreSQL as")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, LC_ALL="C", LANG="C")
        return subprocess.run([*self._as, *args], capture_output=True, text=True, env=env, cwd=self.root)

    def _fail(self, what: str, r: subprocess.CompletedProcess[str]) -> None:
        tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
        self.stop()
        raise RuntimeError(f"{what} failed ({r.returncode}): {r.stderr.strip()}\n{tail}")

    def start(self) -> None:
        r = self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", SUPERUSER,
                      "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
        if r.returncode:
            self._fail("initdb", r)
        for _ in range(5):  # another process may grab the port between free_port and start
            self.port = free_port()
            # A throwaway cluster: durability is not wanted, speed is.
            opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                    "-c max_connections=200 -c fsync=off -c synchronous_commit=off "
                    "-c full_page_writes=off")
            r = self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                          "-w", "-t", "60", "-o", opts, "start")
            if r.returncode == 0:
                break
        else:
            self._fail("pg_ctl start", r)
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as con:
            con.execute(f"CREATE DATABASE {TEMPLATE_DB}")
        with psycopg.connect(self.url(TEMPLATE_DB), autocommit=True) as con:
            con.execute("CREATE EXTENSION postgis")

    def url(self, dbname: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def new_database(self) -> str:
        """A fresh database with PostGIS (cloned from the template); returns its URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url("postgres"), autocommit=True) as con:
            # FILE_COPY: a plain file copy of the small template, ~10x faster than WAL_LOG here
            con.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB} STRATEGY FILE_COPY")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        import psycopg

        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.url("postgres"), autocommit=True) as con:
            con.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        if self.data.exists() and (self.data / "postmaster.pid").exists():
            # immediate: nothing in a throwaway cluster is worth a shutdown checkpoint
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


# One cluster per test process, however many modules import the fixture (each import makes
# its own session fixture): reference-counted, stopped when the last user is torn down.
_shared: dict[str, object] = {"cluster": None, "users": 0}


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    if _shared["cluster"] is None:
        bindir = find_bin()
        if bindir is None:
            unavailable("PostgreSQL binaries not found (set PATTOGIS_PG_BIN or install postgresql-15)")
        assert bindir is not None
        if postgis_control(bindir) is None:
            unavailable(f"PostGIS is not installed for the server in {bindir} (postgresql-15-postgis-3)")
        cluster = PgCluster(bindir)
        try:
            cluster.start()
        except BaseException:
            cluster.stop()
            raise
        _shared["cluster"] = cluster
    _shared["users"] = int(_shared["users"]) + 1  # type: ignore[call-overload]
    try:
        yield _shared["cluster"]  # type: ignore[misc]
    finally:
        _shared["users"] = int(_shared["users"]) - 1  # type: ignore[call-overload]
        if _shared["users"] == 0:
            _shared["cluster"].stop()  # type: ignore[union-attr]
            _shared["cluster"] = None


@pytest.fixture
def postgis_url(pg_cluster: PgCluster) -> Iterator[str]:
    """URL of a fresh, empty PostGIS database for one test (dropped after it)."""
    url = pg_cluster.new_database()
    yield url
    pg_cluster.drop_database(url)
