"""A throwaway local PostgreSQL server for the tag-log tests and `make bench` (Debian `postgresql`;
`.ci/run` installs it). It listens on a unix socket in its own folder only, trusts local users and
is stopped and deleted on exit. As root it runs the server as the `postgres` user, which
PostgreSQL requires."""
from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path


def postgres_bin() -> Path | None:
    """The folder holding initdb and pg_ctl, or None when PostgreSQL is not installed."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(d) / "initdb").exists():
            return Path(d)
    return None


def create_database(server_url: str, name: str) -> str:
    """A new empty database `name` on the server of `server_url`; returns its URL."""
    import psycopg
    with psycopg.connect(server_url, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    return server_url.replace("/postgres?", f"/{name}?", 1)


@contextlib.contextmanager
def local_postgres(database: str = "artlens"):
    """Yields a postgresql:// URL to an empty `database` on a fresh server (socket only); the
    server's own `postgres` database is the same URL with /postgres."""
    bindir = postgres_bin()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    as_root = os.geteuid() == 0
    home = Path(tempfile.mkdtemp(prefix="artlens-pg-"))
    data, sock = home / "data", home / "sock"
    sock.mkdir()
    if as_root:
        shutil.chown(home, "postgres")
        shutil.chown(sock, "postgres")

    def run(*cmd: str) -> None:
        full = (["runuser", "-u", "postgres", "--"] if as_root else []) + list(cmd)
        r = subprocess.run(full, capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(f"{' '.join(cmd[:2])} failed: {(r.stderr or r.stdout).strip()[-500:]}")
    port = "5432"   # only names the socket file; nothing listens on TCP
    try:
        run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        run(str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l", str(home / "server.log"), "-o",
            f"-k {sock} -c listen_addresses='' -p {port} -c fsync=off", "start")
        try:
            yield create_database(f"postgresql://postgres@/postgres?host={sock}&port={port}", database)
        finally:
            run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(home, ignore_errors=True)
