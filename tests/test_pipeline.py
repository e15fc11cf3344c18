"""make train + make embed on real paintings: outputs, cache, store contents, re-runs, bad input."""
from __future__ import annotations

import json
import re
import shutil

import duckdb
import faiss
import numpy as np
import pytest
import torch

from conftest import CONFLICTING_PAIRS, HEIC, MINI, N_FLIPS, run_cli, start_cli
from trainer.checkpoint import load_checkpoint


def test_training_writes_run_and_beats_chance(trained):
    run = trained["run_dir"]
    for f in ("model.pt", "last.pt", "metrics.json", "crossfit.npz", "loss.png", "confusion.png", "confusion.html"):
        assert (run / f).is_file(), f
    assert (run.parent / "latest").resolve() == run.resolve()
    m = json.loads((run / "metrics.json").read_text())
    style = m["metrics"]["test"]["style"]
    chance = 1 / len([c for c in m["metrics"]["test"]["style"]["per_class_recall"]])
    assert style["top1"] > 3 * chance, style["top1"]
    assert set(style) >= {"top1", "top5", "macro_f1", "weighted_f1", "per_class_recall", "confusion_matrix", "report"}
    rec = load_checkpoint(run).record
    assert rec.backbone == "efficientnet_lite0" and "ImageNet" in rec.weights
    assert rec.embedding_dim == 960 + 256 and len(rec.data_hash) == 40
    from trainer.crossfit import CrossFit
    cf = CrossFit.load(run / "crossfit.npz")   # every labelled painting, whatever its split
    assert len(cf.paths) == sum(m["splits"].values()) == trained["n"]
    assert sorted(set(cf.fold)) == [0, 1, 2]
    assert np.allclose(cf.probs["style"].sum(1), 1, atol=1e-4)
    assert set(cf.scores["style"]) == {"centroid", "centroid_margin", "mahalanobis", "mahalanobis_margin", "zscore",
                                       "knn"}
    assert "test style" in trained["train_log"]
    # the cross-fitted heads' own accuracy, over every painting they scored (the flipped labels included)
    assert set(m["metrics"]["crossfit"]) == set(m["tasks"]) and "cross-fitted style" in trained["train_log"]
    assert m["metrics"]["crossfit"]["style"]["n"] == trained["n"] > m["metrics"]["test"]["style"]["n"]
    # the default final model trains on train + val for the whole schedule, with no early stopping
    n_fit = m["splits"]["train"] + m["splits"]["val"]
    assert m["fit_on"] == "train+val" and m["val_in_sample"] and m["best_val_macro_f1"] is None
    assert [h["epoch"] for h in m["history"]] == list(range(1, 13)) and "val_loss" not in m["history"][0]
    assert f"final model: 12 epochs on train+val ({n_fit} paintings)" in trained["train_log"]
    assert "epoch 12/12  loss" in trained["train_log"]


def test_paired_comparison_reads_the_runs_cross_fit(trained, tmp_path):
    """`python -m bench.paired` scores a run's crossfit.npz as `make train` did (same top-1 as its
    metrics.json), gives a zero gain against itself, and refuses runs that held out other folds."""
    run = trained["run_dir"]
    r = run_cli("bench paired", "--a", str(run), "--b", str(run), "--out", str(tmp_path / "p.json"))
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((tmp_path / "p.json").read_text())
    m = json.loads((run / "metrics.json").read_text())["metrics"]["crossfit"]
    for t, row in res["tasks"].items():
        assert row["a_top1"] == pytest.approx(m[t]["top1"]) and row["n"] == m[t]["n"]
        assert row["gain"] == 0 and row["gain_ci95"] == [0, 0]
    r = run_cli("bench paired", "--a", str(run), "--b", str(tmp_path))
    assert r.returncode == 2 and r.stderr.strip().startswith("error:") and "crossfit.npz" in r.stderr


def test_feature_cache_is_hit_on_second_run(trained):
    work = trained["work"]
    r = run_cli("train", "--data", str(trained["manifest"]), "--out-dir", str(work / "runs2"), "--run-id", "again",
                "--cache-dir", str(work / "cache"), "--epochs", "1", "--min-steps", "0", "--folds", "0",
                "--test-fraction", "0.2")
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((work / "runs2" / "again" / "metrics.json").read_text())
    assert m["feature_cache"] == {"hits": 2 * trained["n"], "misses": 0}


def test_resume_continues_a_killed_run(trained, tmp_path):
    """kill -9 during training leaves last.pt; --resume finishes the run from the next epoch."""
    import signal
    import time
    work = trained["work"]
    args = ["--data", str(trained["manifest"]), "--out-dir", str(tmp_path), "--run-id", "k", "--batch-size", "16",
            "--cache-dir", str(work / "cache"), "--folds", "0", "--test-fraction", "0.2", "--patience", "100",
            "--epochs", "6"]
    proc = start_cli("train", *args, capture=False)
    last = tmp_path / "k" / "last.pt"
    deadline = time.time() + 300
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert last.exists() and not (tmp_path / "k" / "model.pt").exists(), "run finished before it could be killed"
    done = torch.load(last, map_location="cpu", weights_only=False)["epoch"]
    r = run_cli("train", "--out-dir", str(tmp_path), "--run-id", "k", "--resume")
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"resuming at epoch {done + 1}" in r.stderr
    m = json.loads((tmp_path / "k" / "metrics.json").read_text())
    assert [h["epoch"] for h in m["history"]] == list(range(1, 7))


def test_store_contents(store):
    con = duckdb.connect(str(store["store"]), read_only=True)
    n = store["n"]
    q = lambda sql: con.execute(sql).fetchall()
    assert q("SELECT count(*) FROM images")[0][0] == n
    assert q("SELECT count(*) FROM labels")[0][0] == 3 * n
    assert q("SELECT count(*) FROM predictions")[0][0] == 3 * n
    assert q("SELECT min(len(vector)), max(len(vector)) FROM embeddings")[0] == (1216, 1216)
    assert q("SELECT count(DISTINCT detector) FROM scores")[0][0] == 17
    assert q("SELECT count(*) FROM projections WHERE method = 'pca'")[0][0] == n
    # softmax rows sum to one, width = class count of the task
    assert q("""SELECT bool_and(abs(list_sum(probs) - 1) < 1e-3) FROM predictions""")[0][0]
    # every labelled painting's probabilities are cross-fitted, in every split
    assert q("""SELECT count(*) FROM predictions p JOIN labels l USING (image_id, task)
                WHERE l.class_index IS NOT NULL AND p.source <> 'cross-fit'""")[0][0] == 0
    assert q("SELECT value FROM store_info WHERE key = 'cross_fitted'")[0][0] == "true"
    # scores stored only where a detector has one: cross_task needs the painting's artist
    assert q("""SELECT count(*) FROM scores s JOIN labels l ON l.image_id = s.image_id AND l.task = 'artist'
                WHERE s.detector = 'cross_task' AND s.task = 'style' AND l.class_index IS NULL""")[0][0] == 0
    assert {r[0] for r in q("SELECT DISTINCT task FROM scores")} == {"artist", "genre", "style"}
    # the evidence reads each task's cross-fitted probabilities (as stored) at the temperature its labels call for
    temps = dict(re.findall(r"(\w+): the cross-fitted model is read at temperature ([\d.]+), the title model at",
                            store["embed_log"]))
    assert set(temps) == {"artist", "genre", "style"}, temps
    from db.store import Store
    from embeddings.evidence import calibration_temperature
    s = Store(store["store"])
    for task, t in temps.items():
        frame, probs = s.label_probabilities(task)
        assert calibration_temperature(probs, frame["label"].to_numpy()) == pytest.approx(float(t), abs=0.006), task
    s.close()
    # how many labels look wrong: a total with its interval per task, and per class summing to it
    for task, total, lo, hi, parts in q("""SELECT task, max(estimated_wrong) FILTER (WHERE class_index IS NULL),
            max(low), max(high), sum(estimated_wrong) FILTER (WHERE class_index IS NOT NULL)
            FROM wrong_label_estimates GROUP BY task"""):
        assert lo <= total <= hi and total == pytest.approx(parts), task
    assert q("SELECT count(DISTINCT task) FROM wrong_label_estimates")[0][0] == 3
    # metadata from the WikiArt file names, and one evidence row per labelled painting, task and kind
    assert q("SELECT count(*) FROM images WHERE artist_name <> ''")[0][0] == n
    # a title for each, but WikiArt's not_detected_<id> placeholders, which are none
    assert q("""SELECT count(*) FROM images WHERE title <> '' OR regexp_matches(path, 'not[_-]detected')""")[0][0] == n
    assert q("SELECT count(*) FROM images WHERE title = ''")[0][0] > 0
    assert q("SELECT count(*) FROM images WHERE year_lo IS NOT NULL")[0][0] > n // 3
    assert q("""SELECT count(*) FROM evidence e JOIN labels l USING (image_id, task)
                WHERE e.kind = 'model' AND l.training_index IS NOT NULL""")[0][0] == \
        q("SELECT count(*) FROM labels WHERE training_index IS NOT NULL")[0][0]
    assert {r[0] for r in q("SELECT DISTINCT kind FROM evidence")} == {"model", "neighbours", "look", "artist",
                                                                       "period", "title", "copies", "combined"}
    # the copies kind speaks only for a painting with a copy filed under another label (the subset's two pairs)
    assert q("""SELECT count(*) FROM evidence e WHERE e.kind = 'copies' AND NOT EXISTS (
                  SELECT 1 FROM duplicate_groups d1 JOIN duplicate_groups d2 ON d1.group_id = d2.group_id
                  AND d1.image_id <> d2.image_id
                  JOIN labels l1 ON l1.image_id = d1.image_id AND l1.task = e.task
                  JOIN labels l2 ON l2.image_id = d2.image_id AND l2.task = e.task
                  WHERE d1.image_id = e.image_id AND l1.class_index <> l2.class_index)""")[0][0] == 0
    assert q("SELECT count(*) FROM evidence WHERE kind = 'copies'")[0][0] >= 2 * len(CONFLICTING_PAIRS)
    # a date is evidence about style, not about genre (Metadata.for_task)
    assert q("SELECT count(*) FROM evidence WHERE kind = 'period' AND task = 'style'")[0][0] > n // 3
    assert q("SELECT count(*) FROM evidence WHERE kind = 'period' AND task = 'genre'")[0][0] == 0
    # an undated painting whose artist has dated ones is read at the artist's dates
    assert q("SELECT count(*) FROM evidence WHERE kind = 'period' AND line LIKE '%this one undated, %'")[0][0] > 0
    assert q("SELECT count(*) FROM scores WHERE detector = 'period' AND task = 'genre'")[0][0] == 0
    assert {r[0] for r in q("SELECT DISTINCT verdict FROM evidence")} <= {"supports", "mixed", "against"}
    assert q("SELECT count(*) FROM evidence WHERE kind <> 'look' AND line = ''")[0][0] == 0
    index = faiss.read_index(str(store["index"]))
    assert index.ntotal == n and index.d == 1216
    vec = np.array(q("SELECT vector FROM embeddings WHERE image_id = 7")[0][0], dtype=np.float32)
    sim, ids = index.search((vec / np.linalg.norm(vec))[None], 1)
    assert ids[0, 0] == 7 and sim[0, 0] == pytest.approx(1, abs=1e-4)


def test_each_detector_ranks_injected_flips_above_median(store):
    con = duckdb.connect(str(store["store"]), read_only=True)
    df = con.execute("""SELECT s.detector, i.path, s.rank FROM scores s JOIN images i USING (image_id)
                        WHERE s.task = 'style'""").df()
    df["flipped"] = df["path"].isin(store["flipped"])
    assert df.loc[df.detector == "confidence", "flipped"].sum() == N_FLIPS
    for det, g in df.groupby("detector"):
        median_rank = g["rank"].median()
        assert g.loc[g.flipped, "rank"].median() < median_rank, det  # rank 1 = most suspicious


def test_top_of_every_ranking_is_drawn_from_the_splits_as_the_mislabels_are(store):
    """Scored by the final model, train paintings sat on their own centroid and among same-label
    neighbours, so the embedding detectors' top k was 95% val/test. Cross-fitted, each ranking's top
    k (k = flips) holds train and non-train paintings within 15 points of their share among the flips."""
    from db.store import Store
    from bench.evaluation import grade_ranking
    s = Store(store["store"])
    frame, _ = s.label_probabilities("style")
    scores = s.detector_scores("style")
    s.close()
    flipped = frame["path"].isin(store["flipped"]).to_numpy()
    train = np.where(frame["split"] == "train", "train", "other")
    assert 0.3 < (train[flipped] == "train").mean() < 0.9      # the flips really sit in both
    pos = {p: i for i, p in enumerate(frame["path"])}
    for det, g in scores.groupby("detector"):
        sc = np.full(len(frame), np.nan)
        sc[[pos[p] for p in g["path"]]] = g["score"]
        m = grade_ranking(sc, flipped, train)
        assert m["split_excess"] <= 0.15, (det, m["topk_split_share"], m["positive_split_share"])


def test_duplicate_groups_find_byte_identical_conflicts(store):
    con = duckdb.connect(str(store["store"]), read_only=True)
    df = con.execute("""SELECT d.group_id, d.conflicting_tasks, i.path FROM duplicate_groups d
                        JOIN images i USING (image_id)""").df()
    for a, b, task in CONFLICTING_PAIRS:
        ga = df.loc[df.path == a, "group_id"].tolist()
        gb = df.loc[df.path == b, "group_id"].tolist()
        assert ga and ga == gb, (a, b)
        assert task in df.loc[df.path == a, "conflicting_tasks"].iloc[0].split(",")


def test_tags_survive_reembed_and_bad_inputs_keep_store(store, tmp_path):
    from db.store import Store
    from db.tags import open_tag_log
    tags = open_tag_log(store["tags"])
    tid = tags.add("Cubism/x.jpg", "style", "mislabel", "ana", suggested_label="Fauvism", note="re-embed test")
    before = store["store"].stat().st_ino
    r = run_cli("embed", "--run", str(store["run_dir"]), "--store", str(store["store"]),
                "--cache-dir", str(store["work"] / "cache"), "--projection", "pca")
    assert r.returncode == 0, r.stderr[-2000:]
    assert store["store"].stat().st_ino != before  # a new file was swapped in
    hist = tags.history()
    assert tid in hist["tag_id"].tolist() and hist.set_index("tag_id").loc[tid, "note"] == "re-embed test"

    snapshot = store["store"].read_bytes()
    # missing checkpoint
    r = run_cli("embed", "--run", str(tmp_path / "nope"), "--store", str(store["store"]))
    assert r.returncode == 2 and "no checkpoint" in r.stderr and "Traceback" not in r.stderr
    # checkpoint whose class count disagrees with the data
    bad = tmp_path / "bad"
    shutil.copytree(store["run_dir"], bad)
    ckpt = torch.load(bad / "model.pt", map_location="cpu", weights_only=False)
    ckpt["meta"]["classes"]["style"] = ckpt["meta"]["classes"]["style"] + ["Extra"]
    torch.save(ckpt, bad / "model.pt")
    r = run_cli("embed", "--run", str(bad), "--store", str(store["store"]))
    assert r.returncode == 2 and "classes but the data set" in r.stderr, r.stderr[-500:]
    assert store["store"].read_bytes() == snapshot
    s = Store(store["store"])
    assert s.counts()["paintings"] == store["n"]
    s.close()


def test_unwritable_output_is_one_clear_error(trained):
    work = trained["work"]
    r = run_cli("train", "--data", str(trained["manifest"]), "--out-dir", "/proc/artlens-runs",
                "--cache-dir", str(work / "cache"), "--epochs", "1", "--folds", "0")
    assert r.returncode == 2 and "cannot write to /proc/artlens-runs" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("train", "--data", str(trained["manifest"]), "--out-dir", str(work / "runs-refit"), "--refit")
    assert r.returncode == 2 and "--refit retrains after early stopping on val: add --fit-on train" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (work / "runs-refit").exists()
    r = run_cli("embed", "--run", str(trained["run_dir"]), "--store", "/proc/artlens/artlens.duckdb",
                "--cache-dir", str(work / "cache"))
    assert r.returncode == 2 and "cannot write to /proc/artlens" in r.stderr and "Traceback" not in r.stderr


def test_kill_during_embed_keeps_previous_store_and_tags(store):
    """SIGKILL `python -m embeddings` at several moments; the old store stays readable, tags intact."""
    import signal
    import time

    from db.store import Store
    from db.tags import open_tag_log
    tags = open_tag_log(store["tags"])
    tid = tags.add("Baroque/kill-test.jpg", "style", "unsure", "kill", note="before kill")
    for delay in (2.0, 4.0, 6.0):
        proc = start_cli("embed", "--run", str(store["run_dir"]), "--store", str(store["store"]), "--cache-dir",
                         str(store["work"] / "cache"), "--projection", "pca", capture=False)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        s = Store(store["store"])
        assert s.counts()["paintings"] == store["n"]
        assert len(s.ranked("style", "consensus", 5)) == 5
        s.close()
        assert faiss.read_index(str(store["index"])).ntotal == store["n"]
        hist = tags.history()
        assert hist.set_index("tag_id").loc[tid, "note"] == "before kill"


def test_finetune_end_to_end_runs_on_cpu(trained, tmp_path):
    """--finetune trains backbone + head from JPEGs (meant for a GPU; tiny and fast here)."""
    r = run_cli("train", "--data", str(trained["manifest"]), "--out-dir", str(tmp_path), "--run-id", "ft",
                "--finetune", "--limit", "40", "--epochs", "1", "--folds", "2", "--crossfit-epochs", "1",
                "--image-size", "64", "--batch-size", "16", "--min-steps", "0", "--cache-dir", str(tmp_path / "cache"))
    assert r.returncode == 0, r.stderr[-2000:]
    ckpt = load_checkpoint(tmp_path / "ft")
    assert ckpt.backbone_state and ckpt.record.finetune and ckpt.record.image_size == 64
    # the fine-tuned backbone saw every train label, so the cross-fitted heads run on the frozen one's maps
    from trainer.crossfit import CrossFit
    cf = CrossFit.load(tmp_path / "ft" / "crossfit.npz")
    assert len(cf.paths) == 40 and sorted(set(cf.fold)) == [0, 1]
    assert any((tmp_path / "cache").rglob("orig/shard-*.keys.npy"))


@pytest.mark.slow
def test_image_folder_data_trains_and_embeds(tmp_path):
    """torchvision's layout (one folder per class, no CSV) through `artlens train` and `artlens embed`."""
    import duckdb
    data = tmp_path / "paintings"
    for style in ("Baroque", "Cubism", "Pop_Art", "Rococo"):
        (data / style).mkdir(parents=True)
        for p in sorted((MINI / style).iterdir())[:16]:
            shutil.copyfile(p, data / style / p.name)
    phone = HEIC / "benjamin-west_the-angel-of-the-lord-announcing-the-resurrection-1805.heic"
    (data / "Rococo" / (phone.stem + ".jpg")).unlink()    # a phone's photograph (HEIC) in place of the scan
    shutil.copyfile(phone, data / "Rococo" / phone.name)
    (data / "pop art").mkdir()      # the same movement filed by a second source under its own spelling
    for p in sorted((MINI / "Pop_Art").iterdir())[16:20]:
        shutil.copyfile(p, data / "pop art" / p.name)
    (data / "Ukiyo_e").mkdir()      # a class of one painting: nothing else to learn it from
    lone = sorted((MINI / "Ukiyo_e").iterdir())[0]
    shutil.copyfile(lone, data / "Ukiyo_e" / lone.name)
    r = run_cli("train", "--data", str(data), "--out-dir", str(tmp_path / "runs"), "--run-id", "if",
                "--cache-dir", str(tmp_path / "cache"), "--epochs", "3", "--folds", "2", "--crossfit-epochs", "1",
                "--min-steps", "0", "--test-fraction", "0.2")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "ImageFolder layout, 6 style classes" in r.stderr
    assert "style classes that differ only in case, spaces, punctuation or accents: 'Pop_Art' (16) and 'pop art' (4)" in r.stderr
    store = tmp_path / "store" / "artlens.duckdb"
    r = run_cli("embed", "--run", str(tmp_path / "runs" / "if"), "--store", str(store), "--cache-dir",
                str(tmp_path / "cache"), "--projection", "pca")
    assert r.returncode == 0, r.stderr[-2000:]
    con = duckdb.connect(str(store), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM images").fetchone()[0] == 69
        assert con.execute("SELECT DISTINCT task FROM labels").fetchall() == [("style",)]
        assert con.execute("""SELECT count(*) FROM scores s JOIN images i USING (image_id)
                              WHERE s.detector = 'evidence' AND i.path = ?""",
                           [f"Rococo/{phone.stem}.heic"]).fetchone()[0] == 1
        # the lone Ukiyo_e painting has no evidence score: no kind has another painting to learn the class from
        assert con.execute("SELECT count(*) FROM scores WHERE task = 'style' AND detector = 'evidence'").fetchone()[0] == 68
        assert con.execute("""SELECT verdict FROM evidence e JOIN images i USING (image_id)
                              WHERE e.task = 'style' AND e.kind = 'combined' AND i.path = ?""",
                           [f"Ukiyo_e/{lone.name}"]).fetchone()[0] == "cannot judge"
    finally:
        con.close()
    # Without the file names' artist, title and year, the look is the only kind of evidence: no label
    # can have two kinds agree, so none is counted, and the Overview says why instead of "about 0".
    bare = tmp_path / "bare" / "artlens.duckdb"
    r = run_cli("embed", "--run", str(tmp_path / "runs" / "if"), "--store", str(bare), "--cache-dir",
                str(tmp_path / "cache"), "--projection", "pca", "--no-parse-names")
    assert r.returncode == 0, r.stderr[-2000:]
    from dashboard.service import Artlens, Paths
    for path, few in ((store, 0), (bare, 68)):
        app = Artlens(Paths.from_store(path))
        try:
            summary, _ = app.wrong_label_summary("style")
            # the Overview names the two spellings with their paintings
            assert "'Pop_Art' (16) and 'pop art' (4)" in app.spelling_variants("style")
            assert app.other_spellings("style", "pop art") == ["Pop_Art"] and app.other_spellings("style", "Rococo") == []
            assert app.store.labels_with_few_kinds("style", ["look", "artist", "period", "title", "copies"]) == few
            assert app.store.labels_unjudged("style") == 1
            weight = app.store.review_depths("style", app.review_default)["wrong_weight"]
        finally:
            app.close()
        assert summary.startswith("About **") == (few == 0), summary
        assert ("1 label is the only painting of its class here" in summary) == (few == 0), summary
    assert weight.sum() == 0, weight
    assert summary.startswith("No style label can be counted as wrong: a label is counted only where two "
                              "independent kinds of evidence agree, and here every one has fewer than two (the look;"), summary
    assert "likelier than the given one for " in summary and " of 69, the classifier's own confusions" in summary, summary


def test_duplicates_that_cross_splits_are_reported(store, tmp_path):
    """Duplicate groups with members in more than one split. The subset's identical pairs share a
    split, so nothing is reported; moved to test in a copy of the store, one pair is, as identical
    files, and the Overview's warning counts it."""
    import duckdb

    from dashboard.service import Artlens
    from db.store import Paths
    app = Artlens(Paths.from_store(store["store"], tags=store["tags"]))
    assert app.leaky_duplicates()[0] == "" and app.leaky_duplicates()[1].empty
    app.close()
    copy = tmp_path / "leaky.duckdb"
    shutil.copyfile(store["store"], copy)
    shutil.copyfile(store["index"], copy.with_suffix(".faiss"))
    con = duckdb.connect(str(copy))
    group = con.execute("""SELECT d.group_id, min(i.image_id) FROM duplicate_groups d JOIN images i USING (image_id)
                           GROUP BY d.group_id HAVING count(DISTINCT i.sha1) = 1 ORDER BY d.group_id LIMIT 1""").fetchone()
    con.execute("UPDATE images SET split = CASE WHEN split = 'test' THEN 'train' ELSE 'test' END WHERE image_id = ?",
                [group[1]])
    con.close()
    app = Artlens(Paths.from_store(copy, tags=tmp_path / "t.duckdb"))
    text, rows = app.leaky_duplicates()
    app.close()
    assert set(rows["group_id"]) == {group[0]} and rows["exact"].all() and set(rows["split"]) >= {"test"}
    assert text.startswith("1 group of duplicate paintings (1 of identical files) sits in more than one split; 1 puts")


def test_the_queue_shows_a_picture_filed_twice_once_and_one_decision_covers_its_copy(store, tmp_path):
    """The subset holds wikiart-mini's byte-identical pairs. Under a task where both copies carry the
    same label the queue shows the better-ranked one only and names the other on its card; tagging it
    tags both. Under the task where their labels conflict both stay: at most one label is right."""
    from dashboard.service import Artlens
    from db.store import Paths
    app = Artlens(Paths.from_store(store["store"], tags=tmp_path / "tags.duckdb"))
    try:
        n = app.store.counts()["paintings"]
        same = conflict = 0
        for a, b, conflicting_task in CONFLICTING_PAIRS:
            for task in ("style", "genre", "artist"):
                everything = app.store.ranked(task, "evidence", limit=n)
                pair = everything[everything["path"].isin([a, b])]
                if len(pair) < 2:
                    continue          # a copy without a label for this task
                queue = app.review_queue(task, "evidence", size=n)
                shown = set(queue["path"]) & {a, b}
                if pair["given"].nunique() == 2:
                    conflict += 1
                    assert task == conflicting_task and shown == {a, b}
                    assert app.copies_of(a, task).empty
                    continue
                same += 1
                best = pair.sort_values("rank")["path"].iloc[0]
                other = ({a, b} - {best}).pop()
                assert shown == {best}, (task, shown)
                assert app.copies_of(best, task)["copy_path"].tolist() == [other]
                app.tag(task, queue[queue["path"] == best], "correct", "ana")
                latest = app.tags.latest()
                assert set(latest.loc[latest["task"] == task, "path"]) >= {a, b}
                assert not (set(app.review_queue(task, "evidence", size=n)["path"]) & {a, b})
        assert same >= 2 and conflict >= 1
    finally:
        app.close()


def test_identical_files_share_a_cross_fitting_fold(trained):
    """No cross-fitting head scores a painting whose identical copy it trained on: the copy would
    vouch for a wrong label they share."""
    from trainer.crossfit import CrossFit
    cf = CrossFit.load(trained["run_dir"] / "crossfit.npz")
    fold = dict(zip(cf.paths, cf.fold))
    for a, b, _ in CONFLICTING_PAIRS:
        assert fold[a] == fold[b], (a, b)
    assert len(set(cf.fold)) == 3


def test_a_manifests_title_and_date_reach_the_store_and_the_card(trained, tmp_path):
    """A catalogue's own `title` and `date` columns win over what the file name says: `make embed`
    stores them per painting, logs the dates it could not read (kept as text), and the Review card's
    period and title lines read them, a date known only to its century as the century."""
    import pandas as pd
    manifest = pd.read_csv(trained["manifest"], keep_default_na=False)
    p, q, c = manifest.loc[manifest["style"] != "", "path"].iloc[[0, 1, 2]]
    manifest["title"] = np.where(manifest["path"] == p, "Study for a portrait of the painter's wife", "")
    manifest["date"] = np.select([manifest["path"] == p, manifest["path"] == q, manifest["path"] == c],
                                 ["c. 1620", "spring", "XVII century"], "")
    with_meta = trained["root"] / "manifest_with_metadata.csv"
    manifest.to_csv(with_meta, index=False)
    store = tmp_path / "meta.duckdb"
    r = run_cli("embed", "--run", str(trained["run_dir"]), "--data", str(with_meta), "--store", str(store),
                "--cache-dir", str(trained["work"] / "cache"), "--projection", "pca")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "1 dates could not be read (kept as text)" in r.stderr, r.stderr[-2000:]
    con = duckdb.connect(str(store), read_only=True)
    rows = {path: rest for path, *rest in con.execute(
        "SELECT path, image_id, title, year_lo, year_hi, date_text FROM images WHERE path IN (?, ?, ?)",
        [p, q, c]).fetchall()}
    assert rows[p][1:] == ["Study for a portrait of the painter's wife", 1620.0, 1620.0, "c. 1620"], rows[p]
    assert rows[q][4] == "spring", rows[q]   # unreadable: its text kept (the year, if any, from the file name)
    assert rows[c][2:] == [1600.0, 1699.0, "XVII century"], rows[c]
    lines, century = (dict(con.execute("SELECT kind, line FROM evidence WHERE task = 'style' AND image_id = ?",
                                       [rows[x][0]]).fetchall()) for x in (p, c))
    con.close()
    assert 'this one 1620 (the catalogue: "c. 1620")' in lines["period"], lines
    assert 'this one 1600-1699 (the catalogue: "XVII century")' in century["period"], century
    assert "study for a portrait of the painter's wife" in lines["title"].lower(), lines


def test_the_card_names_a_copy_filed_under_another_label(store, tmp_path):
    """Where the catalogue files the same picture under two labels the `copies` kind is against
    each, and the card names the copy so a reviewer can open it: the subset's fish market is
    Cornelis de Vos's genre painting and Frans Snyders' still life. A copy under the same label (the
    fish market's style) says nothing: no such line."""
    from dashboard.service import Artlens
    from db.store import Paths
    app = Artlens(Paths.from_store(store["store"], tags=tmp_path / "tags.duckdb"))
    try:
        checked = 0
        for a, b, task in CONFLICTING_PAIRS:
            rows = app.store.ranked(task, "evidence", limit=app.store.counts()["paintings"])
            rows = rows[rows["path"].isin([a, b])].set_index("path")
            if len(rows) < 2:
                continue              # a copy without a label for this task
            checked += 1
            for mine, other in ((a, b), (b, a)):
                mine_given, other_given = rows.loc[mine, "given"], rows.loc[other, "given"]
                lines, summary = app.evidence_card(int(rows.loc[mine, "image_id"]), task)
                copy_lines = [line for verdict, line in lines if line.startswith("Copies:")]
                assert copy_lines == [f"Copies: the same picture is filed again here under {other_given} (1 copy); "
                                      f"at most one of the labels is right. A copy under {mine_given} too would "
                                      f"say nothing: a label travels with the file. The copy: `{other}` "
                                      f"({other_given})."], lines
                assert dict((line, v) for v, line in lines)[copy_lines[0]] == "against"
                assert "its copies" in summary.split(". For it")[0], summary
                ev = app.store.evidence_of(int(rows.loc[mine, "image_id"]), task).set_index("kind")
                assert ev.loc["copies", "best"] == other_given and ev.loc["copies", "p_given"] == 0.0
                # the tag form offers what all kinds together favour, the model's top only where that
                # is the given label
                favoured = ev.loc["combined", "best"]
                offered = app.suggested_label(int(rows.loc[mine, "image_id"]), task, mine_given, [("model top", 0.5)])
                assert offered == (favoured if favoured != mine_given else "model top"), (offered, favoured)
        assert checked >= 1
        rows = app.store.ranked("style", "evidence", limit=app.store.counts()["paintings"])
        devos = int(rows.loc[rows["path"] == CONFLICTING_PAIRS[0][0], "image_id"].iloc[0])
        assert not [line for _, line in app.evidence_card(devos, "style")[0] if line.startswith("Copies:")]
        assert "copies" not in set(app.store.evidence_of(devos, "style")["kind"])
    finally:
        app.close()


def test_labels_with_too_few_kinds_are_named_beside_the_count(trained, tmp_path):
    """Embedded without the file names' metadata, a painting keeps the artist kind only through its
    artist label: one without it has only the look. Such labels are never counted (two kinds must
    agree), and the count says how many there are, beside its number."""
    import pandas as pd

    from dashboard.service import Artlens, Paths
    from embeddings.evidence import KINDS
    store = tmp_path / "bare.duckdb"
    r = run_cli("embed", "--run", str(trained["run_dir"]), "--store", str(store), "--no-parse-names",
                "--cache-dir", str(trained["work"] / "cache"), "--projection", "pca")
    assert r.returncode == 0, r.stderr[-2000:]
    manifest = pd.read_csv(trained["manifest"], keep_default_na=False)
    no_artist = set(manifest.loc[(manifest["style"] != "") & (manifest["artist"] == ""), "path"])
    app = Artlens(Paths.from_store(store))
    try:
        few = app.store.labels_with_few_kinds("style", list(KINDS))
        summary, per_class = app.wrong_label_summary("style")
        depths = app.store.review_depths("style", app.review_default)
    finally:
        app.close()
    assert len(depths) > few >= len(no_artist) > 0, (few, len(no_artist), len(depths))
    assert summary.startswith("About **") and per_class is not None, summary
    assert f". {few:,} of these labels have fewer than two kinds of evidence" in summary, summary
    assert depths.loc[depths["path"].isin(no_artist), "wrong_weight"].sum() == 0
