"""Closing the review loop: decisions become training labels (`--apply-tags`), never data edits, and a
corrected copy of the user's manifest (`artlens export`)."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli


def _latest(rows):
    return pd.DataFrame([{"tag_id": i + 1, **r} for i, r in enumerate(rows)])


def test_decisions_replace_drop_or_keep_labels():
    from trainer.cli import UserError
    from trainer.relabel import apply_decisions, training_labels
    classes = {"style": ["Baroque", "Cubism", "Realism"], "genre": ["portrait", "landscape"]}
    frame = pd.DataFrame({"path": ["a.jpg", "b.jpg", "c.jpg", "d.jpg"], "style": [0, 1, 2, 0],
                          "genre": [0, 1, -1, 1]})
    latest = _latest([
        {"path": "a.jpg", "task": "style", "decision": "mislabel", "suggested_label": "Realism"},
        {"path": "b.jpg", "task": "genre", "decision": "mislabel", "suggested_label": None},
        {"path": "c.jpg", "task": "style", "decision": "correct", "suggested_label": None},
        {"path": "d.jpg", "task": "style", "decision": "unsure", "suggested_label": "Cubism"},
        {"path": "gone.jpg", "task": "style", "decision": "mislabel", "suggested_label": "Cubism"},
    ])
    out, changes, counts = apply_decisions(frame, classes, latest)
    assert out["style"].tolist() == [2, 1, 2, 0]          # a replaced; c, d kept
    assert out["genre"].tolist() == [0, -1, -1, 1]        # b dropped (masked), painting kept
    assert frame["style"].tolist() == [0, 1, 2, 0]        # the input frame is not modified
    assert counts == {"decisions": 4, "replaced": 1, "dropped": 1, "kept": 2, "not_in_data": 1}
    assert changes[["path", "task", "given", "training"]].values.tolist() == [
        ["a.jpg", "style", "Baroque", "Realism"], ["b.jpg", "genre", "landscape", ""]]
    # what `make embed` rebuilds from label_changes.csv is what training used
    rebuilt = training_labels(frame, changes, classes)
    assert rebuilt["style"].tolist() == out["style"].tolist() and rebuilt["genre"].tolist() == out["genre"].tolist()
    bad = _latest([{"path": "a.jpg", "task": "style", "decision": "mislabel", "suggested_label": "Fauvism"}])
    with pytest.raises(UserError, match="tag 1 .*'Fauvism' is not a style class"):
        apply_decisions(frame, classes, bad)



def test_corrected_manifest_keeps_every_row_and_column_and_changes_only_judged_labels(tmp_path):
    """A museum's manifest (its own column names and order, extra columns, ';' and CRLF, an image
    listed twice, one row whose image is missing) comes back with the same rows, columns and
    separator; a label changes only for a `mislabel` with a suggestion whose cell still holds the
    label the reviewer saw."""
    from trainer.relabel import corrected_manifest
    (tmp_path / "img").mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"):
        (tmp_path / "img" / name).write_bytes(b"x")
    rows = [["Inventory", "Path", "Style", "Genre", "Title", "Notes"],
            ["1", "img/a.jpg", "Baroque", "portrait", "Lady", "bought 1901, restored"],
            ["2", "img/b.jpg", "Cubism", "landscape", "Hill", ""],
            ["3", "img\\c.jpg", "Realism", "portrait", "Man", ""],        # Windows separator
            ["4", "img/d.jpg", "Rococo", "portrait", "Fan", ""],
            ["5", "img/a.jpg", "Baroque", "portrait", "Lady (copy row)", ""],
            ["6", "img/missing.jpg", "Baroque", "portrait", "Lost", ""],
            ["7", "img/e.jpg", "Cubism", "portrait", "Pipe", ""]]
    manifest = tmp_path / "catalogue.csv"
    manifest.write_bytes("".join(";".join(r) + "\r\n" for r in rows).encode())
    latest = _latest([
        {"path": "img/a.jpg", "task": "style", "decision": "mislabel", "given_label": "Baroque",
         "suggested_label": "Rococo"},
        {"path": "img/b.jpg", "task": "style", "decision": "mislabel", "given_label": "Cubism", "suggested_label": None},
        {"path": "img/c.jpg", "task": "genre", "decision": "mislabel", "given_label": "portrait",
         "suggested_label": " genre_painting "},
        {"path": "img/d.jpg", "task": "style", "decision": "mislabel", "given_label": "Baroque",   # edited since
         "suggested_label": "Realism"},
        {"path": "img/e.jpg", "task": "style", "decision": "correct", "given_label": "Cubism", "suggested_label": None},
        {"path": "img/e.jpg", "task": "artist", "decision": "mislabel", "given_label": "x", "suggested_label": "y"},
        {"path": "img/gone.jpg", "task": "style", "decision": "mislabel", "given_label": "Cubism",
         "suggested_label": "Realism"},
        {"path": "img/e.jpg", "task": "genre", "decision": "mislabel", "given_label": None,    # an older tag
         "suggested_label": "still_life"},
    ])
    data, counts = corrected_manifest(manifest, latest)
    text = data.decode("utf-8")
    assert counts == {"replaced": 3, "no_suggestion": 1, "edited_since": 1, "not_in_manifest": 2}
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
    out = [line.split(";") for line in text.split("\r\n")[:-1]]
    expected = [r[:] for r in rows]
    expected[1][2] = expected[5][2] = "Rococo"       # both rows of a.jpg
    expected[3][3] = "genre_painting"
    expected[7][3] = "still_life"
    assert out == expected
    assert manifest.read_bytes() == "".join(";".join(r) + "\r\n" for r in rows).encode()   # never written

def _folder_digest(root) -> str:
    h = hashlib.sha1()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_apply_tags_trains_on_decisions_and_leaves_data_untouched(trained, tmp_path):
    from db.store import Paths, Store
    from db.tags import open_tag_log
    from dashboard.service import Artlens
    from trainer.data import load_paintings
    ps = load_paintings(trained["manifest"], test_fraction=0.2)
    names = ps.classes["style"]
    rows = ps.frame[(ps.frame["style"] >= 0) & (ps.frame["genre"] >= 0)].iloc[[3, 10, 20]]
    relabel, drop, keep = rows["path"].tolist()
    old_style = int(rows.iloc[0]["style"])
    new_style = names[(old_style + 1) % len(names)]
    tags = tmp_path / "review.tags.duckdb"
    log = open_tag_log(tags)
    log.add(relabel, "style", "mislabel", "ana", suggested_label=new_style)
    log.add(drop, "genre", "mislabel", "ana")
    log.add(keep, "style", "correct", "ana")
    before = _folder_digest(trained["root"])

    work = trained["work"]
    r = run_cli("train", "--data", str(trained["manifest"]), "--out-dir", str(tmp_path / "runs"), "--run-id", "tagged",
                "--cache-dir", str(work / "cache"), "--epochs", "2", "--folds", "2", "--crossfit-epochs", "2",
                "--min-steps", "0", "--test-fraction", "0.2", "--apply-tags", "--tag-log", str(tags))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "1 labels replaced, 1 dropped, 1 kept" in r.stderr
    run_dir = tmp_path / "runs" / "tagged"
    meta = json.loads((run_dir / "metrics.json").read_text())
    assert {k: meta["applied_tags"][k] for k in ("replaced", "dropped", "kept")} == {"replaced": 1, "dropped": 1, "kept": 1}
    changes = pd.read_csv(run_dir / "label_changes.csv", keep_default_na=False)
    assert set(zip(changes["path"], changes["task"], changes["training"])) == {(relabel, "style", new_style),
                                                                              (drop, "genre", "")}
    assert _folder_digest(trained["root"]) == before    # nothing in the data folder was written

    store_path = tmp_path / "store" / "artlens.duckdb"
    r = run_cli("embed", "--run", str(run_dir), "--store", str(store_path), "--tags", str(tags),
                "--cache-dir", str(work / "cache"), "--projection", "pca")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "data set differs" not in r.stderr             # the data as given is what the run recorded
    s = Store(store_path)
    try:
        lab = s._q("""SELECT i.path, l.task, cg.name AS given, ct.name AS trained_on FROM labels l
            JOIN images i USING (image_id) LEFT JOIN classes cg ON cg.task = l.task AND cg.class_index = l.class_index
            LEFT JOIN classes ct ON ct.task = l.task AND ct.class_index = l.training_index""")
    finally:
        s.close()
    lab = lab.set_index(["path", "task"])
    assert lab.loc[(relabel, "style"), "given"] == names[old_style]
    assert lab.loc[(relabel, "style"), "trained_on"] == new_style
    assert lab.loc[(drop, "genre"), "given"] and pd.isna(lab.loc[(drop, "genre"), "trained_on"])
    untouched = lab.drop([(relabel, "style"), (drop, "genre")])
    assert (untouched["given"].fillna("") == untouched["trained_on"].fillna("")).all()
    app = Artlens(Paths.from_store(store_path, tags=tags))
    try:
        assert "1 labels replaced" in app.applied_tags_text() and "1 dropped" in app.applied_tags_text()
        queue = app.review_queue("style", app.review_default, 10_000)
        assert relabel not in set(queue["path"]) and keep not in set(queue["path"])
        assert len(queue) > 100
        # the estimate counts the retrained-away mislabel as fixed, not as a sample of its (deep) rank
        w = app.wrong_label_refined("style")
        assert w["reviewed"] == 2 and w["confirmed"] == 0 and (w["strata"]["source"] == "model").all()
    finally:
        app.close()


def test_apply_tags_without_a_tag_log_is_one_clear_error(trained, tmp_path):
    r = run_cli("train", "--data", str(trained["manifest"]), "--out-dir", str(tmp_path / "runs"),
                "--cache-dir", str(trained["work"] / "cache"), "--apply-tags", "--tag-log", str(tmp_path / "none.duckdb"))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("error: --apply-tags: no tag log at")
