"""Label Studio round trip: the queue out as tasks, checked by Label Studio's own SDK, and an export of
annotations back in as decisions that --apply-tags trains on."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from conftest import ROOT, run_cli
from dashboard.labelstudio import decisions_from_export, label_config
from db.tags import open_tag_log

LS_PYTHON = ROOT / ".venv-labelstudio" / "bin" / "python"


def test_annotations_become_decisions():
    classes = ["Baroque", "Rococo", "Fauvism & co"]
    choice = lambda c, **a: {"result": [{"from_name": "style", "to_name": "image", "type": "choices",
                                          "value": {"choices": [c]}}], **a}
    export = [
        {"id": 1, "data": {"path": "a.jpg", "given": "Baroque"}, "annotations": [choice("Rococo", id=10, completed_by=4)]},
        {"id": 2, "data": {"path": "b.jpg", "given": "Rococo"}, "annotations": [choice("Rococo", id=11)]},
        {"id": 3, "data": {"path": "c.jpg", "given": "Rococo"},
         "annotations": [choice("Baroque", id=12), choice("Fauvism & co", id=13, completed_by={"email": "b@x.org"})]},
        {"id": 4, "data": {"path": "d.jpg", "given": "Baroque"}, "annotations": [{"was_cancelled": True, "result": []}]},
        {"id": 5, "data": {"path": "e.jpg", "given": "Baroque"}, "annotations": []},
    ]
    rows, counts = decisions_from_export(export, "style", classes)
    assert counts == {"tasks": 5, "decisions": 3, "skipped": 1, "unannotated": 1}
    got = [(r["path"], r["decision"], r["suggested_label"], r["reviewer"]) for r in rows]
    assert got == [("a.jpg", "mislabel", "Rococo", "label-studio user 4"), ("b.jpg", "correct", None, "label-studio"),
                   ("c.jpg", "mislabel", "Fauvism & co", "b@x.org")]   # the last annotation decides
    assert decisions_from_export(export, "style", classes, reviewer="ana")[0][0]["reviewer"] == "ana"
    with pytest.raises(ValueError, match="task 1: choice 'Cubism' is not a style class"):
        decisions_from_export([{**export[0], "annotations": [choice("Cubism")]}], "style", classes)
    assert '<Choice value="Fauvism &amp; co"/>' in label_config("style", classes)


@pytest.fixture
def exported(store, tmp_path):
    tags = tmp_path / "ls.tags.duckdb"   # a log of its own: other tests' decisions would shorten the queue
    out = tmp_path / "ls"
    r = run_cli("export", "--store", str(store["store"]), "--tags", str(tags), "--label-studio", "--out", str(out),
                "--top", "12")
    assert r.returncode == 0, r.stderr[-2000:]
    return {"tags": tags, "out": out, "tasks": json.loads((out / "labelstudio_tasks.json").read_text()),
            "config": (out / "labelstudio_config.xml").read_text()}


def test_the_queue_goes_to_label_studio_and_comes_back_as_decisions(store, exported, tmp_path):
    tasks, out, tags = exported["tasks"], exported["out"], exported["tags"]
    assert len(tasks) == 12 and [t["data"]["artlens_rank"] for t in tasks] == sorted(t["data"]["artlens_rank"] for t in tasks)
    for t in tasks:
        pred = t["predictions"][0]["result"][0]["value"]["choices"][0]
        assert pred != t["data"]["given"] and f'<Choice value="{pred}"/>' in exported["config"]
        assert t["data"]["evidence"] and t["data"]["image"] == "/data/local-files/?d=" + t["data"]["path"]
    if not LS_PYTHON.exists():
        if os.environ.get("CI"):
            pytest.fail("make labelstudio did not run: .venv-labelstudio is missing")
        pytest.skip("the Label Studio SDK environment is missing (make labelstudio)")
    # Label Studio's SDK validates config, tasks and predictions, and writes the review's export
    r = subprocess.run([str(LS_PYTHON), str(ROOT / "bench" / "labelstudio_check.py"), str(out / "labelstudio_config.xml"),
                        str(out / "labelstudio_tasks.json"), str(tmp_path / "export.json")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
    assert json.loads(r.stdout) == {"tasks": 12, "errors": [], "labels": len(exported["config"].split("<Choice ")) - 1}
    r = run_cli("export", "--store", str(store["store"]), "--tags", str(tags), "--from-label-studio",
                str(tmp_path / "export.json"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "11 decisions recorded" in r.stdout and "1 not annotated" in r.stdout
    latest = open_tag_log(tags).latest()
    assert len(latest) == 11 and set(latest["reviewer"]) == {"curator@example.org"}
    mis = latest[latest.decision == "mislabel"]
    pred = {t["data"]["path"]: t["predictions"][0]["result"][0]["value"]["choices"][0] for t in tasks}
    assert len(mis) == 5 and all(pred[p] == s for p, s in zip(mis["path"], mis["suggested_label"]))
    # what `make train ARGS="--apply-tags --tag-log ..."` does with them
    from trainer.data import load_paintings
    from trainer.relabel import apply_decisions, read_decisions
    ps = load_paintings(store["manifest"], test_fraction=0)
    _, changes, counts = apply_decisions(ps.frame, ps.classes, read_decisions(str(tags)))
    assert counts["replaced"] == 5 and counts["kept"] == 6 and set(changes["training"]) == set(mis["suggested_label"])
    # the next export leaves the reviewed paintings out
    again = run_cli("export", "--store", str(store["store"]), "--tags", str(tags), "--label-studio", "--out",
                    str(tmp_path / "again"), "--top", "12")
    assert again.returncode == 0
    nxt = {t["data"]["path"] for t in json.loads((tmp_path / "again" / "labelstudio_tasks.json").read_text())}
    assert not nxt & set(latest["path"])


def test_a_bad_label_studio_export_records_nothing(store, exported, tmp_path):
    bad = [{"id": 7, "data": exported["tasks"][0]["data"],
            "annotations": [{"result": [{"from_name": "style", "to_name": "image", "type": "choices",
                                         "value": {"choices": ["Not_A_Style"]}}]}]}]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    r = run_cli("export", "--store", str(store["store"]), "--tags", str(exported["tags"]), "--from-label-studio",
                str(tmp_path / "bad.json"))
    assert r.returncode == 2 and "choice 'Not_A_Style' is not a style class; nothing was recorded" in r.stderr
    (tmp_path / "notjson.json").write_text("{oops")
    r = run_cli("export", "--store", str(store["store"]), "--tags", str(exported["tags"]), "--from-label-studio",
                str(tmp_path / "notjson.json"))
    assert r.returncode == 2 and "is not JSON" in r.stderr
    assert len(open_tag_log(exported["tags"]).history()) == 0
