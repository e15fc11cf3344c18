"""`make bench-audit`: a ranking's top k graded against panel verdicts, on the store the tests built."""
from __future__ import annotations

import json

import duckdb
import pandas as pd

from conftest import MINI, run_cli


def test_audit_counts_each_rankings_top_k(store, tmp_path):
    con = duckdb.connect(str(store["store"]), read_only=True)
    top = con.execute("""SELECT i.path FROM scores s JOIN images i USING (image_id)
                         WHERE s.task = 'style' AND s.detector = 'evidence' ORDER BY s.rank LIMIT 20""").df()["path"]
    # what the card offers for the first six: all kinds' best class where it is not the given one,
    # else the model's first choice (the rule `Artlens.suggested_label` states)
    offered = con.execute("""SELECT i.path, CASE WHEN e.best <> l.class_index THEN cb.name ELSE ct.name END AS offered
        FROM evidence e JOIN images i USING (image_id) JOIN labels l ON l.image_id = e.image_id AND l.task = e.task
        JOIN predictions p ON p.image_id = e.image_id AND p.task = e.task
        JOIN classes cb ON cb.task = e.task AND cb.class_index = e.best
        JOIN classes ct ON ct.task = e.task AND ct.class_index = p.top3[1]
        WHERE e.task = 'style' AND e.kind = 'combined'""").df().set_index("path")["offered"]
    names = con.execute("SELECT name FROM classes WHERE task = 'style' ORDER BY class_index").df()["name"].tolist()
    con.close()
    # a panel that called the first 6 wrong, the next 4 right, 2 debatable, and never saw the rest;
    # its better label is the one the card offers for 3 of the wrong ones, another class for the others
    verdicts = ["wrong"] * 6 + ["right"] * 4 + ["debatable"] * 2
    better = [offered[p] if i < 3 else next(c for c in names if c != offered[p]) for i, p in enumerate(top[:6])]
    audit = pd.DataFrame({"path": top[:12], "task": "style", "given_label": "", "verdict": verdicts,
                          "better_label": better + [""] * 6})
    audit = pd.concat([audit, pd.DataFrame({"path": top[:1], "task": "genre", "given_label": "", "verdict": "right"})])
    audit.to_csv(tmp_path / "audit.csv", index=False)
    out = tmp_path / "audit.json"
    r = run_cli("bench audit", "--store", str(store["store"]), "--audit", str(tmp_path / "audit.csv"),
                "--top", "10", "20", "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(out.read_text())
    ev = res["tasks"]["style"]["rankings"]["evidence"]
    assert ev["10"] == {"wrong": 6, "right": 4, "debatable": 0, "unaudited": 0, "k": 10}
    assert ev["20"] == {"wrong": 6, "right": 4, "debatable": 2, "unaudited": 8, "k": 20}
    assert res["review_default"] == "evidence" and "| **evidence** (default) | 6 / 4 / 0 / 0 |" in r.stdout
    sg = res["tasks"]["style"]["suggestions"]
    assert {k: sg["10"]["wrong"][k] for k in ("n", "suggested_right")} == {"n": 6, "suggested_right": 3}
    assert sg["20"]["debatable"]["n"] == 0 and "- top 10: for 3 of the 6 wrong" in r.stdout
    c = res["tasks"]["style"]["store_count"]
    assert c["low"] <= c["estimate"] <= c["high"]
    # a ranking with nothing to say about a task is named as such, not graded as an empty top k
    assert res["tasks"]["genre"]["unscored"] == ["period"] and "period" not in res["tasks"]["genre"]["rankings"]
    assert "No genre scores (nothing to say about this task): `period`" in r.stdout
    assert res["tasks"]["style"]["unscored"] == []


def test_a_bad_audit_file_is_one_clear_line(store, tmp_path):
    (tmp_path / "a.csv").write_text("path,task,label\nx.jpg,style,wrong\n")
    r = run_cli("bench audit", "--store", str(store["store"]), "--audit", str(tmp_path / "a.csv"),
                "--out", str(tmp_path / "o.json"))
    assert r.returncode == 2 and r.stderr.strip() == (f"error: {tmp_path / 'a.csv'}: audit is missing column(s) "
                                                      "verdict; found path, task, label")
    r = run_cli("bench audit", "--store", str(tmp_path / "none.duckdb"), "--audit", str(MINI / "audit.csv"),
                "--out", str(tmp_path / "o.json"))
    assert r.returncode == 2 and "no store at" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    # an audit of another collection (or paths written another way) matches no painting: one line, not
    # tables of unaudited paintings
    pd.DataFrame({"path": ["img/00001.jpg"], "task": ["style"], "given_label": ["Baroque"], "verdict": ["wrong"]}
                 ).to_csv(tmp_path / "other.csv", index=False)
    r = run_cli("bench audit", "--store", str(store["store"]), "--audit", str(tmp_path / "other.csv"),
                "--out", str(tmp_path / "o.json"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "none of its 1 audited paintings is in" in r.stderr and "'img/00001.jpg'" in r.stderr
    assert not (tmp_path / "o.json").exists()
