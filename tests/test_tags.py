"""Tag log: two writer processes at once, history order, parameterised SQL."""
from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT
from db.store import TagLog

WRITER = """
import sys
sys.path.insert(0, {root!r})
from db.store import TagLog
log = TagLog({path!r}, wait_s=120)
for i in range({n}):
    log.add(f"{{sys.argv[1]}}/painting-{{i:04d}}.jpg", "style", "mislabel" if i % 2 else "correct", sys.argv[1],
            note=str(i))
"""


def test_two_processes_tag_concurrently_without_loss(tmp_path):
    path = tmp_path / "tags.duckdb"
    TagLog(path).ensure()
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(root=str(ROOT), path=str(path), n=300))
    procs = [subprocess.Popen([sys.executable, str(script), who]) for who in ("ana", "ben")]
    assert [p.wait(timeout=600) for p in procs] == [0, 0]
    hist = TagLog(path).history()
    assert len(hist) == 600 and hist["tag_id"].is_unique
    for who in ("ana", "ben"):
        mine = hist[hist.reviewer == who]
        assert mine["note"].astype(int).tolist() == list(range(300))  # each writer's order preserved
        assert mine["path"].is_unique
    assert hist["tag_id"].is_monotonic_increasing and hist["created_at"].is_monotonic_increasing


def test_sql_injection_text_is_stored_verbatim(tmp_path):
    log = TagLog(tmp_path / "tags.duckdb")
    evil = "x'); DROP TABLE tags; --"
    log.add(evil, "style", "mislabel", evil, suggested_label=evil, note=evil)
    row = log.history().iloc[0]
    assert row.path == evil and row.suggested_label == evil and row.note == evil and row.reviewer == evil


def test_invalid_decision_and_missing_reviewer_are_refused(tmp_path):
    log = TagLog(tmp_path / "tags.duckdb")
    with pytest.raises(ValueError, match="decision"):
        log.add("a.jpg", "style", "delete", "ana")
    with pytest.raises(ValueError, match="reviewer"):
        log.add("a.jpg", "style", "correct", "  ")
    assert len(log.history()) == 0
