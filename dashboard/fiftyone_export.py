"""A FiftyOne dataset of the store: one sample per painting, for the FiftyOne App.

`fiftyone_samples` builds FiftyOne's serialized dataset (`fo.types.LegacyFiftyOneDataset`, which
`fo.Dataset.from_dir(dir, fo.types.FiftyOneDataset)` also reads): `samples.json` with one dict
per sample, labels as `{"_cls": "Classification", ...}`. Writing the JSON needs no FiftyOne (and
no MongoDB) here; loading it is FiftyOne's own importer (bench/fiftyone_check.py tests that).

Fields per sample: `filepath`, `tags` ("style:mislabel", one per review decision in force),
`artlens_id`, `split`, `artist`, `title`, `year`, `quality_flags`, `embedding`; per task
`<task>_given` and `<task>_predicted` (Classification, with the model's confidence),
`<task>_p_given`, `<task>_suggested` (a reviewer's label, where one was given) and
`<task>_<detector>` for every detector score (higher = more suspicious).
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd


def field_name(*parts: str) -> str:
    """A FiftyOne field name: letters, digits and underscores ('cleanlab:margin' -> 'cleanlab_margin')."""
    return re.sub(r"[^0-9a-zA-Z_]+", "_", "_".join(parts)).strip("_")


def _number(x) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def fiftyone_samples(catalogue: pd.DataFrame, root: Path, tasks: dict[str, tuple[pd.DataFrame, pd.DataFrame]],
                     vectors: np.ndarray, tags: pd.DataFrame) -> dict:
    """{"samples": [...]} for FiftyOne.

    catalogue: one row per painting (image_id, path, split, artist_name, title, year_lo, year_hi,
    flags), in the order of vectors (N, D). tasks: {task: (labels indexed by path: given, predicted,
    confidence, p_given; scores indexed by path: one float column per detector)}. tags: the latest
    decisions (path, task, decision, suggested_label)."""
    decided = {}
    for t in tags.itertuples(index=False):
        decided.setdefault(t.path, []).append(t)
    samples = []
    for i, r in enumerate(catalogue.itertuples(index=False)):
        lo, hi = _number(r.year_lo), _number(r.year_hi)
        s = {"filepath": str((Path(root) / r.path).resolve()), "artlens_id": int(r.image_id), "split": r.split,
             "artist": r.artist_name or None, "title": r.title or None,
             "year": None if lo is None else (lo + (hi if hi is not None else lo)) / 2,
             "quality_flags": [f for f in (r.flags or "").split(",") if f],
             "embedding": [round(float(v), 6) for v in vectors[i]],
             "tags": [f"{d.task}:{d.decision}" for d in decided.get(r.path, [])]}
        for d in decided.get(r.path, []):
            if isinstance(d.suggested_label, str) and d.suggested_label:    # NaN / None: no label named
                s[field_name(d.task, "suggested")] = {"_cls": "Classification", "label": d.suggested_label}
        for task, (labels, scores) in tasks.items():
            if r.path not in labels.index:
                continue
            row = labels.loc[r.path]
            s[field_name(task, "given")] = {"_cls": "Classification", "label": row["given"]}
            s[field_name(task, "predicted")] = {"_cls": "Classification", "label": row["predicted"],
                                                "confidence": float(row["confidence"])}
            s[field_name(task, "p_given")] = float(row["p_given"])
            if r.path in scores.index:
                for det, v in scores.loc[r.path].items():
                    s[field_name(task, det)] = _number(v)
        samples.append(s)
    return {"samples": samples}


def write_fiftyone(out: Path, name: str, samples: dict) -> Path:
    """out/samples.json and out/metadata.json (name, media type); returns out."""
    import json
    out.mkdir(parents=True, exist_ok=True)
    (out / "metadata.json").write_text(json.dumps({"name": name, "media_type": "image"}))
    (out / "samples.json").write_text(json.dumps(samples))
    return out
