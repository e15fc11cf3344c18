"""Review decisions -> training labels (`make train ARGS="--apply-tags"`), and -> a corrected
copy of the user's manifest (`artlens export`).

The reviewer's latest decision per (painting, task) is applied to the labels the model trains
on; the data folder is never written. `mislabel` with a suggested label replaces the given label,
`mislabel` without one drops it (masked: the painting stays for its other tasks), `correct` and
`unsure` keep it. Pure functions on the loaded frame, so they are tested without torch.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from trainer.cli import UserError
from trainer.data import csv_format, read_manifest_csv, stored_paths

log = logging.getLogger("trainer.relabel")

CHANGE_COLUMNS = ["path", "task", "given", "training", "decision", "tag_id"]
MANIFEST_COUNTS = ("replaced", "no_suggestion", "edited_since", "not_in_manifest")


def _text(cell) -> str:
    """A tag log's label cell as text: stripped, '' where it is empty (None or NaN)."""
    return cell.strip() if isinstance(cell, str) else ""


def apply_decisions(frame: pd.DataFrame, classes: dict[str, list[str]], latest: pd.DataFrame
                    ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """Apply the tag log's latest decisions to a PaintingSet frame.

    frame: columns path, one int column per task (-1 = no label); classes: task -> names;
    latest: the tag log's decision in force per (path, task) (TagLog.latest()).
    Returns (new frame, changes (one row per label changed or dropped: CHANGE_COLUMNS, names with
    '' for no label), counts {decisions, replaced, dropped, kept, not_in_data}).
    Raises UserError for a suggested label that is not a class of its task.
    """
    pos = pd.Series(np.arange(len(frame)), index=frame["path"])
    counts = {"decisions": 0, "replaced": 0, "dropped": 0, "kept": 0, "not_in_data": 0}
    changes = []
    for r in latest.itertuples(index=False):
        if r.task not in classes or r.path not in pos.index:
            counts["not_in_data"] += 1
            continue
        counts["decisions"] += 1
        names = classes[r.task]
        i = int(pos[r.path])
        given = int(frame[r.task].iat[i])
        if r.decision != "mislabel":
            counts["kept"] += 1
            continue
        suggested = _text(r.suggested_label)
        if suggested and suggested not in names:
            raise UserError(f"tag {r.tag_id} ({r.path}, {r.task}): suggested label {suggested!r} is not a {r.task} "
                            f"class of this data set; re-tag it in the dashboard, or train without --apply-tags")
        new = names.index(suggested) if suggested else -1
        if new == given:
            counts["kept"] += 1
            continue
        counts["replaced" if new >= 0 else "dropped"] += 1
        changes.append({"path": r.path, "task": r.task, "given": names[given] if given >= 0 else "",
                        "training": names[new] if new >= 0 else "", "decision": r.decision, "tag_id": int(r.tag_id)})
    changes = pd.DataFrame(changes, columns=CHANGE_COLUMNS)
    # the same function `make embed` rebuilds the labels with, so both read one mechanism
    return frame.assign(**training_labels(frame, changes, classes)), changes, counts


def read_decisions(tag_log: str | Path) -> pd.DataFrame:
    """The latest decision per (path, task) from a tag log (file or postgresql:// URL); UserError if
    there is none."""
    from db.store import StoreError
    from db.store import is_database_url
    from db.tags import open_tag_log
    if not is_database_url(tag_log) and not Path(tag_log).is_file():
        raise UserError(f"--apply-tags: no tag log at {tag_log} (review in the dashboard first, or pass --tag-log "
                        "PATH or a postgresql:// URL)")
    try:
        return open_tag_log(tag_log).latest()
    except StoreError as e:
        raise UserError(f"--apply-tags: {e}") from None


def training_labels(frame: pd.DataFrame, changes: pd.DataFrame, classes: dict[str, list[str]]) -> dict[str, np.ndarray]:
    """{task: (N,) int} labels a run trained on: `frame`'s given labels with the run's recorded
    changes (runs/<id>/label_changes.csv) applied; -1 = no label."""
    pos = pd.Series(np.arange(len(frame)), index=frame["path"])
    out = {t: frame[t].to_numpy(np.int64).copy() for t in classes if t in frame}
    for r in changes.itertuples(index=False):
        if r.task in out and r.path in pos.index:
            training = r.training if isinstance(r.training, str) else ""
            out[r.task][int(pos[r.path])] = classes[r.task].index(training) if training else -1
    return out


def corrected_manifest(manifest: Path, latest: pd.DataFrame) -> tuple[bytes, dict[str, int]]:
    """The manifest CSV with the review written into its own label columns, as the file's bytes.

    Every row, column, column name, separator and the text encoding of `manifest` are kept (UTF-8
    with a byte-order mark where a suggested label has a character its encoding lacks, as Windows-1252
    lacks most scripts but Latin); a label cell changes only
    where the latest decision for its painting and task (latest: TagLog.latest()) is `mislabel`
    with a suggested label, and only while the cell still holds the label the reviewer judged (where
    the decision names it). A `mislabel` without a suggestion keeps its label (a catalogue keeps
    what it has until someone says what is right; tags.csv lists it), and a cell edited since the
    decision is the newer word. Returns (the bytes, counts: MANIFEST_COUNTS -> number of decisions)."""
    sep, newline, encoding = csv_format(manifest)
    df = read_manifest_csv(manifest, sep, encoding)
    column = {c.strip().lower(): c for c in df.columns}
    if "path" not in column:
        raise UserError(f"{manifest}: no path column; found {', '.join(df.columns)}")
    _, stored = stored_paths(manifest.parent, df[column["path"]].tolist())
    rows: dict[str, list[int]] = {}
    for i, rel in enumerate(stored):
        if rel is not None:
            rows.setdefault(rel, []).append(i)
    counts = dict.fromkeys(MANIFEST_COUNTS, 0)
    for r in latest.itertuples(index=False):
        if r.decision != "mislabel":
            continue
        if r.path not in rows or r.task not in column:
            counts["not_in_manifest"] += 1
            continue
        suggested, given = _text(r.suggested_label), _text(r.given_label)
        if not suggested:
            counts["no_suggestion"] += 1
            continue
        cells = df[column[r.task]]
        # a decision recorded without the label it judged (an older tag) cannot tell an edit apart
        now = [i for i in rows[r.path] if not given or cells.iat[i].strip() == given]
        if not now:
            counts["edited_since"] += 1
            continue
        df.loc[df.index[now], column[r.task]] = suggested
        counts["replaced"] += 1
    text = df.to_csv(index=False, sep=sep, lineterminator=newline)
    try:
        return text.encode(encoding), counts
    except UnicodeEncodeError:
        log.warning("%s: a corrected label has characters %s cannot hold: the corrected manifest is UTF-8",
                    manifest, encoding)
        return text.encode("utf-8-sig"), counts
