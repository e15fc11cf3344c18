"""Dashboard logic with Streamlit's AppTest, on a real store built from wikiart-mini paintings."""
from __future__ import annotations

import csv
import re
import io

import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from conftest import ROOT, run_cli
from db.tags import open_tag_log

APP = str(ROOT / "dashboard" / "app.py")


@pytest.fixture
def app_env(store, monkeypatch):
    monkeypatch.setenv("ARTLENS_STORE", str(store["store"]))
    monkeypatch.setenv("ARTLENS_INDEX", "")
    monkeypatch.setenv("ARTLENS_TAGS", str(store["tags"]))
    monkeypatch.setenv("ARTLENS_DATA_ROOT", "")
    st.cache_resource.clear()
    st.cache_data.clear()
    return store


def open_page(page: str, reviewer: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page(f"pages/{page.lower()}.py")
    if reviewer is not None:
        at.sidebar.text_input(key="reviewer").set_value(reviewer)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def test_every_page_renders(app_env):
    at = open_page("Overview")
    assert [m.label for m in at.metric][:1] == ["paintings"] and at.metric[0].value == f"{app_env['n']:,}"
    # the count of wrong labels says what it counts: agreement of independent kinds of evidence
    assert any("style labels look wrong (range" in m.value and "two independent kinds of evidence" in m.value
               and "the date" in m.value and "under-counted" in m.value for m in at.markdown)
    # ... and names the kinds it counted for that task: no date for genre
    at.sidebar.selectbox(key="task").set_value("genre").run()
    count = next(m.value for m in at.markdown if "genre labels look wrong (range" in m.value)
    # (the subset files the fish market under two genres: its copies are a kind here)
    assert "the artist's other paintings, the title, a copy filed under another label)" in count, count
    assert "the date" not in count, count
    at.sidebar.selectbox(key="task").set_value("style").run()
    assert len(at.dataframe) >= 1  # per-task test metrics
    # the count per class lists every class the labels use, not the first ten
    per_class = next(d.value for d in at.dataframe if "estimated_wrong" in d.value.columns)
    styles = pd.read_csv(app_env["manifest"], keep_default_na=False)["style"]
    assert len(per_class) == styles[styles != ""].nunique() > 10 and set(per_class["label"]) == set(styles) - {""}
    # image quality: one row per flag, with what it means and whether Review leaves it out
    assert "Image quality" in [h.value for h in at.subheader]
    quality = next(d.value for d in at.dataframe if "flag" in d.value.columns)
    assert list(quality["flag"])[:2] == ["small", "dark"] and quality["paintings"].sum() > 0
    at = open_page("Outliers")
    cards = [m.value for m in at.markdown if m.value.startswith("**given:**")]
    assert len(cards) == 24 and "rank 1" in cards[0]
    assert any("conflicting" in m.value for m in at.markdown)  # duplicate groups with conflicting labels
    for det in ("mahalanobis_margin", "artist", "period", "title", "evidence"):   # the detectors v5 added
        at.selectbox(key="out_detector").set_value(det).run()
        assert not at.exception, (det, [e.value for e in at.exception])
    # a date is no evidence about genre: the page says why the period detector ranks nothing there
    at.sidebar.selectbox(key="task").set_value("genre").run()
    at.selectbox(key="out_detector").set_value("period").run()
    assert any("scores no genre label" in i.value for i in at.info), [i.value for i in at.info]
    at.selectbox(key="out_detector").set_value("evidence").run()
    assert not any("scores no" in i.value for i in at.info)
    at = open_page("Explore")
    assert at.get("plotly_chart")
    at = open_page("Neighbours")
    at.text_input(key="nb_text").set_value("fish-market").run()
    assert not at.exception
    cards = [m.value for m in at.markdown if "similarity" in m.value]
    assert len(cards) == 12
    assert "1.000" in cards[0]  # the byte-identical twin is the nearest neighbour
    at = open_page("Export")
    assert len(at.get("download_button")) == 2
    assert any("`manifest_corrected.csv`" in c.value for c in at.caption) and not at.warning


def test_unsafe_image_paths_are_refused(app_env, tmp_path):
    from dashboard.service import safe_image_path
    root = app_env["root"]
    some = next(p for p in root.rglob("*.jpg"))
    assert safe_image_path(root, str(some.relative_to(root))) == some.resolve()
    outside = tmp_path / "secret.jpg"
    outside.write_bytes(b"x")
    (root / "link.jpg").symlink_to(outside)
    for bad in ("../secret.jpg", str(outside), "link.jpg", "Cubism/../../secret.jpg", ""):
        assert safe_image_path(root, bad) is None, bad


def test_a_manifest_beside_linked_class_folders_shows_its_images_and_nothing_else(tmp_path):
    """A data folder may be a manifest beside links to class folders kept elsewhere (what `make
    bench-noise` writes; training reads through the links): the dashboard shows what lies in
    those folders, and still nothing that a file link, a deeper link or `..` leads to."""
    from dashboard.service import safe_image_path
    shared, root = tmp_path / "shared", tmp_path / "copy"
    (shared / "Cubism").mkdir(parents=True)
    (shared / "Cubism" / "a.jpg").write_bytes(b"x")
    (tmp_path / "secret.jpg").write_bytes(b"x")
    (tmp_path / "private").mkdir()
    (tmp_path / "private" / "b.jpg").write_bytes(b"x")
    (shared / "Cubism" / "out.jpg").symlink_to(tmp_path / "secret.jpg")
    (shared / "Cubism" / "deeper").symlink_to(tmp_path / "private")
    root.mkdir()
    (root / "Cubism").symlink_to(shared / "Cubism")
    (root / "manifest.csv").write_text("path,style\nCubism/a.jpg,Cubism\n")
    assert safe_image_path(root, "Cubism/a.jpg") == (shared / "Cubism" / "a.jpg").resolve()
    for bad in ("Cubism/out.jpg", "Cubism/deeper/b.jpg", "Cubism/../../secret.jpg", "Cubism/../Cubism/a.jpg",
                "Cubism", "manifest.csv/..", str(shared / "Cubism" / "a.jpg")):
        assert safe_image_path(root, bad) is None, bad


def test_a_moved_image_folder_is_said_once_with_the_flag_that_mends_it(app_env, monkeypatch, tmp_path):
    """Images moved after `make embed` (or a store opened on another machine): every page says so
    once, names the folder the store recorded and the flag that points the dashboard elsewhere;
    pointed at the images, the pictures are back and the warning is gone."""
    moved = "is not there (moved, or on another machine)"
    at = open_page("Review")
    assert not [w for w in at.warning if moved in w.value]
    monkeypatch.setenv("ARTLENS_DATA_ROOT", str(tmp_path / "gone"))
    st.cache_resource.clear()
    at = open_page("Review")
    warned = [w.value for w in at.warning if moved in w.value]
    assert len(warned) == 1 and str(tmp_path / "gone") in warned[0] and "--data-root" in warned[0]
    assert any(w.value.startswith("image not available:") for w in at.warning)


def test_review_tag_persists_across_restart(app_env):
    at = open_page("Review", reviewer="ana")
    # the queue opens on the ranking `make embed` recorded as the default, and shows its top painting
    import duckdb
    con = duckdb.connect(str(app_env["store"]), read_only=True)
    default = con.execute("SELECT value FROM store_info WHERE key = 'review_default'").fetchone()[0]
    top = con.execute("""SELECT i.path FROM scores s JOIN images i USING (image_id)
                         WHERE s.task = 'style' AND s.detector = ? AND s.rank = 1""", [default]).fetchone()[0]
    con.close()
    assert default == "evidence" and at.selectbox(key="rv_detector").value == default
    assert at.multiselect(key="rv_leave_out").value == ["small", "dark", "washed_out", "blurred"]
    first = next(m.value for m in at.markdown if m.value.startswith("### Rank "))
    assert first.split("`")[1] == top and first.startswith("### Rank 1 · painting #")   # the rank, then the id
    # the card says why: one line per kind of evidence, each marked for or against the label
    why = next(m.value for m in at.markdown if m.value.startswith("**Why it is here:**"))
    assert "against the label" in why.lower() and "All kinds together, the label itself left out:" in why
    lines = next(m.value for m in at.markdown if "Model (never saw this label)" in m.value)
    assert "Look-alikes by other artists:" in lines and "Artist (" in lines
    assert re.search(r":(red|green|orange)\[[✗✓~] (against|supports|mixed)\] · Model", lines)
    path = first.split("`")[1]
    image_id = re.search(r"#(\d+)", first).group(1)
    # the label offered first is the one all kinds together favour (the card's combined line)
    con = duckdb.connect(str(app_env["store"]), read_only=True)
    favoured = con.execute("""SELECT c.name FROM evidence e JOIN classes c ON c.task = e.task AND c.class_index = e.best
                              WHERE e.task = 'style' AND e.kind = 'combined' AND e.image_id = ?""",
                           [int(image_id)]).fetchone()[0]
    con.close()
    given = next(m.value for m in at.markdown if m.value.startswith("**given style:**")).split("** ")[1]
    assert favoured != given and at.selectbox(key=f"rv_sugg_{image_id}").value == favoured
    at.text_input(key=f"rv_note_{image_id}").set_value("odd palette")
    button(at, "mislabel").click().run()
    assert not at.exception
    latest = open_tag_log(app_env["tags"]).latest()
    row = latest[(latest.path == path) & (latest.task == "style")].iloc[0]
    assert row.decision == "mislabel" and row.reviewer == "ana" and row.note == "odd palette"
    assert row.suggested_label == favoured
    # restart: fresh caches and session; the decision is still there and the queue moved on
    st.cache_resource.clear()
    at2 = open_page("Review", reviewer="ana")
    nxt = next(m.value for m in at2.markdown if m.value.startswith("### Rank "))
    assert path not in nxt
    assert at2.metric[0].value.startswith("1 /")
    assert any("your review so far confirms 1 of 1 reviewed (100%)" in c.value for c in at2.caption)
    # a later decision supersedes, history keeps both
    open_tag_log(app_env["tags"]).add(path, "style", "correct", "ben")
    hist = open_tag_log(app_env["tags"]).history()
    assert hist[hist.path == path].decision.tolist()[-2:] == ["mislabel", "correct"]
    assert open_tag_log(app_env["tags"]).latest().set_index(["path", "task"]).loc[(path, "style"), "decision"] == "correct"


def test_lasso_selection_tags_many(app_env):
    at = open_page("Explore", reviewer="lasso")
    ids = list(range(10, 40))
    at.session_state["explore_selection"] = ids  # what a lasso on the scatter stores
    at.run()
    assert any(f"Selection: {len(ids)} paintings" in h.value for h in at.subheader)
    at.selectbox(key="bulk_decision").set_value("unsure")
    button(at, f"Tag {len(ids)} paintings").click().run()
    assert not at.exception
    hist = open_tag_log(app_env["tags"]).history()
    mine = hist[hist.reviewer == "lasso"]
    assert len(mine) == len(ids) and set(mine.decision) == {"unsure"}


def test_export_files_parse(app_env, tmp_path):
    open_tag_log(app_env["tags"]).add(sorted(p.relative_to(app_env["root"]).as_posix()
                                       for p in app_env["root"].rglob("*.jpg"))[0],
                                "style", "mislabel", "exp", suggested_label="Rococo")
    r = run_cli("export", "--store", str(app_env["store"]), "--tags", str(app_env["tags"]),
                "--out", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    classes = {}
    for task in ("artist", "genre", "style"):
        names = [l.split(" ", 1)[1] for l in (tmp_path / "out" / f"{task}_class.txt").read_text().splitlines()]
        classes[task] = names
        for split in ("train", "val"):
            raw = (tmp_path / "out" / f"{task}_{split}.csv").read_bytes()
            assert raw.endswith(b"\r\n")
            rows = list(csv.reader(io.StringIO(raw.decode())))
            assert rows and all(len(r) == 2 and 0 <= int(r[1]) < len(names) for r in rows)
    style = dict(csv.reader(io.StringIO((tmp_path / "out" / "style_train.csv").read_text() +
                                        (tmp_path / "out" / "style_val.csv").read_text())))
    tagged = open_tag_log(app_env["tags"]).latest()
    tagged = tagged[(tagged.reviewer == "exp")].iloc[0]
    assert classes["style"][int(style[tagged.path])] == "Rococo"
    tags = list(csv.DictReader(io.StringIO((tmp_path / "out" / "tags.csv").read_text())))
    assert any(t["reviewer"] == "exp" for t in tags)
    # the store was embedded from a manifest: a copy of it comes back with the decision in its style column
    given = pd.read_csv(app_env["manifest"], dtype=str, keep_default_na=False)
    fixed = pd.read_csv(tmp_path / "out" / "manifest_corrected.csv", dtype=str, keep_default_na=False)
    changed = given["style"] != fixed["style"]
    assert list(fixed.columns) == list(given.columns) and len(fixed) == len(given)
    assert fixed.loc[changed, "path"].tolist() == [tagged.path] and fixed.loc[changed, "style"].tolist() == ["Rococo"]
    assert fixed.drop(columns="style").equals(given.drop(columns="style"))
    assert "manifest_corrected.csv: 1 labels corrected" in r.stdout, r.stdout
    # a manifest moved since `make embed` is one clear line, and --manifest names its new place
    moved = tmp_path / "moved.csv"
    moved.write_bytes(app_env["manifest"].read_bytes())
    r = run_cli("export", "--store", str(app_env["store"]), "--tags", str(app_env["tags"]),
                "--out", str(tmp_path / "out2"), "--manifest", str(tmp_path / "nowhere.csv"))
    assert r.returncode == 2 and "manifest" in r.stderr and "nowhere.csv is not there" in r.stderr, r.stderr
    r = run_cli("export", "--store", str(app_env["store"]), "--tags", str(app_env["tags"]),
                "--out", str(tmp_path / "out2"), "--manifest", str(moved))
    assert r.returncode == 0 and (tmp_path / "out2" / "moved_corrected.csv").is_file(), r.stderr


def test_the_export_page_says_when_the_manifest_has_moved(app_env, tmp_path, monkeypatch):
    """A manifest moved since `make embed`: the zip still holds the label CSVs and tags, and the page
    says why the corrected manifest is not in it and how to write it."""
    import shutil
    import zipfile

    import duckdb
    store = tmp_path / "artlens.duckdb"
    shutil.copy(app_env["store"], store)
    with duckdb.connect(str(store)) as con:
        con.execute("UPDATE store_info SET value = ? WHERE key = 'data'", [str(tmp_path / "gone" / "manifest.csv")])
    monkeypatch.setenv("ARTLENS_STORE", str(store))
    st.cache_resource.clear()
    at = open_page("Export")
    assert "gone/manifest.csv is not there (moved since `make embed`?)" in at.warning[0].value
    assert "--manifest PATH" in at.warning[0].value
    from dashboard.service import Artlens
    from db.store import Paths
    app = Artlens(Paths.from_store(store, None, app_env["tags"]))
    data, missing = app.corrected_labels_zip()
    app.close()
    assert missing and "tags.csv" in zipfile.ZipFile(io.BytesIO(data)).namelist()

def test_no_store_says_what_to_run(monkeypatch, tmp_path):
    monkeypatch.setenv("ARTLENS_STORE", str(tmp_path / "none.duckdb"))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert "make train embed" in at.error[0].value
    r = run_cli("dashboard", "--store", str(tmp_path / "none.duckdb"))
    assert r.returncode == 2 and "make train embed" in r.stderr


def test_explore_gives_every_class_its_own_colour(app_env):
    """11 styles and 24 artists on a 10-colour palette repeated colours; each class now has its own,
    and past the palette's size the rarest classes share one grey legend entry."""
    import json

    import pandas as pd
    at = open_page("Explore")
    at.sidebar.selectbox(key="task").set_value("artist").run()
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    names = [t["name"] for t in fig["data"]]
    colours = [t["marker"]["color"] for t in fig["data"]]
    assert len(names) >= 15 and len(set(colours)) == len(colours), list(zip(names, colours))
    from dashboard.palette import OTHER, OTHER_COLOUR, class_colours
    many = class_colours(pd.Series([f"artist {i}" for i in range(60) for _ in range(60 - i)]))
    assert len(many) == 48 and many[OTHER] == OTHER_COLOUR and "artist 0" in many and "artist 59" not in many
    assert len(set(many.values())) == 48

def _image_captions(at: AppTest) -> list[str]:
    return [img.caption for el in at.get("image") for img in el.proto.imgs]


def test_clicking_a_point_opens_that_painting_with_gradcam_and_tags(app_env):
    at = open_page("Explore", reviewer="clicker")
    at.session_state["explore_selection"] = [17]          # what a click on one point stores
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(h.value.startswith("#17 · ") for h in at.subheader)
    caps = _image_captions(at)
    assert any(c.startswith(("given:", "model's top:")) for c in caps), caps
    button(at, "mislabel").click().run()
    mine = open_tag_log(app_env["tags"]).latest().query("reviewer == 'clicker'")
    assert len(mine) == 1 and mine.iloc[0].decision == "mislabel"


def test_review_and_neighbours_show_gradcam(app_env):
    at = open_page("Review", reviewer="cam")
    caps = [c for c in _image_captions(at) if c.startswith(("given:", "model's top:"))]
    top = next(m.value for m in at.markdown if m.value.startswith("**model (top 3):**")).split("  \n")[1].split(":")[0]
    given = next(m.value for m in at.markdown if m.value.startswith("**given style:**")).split("** ")[1]
    assert top != given      # the top of the queue is a suspect: the heat maps contrast the two classes
    assert [c.split(" (")[0] for c in caps] == [f"given: {given}", f"model's top: {top}"], caps
    at = open_page("Outliers")
    at.toggle(key="out_cam").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    assert sum(c.startswith("given:") for c in _image_captions(at)) >= 12   # every card of the page


def test_spot_check_samples_every_depth_and_refines_the_estimate(app_env):
    """The spot check shows untagged paintings from every depth of the ranking; tagging them moves
    the estimate from the model's guess to what was observed."""
    at = open_page("Review", reviewer="spot")
    at.toggle(key="rv_spot").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("spot check · rank" in c.value for c in at.caption)
    from db.store import Paths
    from dashboard.service import Artlens
    app = Artlens(Paths.from_store(app_env["store"], tags=app_env["tags"]))
    try:
        queue = app.spot_check_queue("style", 30)
        ranks = queue["rank"].to_numpy()
        assert len(queue) == 30 and ranks.min() <= 50 and ranks.max() > 200     # top and deep of the queue
        before = app.wrong_label_refined("style")
        app.tag("style", queue, "correct", "spot")                              # a clean collection, say
        after = app.wrong_label_refined("style")
        assert after["refined"] and after["reviewed"] == before["reviewed"] + 30   # other tests may have tagged
        assert after["estimate"] < before["estimate"]
        assert (after["strata"]["source"] == "review").sum() >= 3
        assert not set(app.spot_check_queue("style", 30)["path"]) & set(queue["path"])   # it moves on
    finally:
        app.close()


def test_the_card_names_kinds_that_lean_the_same_way(app_env):
    """A painting can top the queue with no kind decisive alone: each leans to the same other class.
    The card's summary then names those kinds and the class, and says what all kinds give together,
    so a reviewer is never shown "no kind is clearly against" for a painting ranked first."""
    from db.store import Paths
    from dashboard.service import Artlens
    app = Artlens(Paths.from_store(app_env["store"], tags=app_env["tags"]))
    try:
        queue = app.store.ranked("style", "evidence", limit=60)
        checked = 0
        for image_id in queue["image_id"]:
            ev = app.store.evidence_of(int(image_id), "style")
            combined = ev[ev["kind"] == "combined"].iloc[0]
            lines, summary = app.evidence_card(int(image_id), "style")
            assert summary.endswith(combined["line"])
            assert combined["line"].startswith("All kinds together, the label itself left out:")
            assert not any(line.startswith("All kinds") for _, line in lines)    # the summary, not a line
            if combined["verdict"] == "supports":
                continue
            leaning = ev[(ev["verdict"] == "mixed") & (ev["best"] == combined["best"])
                         & ev["kind"].isin(["artist", "period", "title"])]
            for kind in leaning["kind"]:
                assert f"the {kind}" in summary and f"{combined['best']} likeliest" in summary, (summary, kind)
                checked += 1
            if len(leaning):      # named apart from the kinds against, which the first sentence lists
                assert ". Not decisive alone, " in summary or summary.startswith("Not decisive alone, "), summary
        assert checked > 0        # the small store has such paintings: the rule above was exercised
    finally:
        app.close()


def test_stopping_the_dashboard_frees_its_port(store):
    """`python -m dashboard` is the Streamlit server itself (exec), so one SIGTERM stops the server
    and frees the port; a waiting wrapper died alone and left Streamlit listening."""
    import socket
    from bench.browser import start_dashboard
    proc, url = start_dashboard(store["store"], store["tags"])
    port = int(url.rsplit(":", 1)[1])
    assert "streamlit" in " ".join(open(f"/proc/{proc.pid}/cmdline").read().split("\0"))
    proc.terminate()
    proc.wait(timeout=30)
    with socket.socket() as s:   # nothing listens any more: the port binds again
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))


def test_a_shared_link_opens_its_task_and_painting(app_env):
    """`/review?task=genre&painting=N` opens painting N for the genre task, on any page switch, with
    its evidence lines; the Review card carries such a link for the painting it shows, and 'back to
    the queue' drops it."""
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["task"] = "genre"
    at.query_params["painting"] = "5"
    at.run()
    at.switch_page("pages/review.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.sidebar.selectbox(key="task").value == "genre"
    assert at.subheader[0].value.startswith("#5 · ")
    # the colleague who opens the link sees why the painting was sent: the card's evidence lines
    why = next(m.value for m in at.markdown if m.value.startswith("**What the evidence says:**"))
    assert "All kinds together, the label itself left out:" in why
    lines = next(m.value for m in at.markdown if "Model (never saw this label)" in m.value)
    assert "Look-alikes" in lines
    assert re.search(r":(red|green|orange)\[[✗✓~] (against|supports|mixed)\] · Model", lines)
    button(at, "back to the queue").click().run()
    assert "painting" not in at.query_params and at.query_params["task"] == "genre"
    links = [c.value for c in at.caption if "link to this painting" in c.value]
    assert links and re.search(r"\./review\?task=genre&painting=\d+", links[0]), links


def test_two_dashboards_share_a_postgresql_tag_log(app_env, postgres_url, monkeypatch):
    """A team: two dashboard sessions (as on two machines) over one PostgreSQL tag log. A decision
    made in one is in force in the other, and the Export page lists it."""
    monkeypatch.setenv("ARTLENS_TAGS", postgres_url)
    st.cache_resource.clear()
    ana = open_page("Review", reviewer="ana")
    first = next(m.value for m in ana.markdown if m.value.startswith("### Rank "))
    path = first.split("`")[1]
    button(ana, "mislabel").click().run()
    assert not ana.exception, [e.value for e in ana.exception]
    st.cache_resource.clear()   # the second machine opens its own connection
    ben = open_page("Review", reviewer="ben")
    assert path not in next(m.value for m in ben.markdown if m.value.startswith("### Rank "))
    assert ben.metric[0].value.startswith("1 /")
    latest = open_tag_log(postgres_url).latest()
    assert latest[["path", "decision", "reviewer"]].values.tolist() == [[path, "mislabel", "ana"]]
    export = open_page("Export")
    assert export.metric[0].value == "1"


def test_a_tag_log_out_of_reach_is_one_line_on_each_page_that_reads_it(app_env, monkeypatch, tmp_path):
    """A team's PostgreSQL out of reach (the VPN down): a page that reads decisions says so in one
    line, without the password and without a traceback, also where a shared link's first request runs
    the page file alone; a page that reads none still works. (Each attempt waits out the log's 30 s
    of retries, so two pages stand for the six.)"""
    monkeypatch.setenv("ARTLENS_TAGS", f"postgresql://ana:secret@/artlens?host={tmp_path}&port=1")
    st.cache_resource.clear()
    for page in ("Review", "Outliers"):
        for at in (open_page(page, reviewer="ana"),
                   AppTest.from_file(str(ROOT / "dashboard" / "pages" / f"{page.lower()}.py"), default_timeout=120)):
            at.run()
            assert not at.exception, (page, [e.value for e in at.exception])
            errors = [e.value for e in at.error]
            if page in ("Outliers", "Neighbours"):
                assert not errors and at.title[0].value == page, (page, errors)
            else:
                assert len(errors) == 1 and "tag log postgresql://ana:***@/artlens" in errors[0], (page, errors)
                assert "cannot connect" in errors[0] and "secret" not in errors[0]


def test_the_card_says_how_often_the_evidence_doubts_the_labels_class(app_env):
    """Some classes the kinds read poorly (a study is read as the landscape it shows): each card
    says for what share of its class's labels, and of all labels, the evidence finds another class
    likelier, so a reviewer knows how much its doubt about this label is worth. The shares it
    prints are those of the store's own combined evidence."""
    import numpy as np
    from db.store import Store
    store = Store(app_env["store"])
    try:
        every = store.ranked("style", "evidence", limit=100_000)
        combined = [store.evidence_of(int(r.image_id), "style").query("kind == 'combined'").iloc[0]
                    for r in every.itertuples()]
        doubted = {}
        for r, c in zip(every.itertuples(), combined):
            doubted.setdefault(r.given, []).append(c["best"] != r.given)
        everyone = np.mean([d for ds in doubted.values() for d in ds])
        assert 0 < everyone < 1
        for r, c in zip(every.head(15).itertuples(), combined):
            line = c["line"]
            share = np.mean(doubted[r.given])
            assert line.endswith(f". Together they read {share:.0%} of the {r.given} labels here as another class "
                                 f"({everyone:.0%} of all labels)"), line
    finally:
        store.close()


def test_a_picture_filed_under_two_genres_shows_its_copy_on_the_card(app_env):
    """The fish market is filed as Frans Snyders' still life and Cornelis de Vos's genre painting:
    opened for genre, each card carries the `copies` line, marked against, naming the other file,
    and the tag form offers what all kinds together favour."""
    import duckdb
    con = duckdb.connect(str(app_env["store"]), read_only=True)
    ids = dict(con.execute("""SELECT path, image_id FROM images WHERE path IN
        ('Baroque/frans-snyders_fish-market.jpg', 'Baroque/cornelis-de-vos_fish-market.jpg')""").fetchall())
    favoured = dict(con.execute("""SELECT e.image_id, c.name FROM evidence e JOIN classes c
        ON c.task = e.task AND c.class_index = e.best WHERE e.task = 'genre' AND e.kind = 'combined'""").fetchall())
    con.close()
    assert len(ids) == 2
    for mine, other in (("snyders", "cornelis-de-vos"), ("cornelis-de-vos", "snyders")):
        image_id = next(i for p, i in ids.items() if mine in p)
        other_path = next(p for p in ids if other in p)
        at = AppTest.from_file(APP, default_timeout=120)
        at.query_params["task"] = "genre"
        at.query_params["painting"] = str(image_id)
        at.run()
        at.switch_page("pages/review.py").run()
        assert not at.exception, [e.value for e in at.exception]
        lines = next(m.value for m in at.markdown if "Model (never saw this label)" in m.value)
        copy_line = next(line for line in lines.split("  \n") if "Copies:" in line)
        assert copy_line.startswith(":red[✗ against] · Copies: the same picture is filed again here under ")
        assert f"The copy: `{other_path}`" in copy_line, copy_line
        if mine == "snyders":      # still_life, which the evidence doubts
            assert favoured[image_id] != "still_life"
            assert at.selectbox(key=f"open_sugg_{image_id}").value == favoured[image_id]
