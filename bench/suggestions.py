"""Is the label the Review card suggests the right one? Measured through the dashboard's own calls.

A reviewer who tags a painting `mislabel` is offered a label (`Artlens.suggested_label`: the class
all kinds of evidence together favour, else the model's top class). Where the queue is right that a
label is wrong, the suggestion is the next thing a reviewer relies on: `make bench-noise` checks it
against the clean label of each flipped painting in the queue, `make bench-audit` against the
panel's better label. Beside it, the model's own first choice, the suggestion before v15.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from dashboard.service import Artlens
from db.store import Paths


def queue_suggestions(store: str | Path, task: str, depth: int) -> pd.DataFrame:
    """The first `depth` paintings of `task`'s Review queue on a store nobody has reviewed yet (a
    fresh tag log), as the Review page shows them: path, given, suggested (`Artlens.suggested_label`),
    model_top (the model's first choice), rank."""
    with tempfile.TemporaryDirectory() as tmp:
        app = Artlens(Paths.from_store(store, tags=Path(tmp) / "none.tags.duckdb"))
        try:
            queue = app.review_queue(task, app.review_default, depth)
            rows = []
            for r in queue.to_dict("records"):
                top = app.top3_text(task, r)
                rows.append({"path": r["path"], "given": r["given"], "rank": int(r["rank"]),
                             "suggested": app.suggested_label(int(r["image_id"]), task, r["given"], top),
                             "model_top": top[0][0] if top else None})
        finally:
            app.close()
    return pd.DataFrame(rows, columns=["path", "given", "suggested", "model_top", "rank"])


def suggestion_hits(suggested: pd.DataFrame, truth: dict[str, str]) -> dict:
    """{n, suggested_right, model_top_right}: over the queue's paintings that have a true label other
    than the given one (truth {path: label}), how often the suggestion, and the model's first
    choice, name it."""
    rows = suggested[suggested["path"].isin(list(truth))]
    want = rows["path"].map(truth)
    return {"n": int(len(rows)), "suggested_right": int((rows["suggested"] == want).sum()),
            "model_top_right": int((rows["model_top"] == want).sum())}


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion hits / n ((nan, nan) for n = 0)."""
    if n == 0:
        return float("nan"), float("nan")
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, float(centre - half)), min(1.0, float(centre + half))
