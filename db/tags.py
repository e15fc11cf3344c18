"""The tag log: every review decision, append-only, in a DuckDB file or on PostgreSQL.

`open_tag_log(spec)` picks the backend: a `postgresql://user@host/db` URL is a shared log on a
PostgreSQL server (several reviewers on several machines, writers serialised by the database);
anything else is a DuckDB file (the default, `artlens.tags.duckdb` beside the store). Both have
one interface: `ensure`, `add`, `add_many`, `history`, `latest`, and the same columns.
"""
from __future__ import annotations

import re
import threading
import time
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:                     # Windows: DuckDB's own file lock is the only guard there
    fcntl = None

import duckdb
import pandas as pd

from db.schema import DECISIONS, PG_TAG_DDL, TAG_DDL
from db.store import TAG_COLUMNS, StoreError, is_database_url

# Every command that opens a tag log says what it takes in the same words.
TAG_LOG_HELP = ("tag log: a DuckDB file or a postgresql://user@host/db URL (shared by a team); "
                "default: <store stem>.tags.duckdb")
INSERT_COLUMNS = ["path", "sha1", "task", "decision", "given_label", "suggested_label", "note", "reviewer", "run_id"]


def _try_flock(f, kind: int) -> bool:
    """Take flock `kind` on the open file `f` without waiting; False where another process holds one
    that conflicts."""
    try:
        fcntl.flock(f, kind | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def redact(spec: str | Path) -> str:
    """A tag log's name fit for logs and run records: a URL's password replaced by ***."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", str(spec))


def open_tag_log(spec: str | Path, wait_s: float = 30.0) -> "DuckDBTagLog | PostgresTagLog":
    """The tag log at `spec`: a PostgreSQL URL or a DuckDB file path."""
    return PostgresTagLog(str(spec), wait_s) if is_database_url(spec) else DuckDBTagLog(spec, wait_s)


def tags_frame(tags: pd.DataFrame | None) -> pd.DataFrame:
    """`tags`, or an empty frame with the tag log's columns (so joins and filters work before any tag)."""
    if tags is None or tags.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in TAG_COLUMNS})
    return tags


def check_rows(rows: list[dict]) -> None:
    for r in rows:
        if r["decision"] not in DECISIONS:
            raise ValueError(f"decision {r['decision']!r} is not one of {', '.join(DECISIONS)}")
        if not str(r.get("reviewer") or "").strip():
            raise ValueError("a reviewer name is required to tag")


class TagLogBase:
    """What both backends share; each defines `_run(fn)` (fn gets an open connection) and `add_many`."""

    def ensure(self) -> None:
        """Create the log's table if missing (never touches existing rows)."""
        self._run(lambda con: None)

    def add(self, path: str, task: str, decision: str, reviewer: str, *, sha1: str | None = None,
            given_label: str | None = None, suggested_label: str | None = None, note: str | None = None,
            run_id: str | None = None) -> int:
        """Append one decision; returns its tag_id."""
        return self.add_many([dict(path=path, sha1=sha1, task=task, decision=decision, given_label=given_label,
                                   suggested_label=suggested_label, note=note, reviewer=reviewer, run_id=run_id)])[0]


class DuckDBTagLog(TagLogBase):
    """Append-only review decisions in their own DuckDB file.

    DuckDB allows one writing process per file. Every call opens, works and closes within a
    short transaction, holding an OS lock on `<file>.lock` from before the open until after the
    close (DuckDB's own lock alone has let two reviewers' processes lose a decision between them).
    While another process holds the file, the call waits with backoff for up to `wait_s` seconds,
    then raises StoreError. Threads of one process are serialised by a lock.
    """
    _locks: dict[str, threading.Lock] = {}

    def __init__(self, path: str | Path, wait_s: float = 30.0):
        self.path = Path(path)
        self.wait_s = wait_s
        self._lock = DuckDBTagLog._locks.setdefault(str(self.path.resolve()), threading.Lock())

    @contextmanager
    def _process_lock(self, deadline: float):
        """An exclusive OS lock on `<file>.lock` for the block, waited for until `deadline` (StoreError
        after); none where the OS has no flock or the folder takes no new file.

        Taking turns: a waiting process holds a shared lock on `<file>.wait`, and a process that
        finds one there gives way for a moment before it takes the lock, so a reviewer writing
        decision after decision cannot keep another one out until that one's wait runs out."""
        files = []
        try:
            for ext in (".lock", ".wait") if fcntl else ():
                files.append(open(self.path.with_name(self.path.name + ext), "a+b"))
        except OSError:
            for f in files:
                f.close()
            files = []
        if not files:
            yield
            return
        lock, wait = files
        try:
            if not _try_flock(wait, fcntl.LOCK_EX):          # another process waits: its turn first
                time.sleep(0.004)
            else:
                fcntl.flock(wait, fcntl.LOCK_UN)
            delay, waiting = 0.001, False
            while not _try_flock(lock, fcntl.LOCK_EX):
                if time.monotonic() > deadline:
                    raise StoreError(f"tag log {self.path} is busy: another process has held it for "
                                     f"{self.wait_s:g} s")
                if not waiting:
                    waiting = _try_flock(wait, fcntl.LOCK_SH)
                time.sleep(delay)
                delay = min(delay * 2, 0.002)
            if waiting:
                fcntl.flock(wait, fcntl.LOCK_UN)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        finally:
            for f in files:
                f.close()

    def _run(self, fn, read_only: bool = False):
        if read_only and not self.path.exists():
            return fn(None)
        deadline = time.monotonic() + self.wait_s
        delay = 0.005
        with self._lock, self._process_lock(deadline):
            while True:
                try:
                    con = duckdb.connect(str(self.path))
                except duckdb.IOException as e:
                    if "lock" not in str(e).lower() or time.monotonic() > deadline:
                        raise StoreError(f"tag log {self.path} is busy or unreadable: {str(e).splitlines()[0]}") from None
                    time.sleep(delay)
                    delay = min(delay * 2, 0.2)
                    continue
                try:
                    for ddl in TAG_DDL:
                        con.execute(ddl)
                    return fn(con)
                finally:
                    con.close()

    def add_many(self, rows: list[dict]) -> list[int]:
        """Append decisions in one transaction (all or none); returns their tag_ids in order."""
        check_rows(rows)
        cols = INSERT_COLUMNS

        def write(con):
            con.execute("BEGIN")
            try:
                ids = [con.execute(f"INSERT INTO tags ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
                                   "RETURNING tag_id", [r.get(c) for c in cols]).fetchone()[0] for r in rows]
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            return ids
        return self._run(write)

    def history(self) -> pd.DataFrame:
        """Every decision ever made, oldest first."""
        def read(con):
            if con is None:
                return tags_frame(None)
            return con.execute("SELECT * FROM tags ORDER BY tag_id").df()
        return self._run(read, read_only=True)

    def latest(self) -> pd.DataFrame:
        """The decision in force per (path, task): the most recent one supersedes earlier ones."""
        def read(con):
            if con is None:
                return tags_frame(None)
            return con.execute("""SELECT * FROM tags QUALIFY row_number() OVER
                (PARTITION BY path, task ORDER BY tag_id DESC) = 1 ORDER BY tag_id""").df()
        return self._run(read, read_only=True)


class PostgresTagLog(TagLogBase):
    """The tag log as one table on a PostgreSQL server, for a team: every dashboard, `artlens
    export` and `--apply-tags` of every machine reads and writes the same decisions.

    One connection per log object, kept open (a decision costs one round trip, not a connect) and
    used by one thread at a time; a dropped connection is reopened once. Inserts take turns (an
    advisory lock held for the insert only), so `latest` (the highest tag_id per painting and task)
    is the decision made last, as in the DuckDB file.
    """

    def __init__(self, url: str, wait_s: float = 30.0):
        self.url, self.wait_s = url, wait_s
        self.path = redact(url)   # what messages and run records show
        self._lock = threading.Lock()
        self._con = None
        self._ready = False

    def _connect(self):
        import psycopg
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                return psycopg.connect(self.url, connect_timeout=max(1, int(self.wait_s)))
            except psycopg.OperationalError as e:
                if time.monotonic() > deadline:
                    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                    raise StoreError(f"tag log {self.path}: cannot connect ({first})") from None
                time.sleep(0.5)

    def _run(self, fn):
        import psycopg
        with self._lock:
            for attempt in (0, 1):
                try:
                    if self._con is None or self._con.closed:
                        self._con = self._connect()
                    if not self._ready:
                        with self._con.transaction():
                            # one creator at a time: CREATE ... IF NOT EXISTS races between sessions
                            self._con.execute("SELECT pg_advisory_xact_lock(4242001)")
                            for ddl in PG_TAG_DDL:
                                self._con.execute(ddl)
                        self._ready = True
                    return fn(self._con)
                except psycopg.OperationalError as e:   # the server restarted or dropped us: reconnect once
                    self._con = None
                    if attempt:
                        raise StoreError(f"tag log {self.path}: {str(e).strip().splitlines()[0]}") from None
                except psycopg.Error as e:
                    raise StoreError(f"tag log {self.path}: {str(e).strip().splitlines()[0]}") from None

    def add_many(self, rows: list[dict]) -> list[int]:
        """Append decisions in one transaction (all or none); returns their tag_ids in order."""
        check_rows(rows)
        sql = (f"INSERT INTO tags ({', '.join(INSERT_COLUMNS)}) VALUES ({', '.join(['%s'] * len(INSERT_COLUMNS))}) "
               "RETURNING tag_id")

        def write(con):
            with con.transaction():
                # writers take turns for the few microseconds of an insert, so ids, times and commits
                # share one order: the highest tag_id is always the decision made last
                con.execute("SELECT pg_advisory_xact_lock(4242002)")
                return [con.execute(sql, [r.get(c) for c in INSERT_COLUMNS]).fetchone()[0] for r in rows]
        return self._run(write)

    def _frame(self, sql: str) -> pd.DataFrame:
        def read(con):
            with con.transaction():
                cur = con.execute(sql)
                return pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])
        df = self._run(read)
        return df if len(df) else tags_frame(None)

    def history(self) -> pd.DataFrame:
        """Every decision ever made, oldest first."""
        return self._frame(f"SELECT {', '.join(TAG_COLUMNS)} FROM tags ORDER BY tag_id")

    def latest(self) -> pd.DataFrame:
        """The decision in force per (path, task): the most recent one supersedes earlier ones."""
        return self._frame(f"""SELECT {', '.join(TAG_COLUMNS)} FROM (
                SELECT DISTINCT ON (path, task) * FROM tags ORDER BY path, task, tag_id DESC) t ORDER BY tag_id""")
