"""The store's SQL: building it and reading it (the tag log's is db/tags.py).

- `build_store` writes a complete new store beside the old one and swaps it in with one rename,
  so a crash mid-build leaves the previous store as it was.
- `Store` is the read-only view the dashboard and CLIs query (one DuckDB connection, a cursor
  per call so Streamlit's threads can share it).
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from db.schema import STORE_TABLES, UNJUDGED

log = logging.getLogger("db")


class StoreError(Exception):
    """The store or tag log is missing, locked past the retry budget, or not an artlens store."""


# ------------------------------------------------------------------ file layout
@dataclass
class Paths:
    """Where a store's three files live: the store, its FAISS index and its tag log.

    Defaults beside the store: artlens.duckdb -> artlens.faiss, artlens.tags.duckdb.
    """
    store: Path
    index: Path
    tags: Path | str    # a file, or a postgresql:// URL (db/tags.py)

    @classmethod
    def from_store(cls, store: str | Path, index: str | Path | None = None, tags: str | Path | None = None) -> "Paths":
        s = Path(store)
        if not tags:
            tags = s.with_name(s.stem + ".tags.duckdb")
        return cls(s, Path(index) if index else s.with_suffix(".faiss"),
                   str(tags) if is_database_url(tags) else Path(tags))


def is_database_url(spec: str | Path) -> bool:
    """A tag log on a database server (postgresql://...) rather than a file."""
    return str(spec).startswith(("postgresql://", "postgres://"))


# ------------------------------------------------------------------ building
def _arrow_table(df: pd.DataFrame) -> pa.Table:
    """DataFrame -> Arrow; columns holding numpy arrays become Arrow list columns (bulk, no per-row SQL)."""
    cols = {}
    for c in df.columns:
        s = df[c]
        if len(s) and isinstance(s.iloc[0], np.ndarray):
            flat = np.concatenate(s.to_numpy()).astype(np.float32 if s.iloc[0].dtype.kind == "f" else np.int32)
            offsets = np.concatenate([[0], np.cumsum([len(a) for a in s])]).astype(np.int32)
            cols[c] = pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat))
        else:
            cols[c] = pa.Array.from_pandas(s)
    return pa.table(cols)


def build_store(path: str | Path, tables: dict[str, pd.DataFrame], info: dict[str, str]) -> None:
    """Write all tables into a new DuckDB file and atomically replace `path` with it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.building-{os.getpid()}")
    for p in (tmp, Path(str(tmp) + ".wal")):
        p.unlink(missing_ok=True)
    try:
        con = duckdb.connect(str(tmp))
        try:
            for name, ddl in STORE_TABLES.items():
                con.execute(ddl)
            for name, df in tables.items():
                if name not in STORE_TABLES:
                    raise ValueError(f"unknown table {name}")
                if len(df) == 0:
                    continue
                con.register("incoming", _arrow_table(df))
                cols = ", ".join(f'"{c}"' for c in df.columns)
                con.execute(f'INSERT INTO {name} ({cols}) SELECT {cols} FROM incoming')
                con.unregister("incoming")
            con.executemany("INSERT INTO store_info VALUES (?, ?)", [(k, str(v)) for k, v in info.items()])
            con.execute("CHECKPOINT")
        finally:
            con.close()
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        # A WAL beside the old file belongs to the old file; it must not be replayed onto the new one.
        Path(str(path) + ".wal").unlink(missing_ok=True)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        Path(str(tmp) + ".wal").unlink(missing_ok=True)
        raise


# ------------------------------------------------------------------ reading
class Store:
    """Read-only queries over an artlens store. Every method returns a DataFrame or plain values."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._columns: set[tuple[str, str]] | None = None   # (table, column), read on first use
        if not self.path.is_file():
            raise StoreError(f"no store at {self.path}: run `make train embed` first")
        try:
            self._con = duckdb.connect(str(self.path), read_only=True)
            self._con.execute("SELECT count(*) FROM images").fetchone()
        except duckdb.Error as e:
            raise StoreError(f"{self.path} is not a readable artlens store: {str(e).splitlines()[0]}") from None

    def close(self) -> None:
        self._con.close()

    def _q(self, sql: str, params: Iterable | dict = (), frames: dict[str, pd.DataFrame] | None = None
           ) -> pd.DataFrame:
        cur = self._con.cursor()
        try:
            for name, df in (frames or {}).items():
                cur.register(name, df)
            return cur.execute(sql, params if isinstance(params, dict) else list(params)).df()
        finally:
            cur.close()

    def _has_column(self, table: str, column: str) -> bool:
        """Stores written by an older version lack newer columns; queries fall back instead of failing.
        The store is read-only, so its columns are read once, not on every page render."""
        if self._columns is None:
            self._columns = set(self._q("SELECT table_name, column_name FROM information_schema.columns")
                                .itertuples(index=False, name=None))
        return (table, column) in self._columns

    def _training_index(self) -> str:
        """SQL for the label a run trained on (labels.training_index; the given one in older stores)."""
        return "l.training_index" if self._has_column("labels", "training_index") else "l.class_index"

    # --- run and set-level facts
    def info(self) -> dict[str, str]:
        return dict(self._q("SELECT key, value FROM store_info").itertuples(index=False))

    def run(self) -> dict:
        r = self._q("SELECT * FROM runs LIMIT 1")
        if r.empty:
            return {}
        row = r.iloc[0].to_dict()
        row["metrics"] = json.loads(row["metrics"]) if row.get("metrics") else {}
        row["benchmark"] = json.loads(row["benchmark"]) if row.get("benchmark") else {}
        return row

    def tasks(self) -> list[str]:
        return self._q("SELECT DISTINCT task FROM classes ORDER BY task")["task"].tolist()

    def class_names(self, task: str) -> list[str]:
        return self._q("SELECT name FROM classes WHERE task = ? ORDER BY class_index", [task])["name"].tolist()

    def detectors(self) -> list[str]:
        return self._q("SELECT DISTINCT detector FROM scores ORDER BY detector")["detector"].tolist()

    def projection_methods(self) -> list[str]:
        """2-D projections stored, UMAP first."""
        return self._q("""SELECT DISTINCT method FROM projections
            ORDER BY CASE method WHEN 'umap' THEN 0 ELSE 1 END, method""")["method"].tolist()

    def counts(self) -> dict[str, int]:
        r = self._q("""SELECT count(*) AS paintings,
                              count(*) FILTER (WHERE split = 'train') AS train,
                              count(*) FILTER (WHERE split = 'val') AS val,
                              count(*) FILTER (WHERE split = 'test') AS test FROM images""")
        return {k: int(v) for k, v in r.iloc[0].items()}

    def label_distribution(self, task: str) -> pd.DataFrame:
        """Columns: label, paintings (unknown labels as '(none)')."""
        return self._q("""SELECT coalesce(c.name, '(none)') AS label, count(*) AS paintings
            FROM labels l LEFT JOIN classes c ON c.task = l.task AND c.class_index = l.class_index
            WHERE l.task = ? GROUP BY 1 ORDER BY paintings DESC""", [task])

    # --- paintings
    _PAINTING_COLS = """i.image_id, i.path, i.sha1, i.split, l.class_index AS given_index,
        cg.name AS given, p.predicted, cp.name AS predicted_label, p.p_given, p.top3, p.top3_probs, p.source"""
    _PAINTING_JOIN = """FROM images i
        JOIN labels l ON l.image_id = i.image_id AND l.task = $task
        LEFT JOIN predictions p ON p.image_id = i.image_id AND p.task = $task
        LEFT JOIN classes cg ON cg.task = $task AND cg.class_index = l.class_index
        LEFT JOIN classes cp ON cp.task = $task AND cp.class_index = p.predicted"""

    def points(self, task: str, method: str, detector: str, tags: pd.DataFrame | None = None) -> pd.DataFrame:
        """Every painting's 2-D position with given/predicted label, agreement, score and latest tag."""
        cur = self._con.cursor()
        try:
            cur.register("latest_tags", _tags_frame(tags))
            return cur.execute("""SELECT i.image_id, i.path, i.split, pr.x, pr.y,
                    coalesce(cg.name, '(none)') AS given, cp.name AS predicted,
                    CASE WHEN l.class_index IS NULL THEN 'no label'
                         WHEN l.class_index = p.predicted THEN 'agree' ELSE 'disagree' END AS agreement,
                    s.score, s.rank, coalesce(t.decision, 'untagged') AS tag
                FROM images i JOIN projections pr ON pr.image_id = i.image_id AND pr.method = $method
                JOIN labels l ON l.image_id = i.image_id AND l.task = $task
                LEFT JOIN predictions p ON p.image_id = i.image_id AND p.task = $task
                LEFT JOIN classes cg ON cg.task = $task AND cg.class_index = l.class_index
                LEFT JOIN classes cp ON cp.task = $task AND cp.class_index = p.predicted
                LEFT JOIN scores s ON s.image_id = i.image_id AND s.task = $task AND s.detector = $detector
                LEFT JOIN latest_tags t ON t.path = i.path AND t.task = $task
                ORDER BY i.image_id""", {"task": task, "method": method, "detector": detector}).df()
        finally:
            cur.close()

    def ranked(self, task: str, detector: str, limit: int = 50, offset: int = 0, min_score: float | None = None,
               exclude_paths: Iterable[str] = (), one_per_copy: bool = False,
               leave_out_flags: Iterable[str] = ()) -> pd.DataFrame:
        """Most suspicious first: painting, given label, top-3 predictions, score, rank, flag.

        one_per_copy: of a duplicate group's members that carry the same label for `task` (the same
        picture filed twice), only the best-ranked one; copies whose labels differ all stay, since
        at most one of those labels is right. leave_out_flags: paintings with any of these image
        quality flags (embeddings.quality) are left out (a store without quality keeps them all)."""
        flags = list(leave_out_flags) if self.has_quality() else []
        cur = self._con.cursor()
        try:
            cur.register("excluded", pd.DataFrame({"path": pd.Series(list(exclude_paths), dtype=object)}))
            cur.register("left_out_flags", pd.DataFrame({"flag": pd.Series(flags, dtype=object)}))
            flagged = ("SELECT q.image_id FROM image_quality q, left_out_flags f "
                       "WHERE list_contains(string_split(q.flags, ','), f.flag)") if flags else \
                "SELECT NULL::INTEGER AS image_id WHERE false"
            return cur.execute(f"""WITH members AS (
                    SELECT d.group_id, d.image_id, l.class_index, s.rank FROM duplicate_groups d
                    JOIN labels l ON l.image_id = d.image_id AND l.task = $task
                    JOIN scores s ON s.image_id = d.image_id AND s.task = $task AND s.detector = $detector),
                hidden_copies AS (
                    SELECT m.image_id FROM members m JOIN members o ON o.group_id = m.group_id
                       AND o.image_id <> m.image_id AND o.class_index IS NOT DISTINCT FROM m.class_index
                       AND (o.rank < m.rank OR (o.rank = m.rank AND o.image_id < m.image_id))
                    WHERE $one_per_copy)
                SELECT {self._PAINTING_COLS}, s.score, s.rank, s.flag
                {self._PAINTING_JOIN}
                JOIN scores s ON s.image_id = i.image_id AND s.task = $task AND s.detector = $detector
                WHERE ($min IS NULL OR s.score >= $min)
                  AND i.path NOT IN (SELECT path FROM excluded)
                  AND i.image_id NOT IN (SELECT image_id FROM hidden_copies)
                  AND i.image_id NOT IN ({flagged})
                ORDER BY s.rank LIMIT $limit OFFSET $offset""",
                {"task": task, "detector": detector, "limit": int(limit), "offset": int(offset),
                 "min": min_score, "one_per_copy": bool(one_per_copy)}).df()
        finally:
            cur.close()

    def has_quality(self) -> bool:
        """Whether this store measured image quality (stores before v7 did not)."""
        return self._has_column("image_quality", "flags")

    def quality_flags(self, image_id: int | None = None) -> pd.DataFrame:
        """image_id, path, flags (comma-separated embeddings.quality names) of the paintings with any
        flag (or of one painting); empty for a store from before image quality was measured."""
        if not self.has_quality():
            return pd.DataFrame({"image_id": pd.Series(dtype="int64"), "path": pd.Series(dtype=object),
                                 "flags": pd.Series(dtype=object)})
        return self._q("""SELECT q.image_id, i.path, q.flags FROM image_quality q JOIN images i USING (image_id)
            WHERE q.flags <> '' AND ($id IS NULL OR q.image_id = $id) ORDER BY i.path""",
                       {"id": None if image_id is None else int(image_id)})

    def same_label_copies(self, task: str, paths: Iterable[str]) -> pd.DataFrame:
        """For each of `paths`, the other members of its duplicate groups that carry the same label
        for `task` (what `ranked(one_per_copy=True)` folds into it): path, copy_path, copy_sha1,
        given, similarity."""
        return self._copies(task, paths, same_label=True)

    def other_label_copies(self, task: str, paths: Iterable[str]) -> pd.DataFrame:
        """For each of `paths`, the other members of its duplicate groups whose label for `task`
        differs (the catalogue files one picture under two labels): the same columns, `given` the
        copy's label."""
        return self._copies(task, paths, same_label=False)

    def _copies(self, task: str, paths: Iterable[str], same_label: bool) -> pd.DataFrame:
        wanted = pd.DataFrame({"path": pd.Series(list(paths), dtype=object)})
        return self._q("""WITH mine AS (SELECT w.path, d.image_id, d.group_id, l.class_index
                    FROM wanted w JOIN images i ON i.path = w.path
                    JOIN duplicate_groups d ON d.image_id = i.image_id
                    JOIN labels l ON l.image_id = i.image_id AND l.task = $task)
            SELECT DISTINCT mine.path, i.path AS copy_path, i.sha1 AS copy_sha1, c.name AS given, d.similarity
            FROM mine JOIN duplicate_groups d ON d.group_id = mine.group_id AND d.image_id <> mine.image_id
            JOIN labels l ON l.image_id = d.image_id AND l.task = $task
                 AND (l.class_index IS NOT DISTINCT FROM mine.class_index) = $same
                 AND ($same OR (l.class_index IS NOT NULL AND mine.class_index IS NOT NULL))
            JOIN images i ON i.image_id = d.image_id
            LEFT JOIN classes c ON c.task = $task AND c.class_index = l.class_index
            ORDER BY mine.path, copy_path""", {"task": task, "same": same_label}, frames={"wanted": wanted})

    def count_scored(self, task: str, detector: str, min_score: float | None = None) -> int:
        return int(self._q("""SELECT count(*) AS n FROM scores WHERE task = ? AND detector = ?
            AND (? IS NULL OR score >= ?)""", [task, detector, min_score, min_score])["n"].iloc[0])

    def paintings(self, task: str, image_ids: Iterable[int]) -> pd.DataFrame:
        """Rows for the given ids (in the order given), same columns as `ranked` minus scores."""
        ids = pd.DataFrame({"image_id": pd.Series(list(image_ids), dtype="int64")})
        ids["ord"] = np.arange(len(ids))
        cur = self._con.cursor()
        try:
            cur.register("wanted", ids)
            return cur.execute(f"""SELECT {self._PAINTING_COLS} {self._PAINTING_JOIN}
                JOIN wanted w ON w.image_id = i.image_id ORDER BY w.ord""", {"task": task}).df()
        finally:
            cur.close()

    def labels_of(self, image_id: int) -> pd.DataFrame:
        """Every task's given, trained-on (after applied review decisions) and predicted label for one painting."""
        training = self._training_index()
        return self._q(f"""SELECT l.task, cg.name AS given, ct.name AS trained_on, cp.name AS predicted, p.p_given
            FROM labels l LEFT JOIN predictions p ON p.image_id = l.image_id AND p.task = l.task
            LEFT JOIN classes cg ON cg.task = l.task AND cg.class_index = l.class_index
            LEFT JOIN classes ct ON ct.task = l.task AND ct.class_index = {training}
            LEFT JOIN classes cp ON cp.task = l.task AND cp.class_index = p.predicted
            WHERE l.image_id = ? ORDER BY l.task""", [int(image_id)])

    def evidence_of(self, image_id: int, task: str) -> pd.DataFrame:
        """What each kind of evidence says of one painting's label for `task`: kind, verdict
        (supports | mixed | against), p_given, best (class name), p_best, line; empty for a store
        written before the evidence table. Ordered model, neighbours, look, artist, period, title, copies, then
        `combined` (all kinds together; absent in stores written before v8)."""
        if not self._has_column("evidence", "line"):
            return pd.DataFrame(columns=["kind", "verdict", "p_given", "best", "p_best", "line"])
        return self._q("""SELECT e.kind, e.verdict, e.p_given, c.name AS best, e.p_best, e.line FROM evidence e
            LEFT JOIN classes c ON c.task = e.task AND c.class_index = e.best
            WHERE e.image_id = ? AND e.task = ? ORDER BY CASE e.kind WHEN 'model' THEN 0 WHEN 'neighbours' THEN 1
              WHEN 'look' THEN 2 WHEN 'artist' THEN 3 WHEN 'period' THEN 4 WHEN 'title' THEN 5 WHEN 'copies' THEN 6 ELSE 7 END""",
                       [int(image_id), task])

    def evidence_kinds(self, task: str) -> set[str]:
        """The `kind`s of the store's evidence rows for `task` (the period is evidence about style and
        artist only, a metadata kind needs that metadata); empty for a store written before the
        evidence table."""
        if not self._has_column("evidence", "kind"):
            return set()
        return set(self._q("SELECT DISTINCT kind FROM evidence WHERE task = ?", [task])["kind"])

    def labels_with_few_kinds(self, task: str, kinds: list[str], at_least: int = 2) -> int:
        """How many of `task`'s labelled paintings have evidence rows of fewer than `at_least` of
        `kinds` (a painting with no artist, date or title has only the look), not counting the
        labels no kind could judge (`labels_unjudged`); 0 for a store written before the evidence table."""
        if not self._has_column("evidence", "kind"):
            return 0
        marks = ", ".join("?" for _ in kinds)
        return int(self._q(f"""SELECT count(*) AS n FROM (
            SELECT e.image_id FROM evidence e JOIN labels l ON l.image_id = e.image_id AND l.task = e.task
            WHERE e.task = ? AND l.class_index IS NOT NULL GROUP BY e.image_id
            HAVING count(*) FILTER (WHERE e.kind IN ({marks})) < ?
               AND count(*) FILTER (WHERE e.verdict = ?) = 0)""",
                           [task, *kinds, int(at_least), UNJUDGED])["n"].iloc[0])

    def labels_unjudged(self, task: str) -> int:
        """How many of `task`'s labels the evidence could not judge (a class no other painting
        carries: the `combined` row's verdict UNJUDGED); 0 for a store without the table."""
        if not self._has_column("evidence", "kind"):
            return 0
        return int(self._q("SELECT count(*) AS n FROM evidence WHERE task = ? AND kind = 'combined' "
                           "AND verdict = ?", [task, UNJUDGED])["n"].iloc[0])

    def given_label(self, path: str, task: str) -> str | None:
        """The given label (class name) of the painting at `path` (relative to the data root), or None."""
        return self.given_and_predicted(path, task)[0]

    def given_and_predicted(self, path: str, task: str) -> tuple[str | None, str | None]:
        """(given label, top predicted class: cross-fitted where the run has it) of the painting at
        `path` (relative to the data root); None for what the store does not hold."""
        r = self._q("""SELECT cg.name AS given, cp.name AS predicted FROM images i
            LEFT JOIN labels l ON l.image_id = i.image_id AND l.task = ?
            LEFT JOIN classes cg ON cg.task = l.task AND cg.class_index = l.class_index
            LEFT JOIN predictions p ON p.image_id = i.image_id AND p.task = ?
            LEFT JOIN classes cp ON cp.task = p.task AND cp.class_index = p.predicted
            WHERE i.path = ?""", [task, task, path])
        if r.empty:
            return None, None
        g, p = r["given"].iloc[0], r["predicted"].iloc[0]
        return (None if pd.isna(g) else str(g)), (None if pd.isna(p) else str(p))

    def search(self, text: str, limit: int = 50) -> pd.DataFrame:
        """Paintings whose path (artist slug, title, style folder) contains `text`, case-insensitive."""
        return self._q("""SELECT image_id, path, split FROM images WHERE path ILIKE '%' || ? || '%'
            ORDER BY path LIMIT ?""", [text, int(limit)])

    def image_by_id(self, image_id: int) -> dict | None:
        r = self._q("SELECT * FROM images WHERE image_id = ?", [int(image_id)])
        return None if r.empty else r.iloc[0].to_dict()

    def catalogue(self) -> pd.DataFrame:
        """Every painting with its metadata and image quality flags: image_id, path, split,
        artist_name, title, year_lo, year_hi, flags ('' where none or not measured)."""
        meta = self._has_column("images", "artist_name")
        cols = "i.artist_name, i.title, i.year_lo, i.year_hi" if meta else \
            "'' AS artist_name, '' AS title, NULL::DOUBLE AS year_lo, NULL::DOUBLE AS year_hi"
        measured = self.has_quality()
        quality = "coalesce(q.flags, '') AS flags" if measured else "'' AS flags"
        join = "LEFT JOIN image_quality q USING (image_id)" if measured else ""
        return self._q(f"SELECT i.image_id, i.path, i.split, {cols}, {quality} FROM images i {join} ORDER BY i.image_id")

    def images(self) -> pd.DataFrame:
        return self._q("SELECT image_id, path, sha1, split FROM images ORDER BY image_id")

    def vectors(self, image_ids: Iterable[int]) -> np.ndarray:
        """(n, D) float32 embeddings in the order given."""
        ids = list(int(i) for i in image_ids)
        r = self._q("""SELECT e.vector FROM embeddings e JOIN (SELECT unnest(?::INTEGER[]) AS image_id,
            generate_subscripts(?::INTEGER[], 1) AS ord) w USING (image_id) ORDER BY w.ord""", [ids, ids])
        return np.array(r["vector"].tolist(), dtype=np.float32).reshape(len(r), -1)

    def duplicate_groups(self, conflicting_only: bool = True) -> pd.DataFrame:
        """Members of near-duplicate groups, with every task's given label."""
        return self._q("""SELECT d.group_id, d.similarity, d.conflicting_tasks, i.image_id, i.path, i.split,
                (SELECT string_agg(l.task || ': ' || coalesce(c.name, '-'), ', ' ORDER BY l.task)
                   FROM labels l LEFT JOIN classes c ON c.task = l.task AND c.class_index = l.class_index
                  WHERE l.image_id = i.image_id) AS labels
            FROM duplicate_groups d JOIN images i USING (image_id)
            WHERE NOT ? OR d.conflicting_tasks <> ''
            ORDER BY d.group_id, i.path""", [conflicting_only])

    def duplicates_across_splits(self) -> pd.DataFrame:
        """Members of duplicate groups whose paintings sit in more than one split: group_id, path,
        split, similarity, exact (every member the same file, by sha1)."""
        return self._q("""WITH g AS (SELECT d.group_id, d.similarity, i.path, i.split, i.sha1
                                   FROM duplicate_groups d JOIN images i USING (image_id)),
                crossing AS (SELECT group_id, count(DISTINCT sha1) = 1 AS exact FROM g
                             GROUP BY group_id HAVING count(DISTINCT split) > 1)
            SELECT g.group_id, g.path, g.split, g.similarity, c.exact
            FROM g JOIN crossing c USING (group_id) ORDER BY g.group_id, g.split, g.path""")

    def export_labels(self, task: str, tags: pd.DataFrame | None = None) -> pd.DataFrame:
        """Columns path, split (ArtGAN train/val: test rows return to train), class_index: the given
        label, replaced by the suggested one where the latest decision is `mislabel`."""
        cur = self._con.cursor()
        try:
            cur.register("latest_tags", _tags_frame(tags))
            return cur.execute("""SELECT i.path, CASE WHEN i.split = 'val' THEN 'val' ELSE 'train' END AS split,
                    CASE WHEN t.decision = 'mislabel' AND cs.class_index IS NOT NULL THEN cs.class_index
                         ELSE l.class_index END AS class_index
                FROM images i JOIN labels l ON l.image_id = i.image_id AND l.task = $task
                LEFT JOIN latest_tags t ON t.path = i.path AND t.task = $task
                LEFT JOIN classes cs ON cs.task = $task AND cs.name = t.suggested_label
                WHERE (l.class_index IS NOT NULL OR (t.decision = 'mislabel' AND cs.class_index IS NOT NULL))
                ORDER BY i.path""", {"task": task}).df()
        finally:
            cur.close()

    def detector_scores(self, task: str) -> pd.DataFrame:
        """Every painting's score per detector for `task` (long form): image_id, path, split, detector, score, rank."""
        return self._q("""SELECT s.image_id, i.path, i.split, s.detector, s.score, s.rank FROM scores s JOIN images i USING (image_id)
            WHERE s.task = ? ORDER BY s.detector, i.image_id""", [task])

    def label_probabilities(self, task: str) -> tuple[pd.DataFrame, np.ndarray]:
        """(frame path, split, label, source; probs (N, C)) for the paintings labelled for `task`."""
        r = self._q("""SELECT i.path, i.split, l.class_index AS label, p.source, p.probs
            FROM labels l JOIN images i USING (image_id)
            JOIN predictions p ON p.image_id = l.image_id AND p.task = l.task
            WHERE l.task = ? AND l.class_index IS NOT NULL ORDER BY i.image_id""", [task])
        probs = np.array(r.pop("probs").tolist(), dtype=np.float64).reshape(len(r), -1)
        return r, probs

    def scored_labels(self, task: str) -> tuple[pd.DataFrame, np.ndarray, dict[str, np.ndarray]]:
        """`label_probabilities` plus {detector: (N,) score} aligned with its rows (NaN where the
        detector stored no score for the painting)."""
        frame, probs = self.label_probabilities(task)
        pos = pd.Series(np.arange(len(frame)), index=frame["path"])
        scores = {}
        for det, g in self.detector_scores(task).groupby("detector"):
            s = np.full(len(frame), np.nan)
            s[pos[g["path"]].to_numpy()] = g["score"].to_numpy()
            scores[det] = s
        return frame, probs, scores

    def wrong_labels(self, task: str) -> dict:
        """How many of the task's labels look wrong: {estimate, low, high, labelled, per_class: DataFrame
        (label, labelled, estimated_wrong), most first}; empty dict for a store without estimates."""
        if self._q("""SELECT count(*) AS n FROM information_schema.tables
                      WHERE table_name = 'wrong_label_estimates'""")["n"].iloc[0] == 0:
            return {}   # a store written before the estimates existed
        r = self._q("""SELECT w.class_index, c.name AS label, w.labelled, w.estimated_wrong, w.low, w.high
            FROM wrong_label_estimates w LEFT JOIN classes c ON c.task = w.task AND c.class_index = w.class_index
            WHERE w.task = ? ORDER BY w.estimated_wrong DESC""", [task])
        total = r[r["class_index"].isna()]
        if total.empty:
            return {}
        t = total.iloc[0]
        per_class = r[r["class_index"].notna()][["label", "labelled", "estimated_wrong"]].reset_index(drop=True)
        return {"estimate": float(t["estimated_wrong"]), "low": float(t["low"]), "high": float(t["high"]),
                "labelled": int(t["labelled"]), "per_class": per_class}

    def review_depths(self, task: str, detector: str) -> pd.DataFrame:
        """Labelled paintings of `task`: image_id, path, label (given name), trained_on (the label the
        run trained on; NULL where a review dropped it), rank in `detector`'s ranking (0 = unranked)
        and wrong_weight (share of the estimated wrong labels; NULL in older stores)."""
        weight = "p.wrong_weight" if self._has_column("predictions", "wrong_weight") else "NULL::DOUBLE"
        training = self._training_index()
        return self._q(f"""SELECT i.image_id, i.path, c.name AS label, ct.name AS trained_on,
                coalesce(s.rank, 0) AS rank, {weight} AS wrong_weight
            FROM labels l JOIN images i USING (image_id)
            JOIN classes c ON c.task = l.task AND c.class_index = l.class_index
            LEFT JOIN classes ct ON ct.task = l.task AND ct.class_index = {training}
            LEFT JOIN predictions p ON p.image_id = l.image_id AND p.task = l.task
            LEFT JOIN scores s ON s.image_id = l.image_id AND s.task = l.task AND s.detector = ?
            WHERE l.task = ? ORDER BY i.image_id""", [detector, task])

    def benchmark_auroc(self, task: str) -> dict[str, float]:
        """detector -> AUROC from the noise benchmark stored for this run (empty if none)."""
        bench = self.run().get("benchmark") or {}
        return {d: v["auroc"] for d, v in bench.get("uniform", {}).get(task, {}).items()}


TAG_COLUMNS = ["tag_id", "path", "sha1", "task", "decision", "given_label", "suggested_label", "note", "reviewer",
               "created_at", "run_id"]


def _tags_frame(tags: pd.DataFrame | None) -> pd.DataFrame:
    """`tags`, or an empty frame with the tag log's columns (so joins and filters work before any tag)."""
    if tags is None or tags.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in TAG_COLUMNS})
    return tags


def read_info(path: str | Path) -> dict[str, str]:
    """store_info of a store file without keeping it open (used to compare runs and sizes)."""
    s = Store(path)
    try:
        return s.info()
    finally:
        s.close()


# ------------------------------------------------------------------ tags
def read_parquet_shards(shard_dir: str | Path, columns: list[str], order_by: str, chunk_rows: int = 4096):
    """Rows of every `*.parquet` under shard_dir (what a Ray pipeline wrote), in `order_by` order,
    as {column: numpy array} chunks of up to chunk_rows: a 100k-painting run never holds all maps.
    `columns` and `order_by` are the caller's constants, never user input."""
    files = sorted(str(p) for p in Path(shard_dir).rglob("*.parquet"))
    if not files:
        raise StoreError(f"{shard_dir}: the pipeline wrote no Parquet shards")
    con = duckdb.connect()
    try:
        reader = con.sql(f"SELECT {', '.join(columns)} FROM read_parquet($files) ORDER BY {order_by}",
                         params={"files": files}).to_arrow_reader(chunk_rows)
        for batch in reader:
            yield {c: batch.column(c).to_numpy(zero_copy_only=False) for c in columns}
    finally:
        con.close()
