"""`artlens export --fiftyone`: every painting as a FiftyOne sample, loaded back with FiftyOne's own
importer where the extra is installed (`make fiftyone`)."""
from __future__ import annotations

import json
import subprocess

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, run_cli
from dashboard.fiftyone_export import field_name, fiftyone_samples
from db.tags import open_tag_log

FO_PYTHON = ROOT / ".venv-fiftyone" / "bin" / "python"


def test_samples_carry_labels_predictions_scores_metadata_and_tags(tmp_path):
    cat = pd.DataFrame({"image_id": [0, 1], "path": ["a/x.jpg", "a/y.jpg"], "split": ["train", "test"],
                        "artist_name": ["jan-steen", ""], "title": ["the feast", ""], "year_lo": [1660.0, np.nan],
                        "year_hi": [1670.0, np.nan], "flags": ["dark,greyscale", ""]})
    labels = pd.DataFrame({"given": ["Baroque"], "predicted": ["Rococo"], "confidence": [0.8], "p_given": [0.1]},
                          index=["a/x.jpg"])
    scores = pd.DataFrame({"evidence": [3.5], "cleanlab:margin": [np.nan]}, index=["a/x.jpg"])
    tags = pd.DataFrame({"path": ["a/x.jpg", "a/x.jpg"], "task": ["style", "genre"], "decision": ["mislabel", "correct"],
                         "suggested_label": ["Rococo", np.nan]})
    s = fiftyone_samples(cat, tmp_path, {"style": (labels, scores)}, np.array([[0.5, 1.0], [0.0, 2.0]]), tags)["samples"]
    x, y = s
    assert x["filepath"] == str((tmp_path / "a/x.jpg").resolve()) and x["year"] == 1665.0 and y["year"] is None
    assert x["style_given"] == {"_cls": "Classification", "label": "Baroque"}
    assert x["style_predicted"] == {"_cls": "Classification", "label": "Rococo", "confidence": 0.8}
    assert x["style_evidence"] == 3.5 and x["style_cleanlab_margin"] is None and x["style_p_given"] == 0.1
    assert x["tags"] == ["style:mislabel", "genre:correct"] and x["style_suggested"]["label"] == "Rococo"
    assert "genre_suggested" not in x           # a decision without a label names none
    assert x["quality_flags"] == ["dark", "greyscale"] and y["quality_flags"] == [] and y["artist"] is None
    assert "style_given" not in y and y["embedding"] == [0.0, 2.0] and y["tags"] == []
    assert field_name("style", "cleanlab:normalized_margin") == "style_cleanlab_normalized_margin"


def test_export_loads_in_fiftyone_with_every_field(store, tmp_path):
    tags = tmp_path / "tags.duckdb"
    log = open_tag_log(tags)
    import duckdb
    con = duckdb.connect(str(store["store"]), read_only=True)
    paths = [r[0] for r in con.execute("SELECT path FROM images ORDER BY image_id LIMIT 2").fetchall()]
    detectors = [r[0] for r in con.execute("SELECT DISTINCT detector FROM scores WHERE task = 'style'").fetchall()]
    dim = con.execute("SELECT len(vector) FROM embeddings LIMIT 1").fetchone()[0]
    con.close()
    log.add(paths[0], "style", "mislabel", "ana", suggested_label="Cubism")
    log.add(paths[1], "genre", "correct", "ana")
    out = tmp_path / "out"
    r = run_cli("export", "--store", str(store["store"]), "--tags", str(tags), "--fiftyone", "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"wrote {store['n']} FiftyOne samples" in r.stdout and "fo.Dataset.from_dir" in r.stdout
    samples = json.loads((out / "fiftyone" / "samples.json").read_text())["samples"]
    assert len(samples) == store["n"]
    first = next(s for s in samples if s["filepath"].endswith(paths[0]))
    assert first["tags"] == ["style:mislabel"] and first["style_suggested"]["label"] == "Cubism"
    assert all(field_name("style", d) in first for d in detectors) and len(first["embedding"]) == dim
    if not FO_PYTHON.exists():
        pytest.skip("FiftyOne is not installed here (make fiftyone): the samples were checked as JSON only")
    r = subprocess.run([str(FO_PYTHON), str(ROOT / "bench" / "fiftyone_check.py"), str(out / "fiftyone")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["samples"] == store["n"] and summary["errors"] == [] and summary["embedding_dims"] == [dim]
    fields = summary["fields"]
    for task in ("style", "genre", "artist"):
        assert fields[f"{task}_given"] == fields[f"{task}_predicted"] == "Classification"
        assert fields[f"{task}_p_given"] == "float"
    assert all(fields[field_name("style", d)] == "float" for d in detectors)
    assert fields["quality_flags"] == "list" and fields["split"] == "str"
    assert summary["tags"] == {"style:mislabel": 1, "genre:correct": 1}
