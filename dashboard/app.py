"""artlens dashboard (Streamlit). UI only: every query goes through db/, every computation through
embeddings/ and trainer/. Start it with `make dashboard` (or `python -m dashboard`).

Store location: ARTLENS_STORE / ARTLENS_INDEX / ARTLENS_TAGS / ARTLENS_DATA_ROOT environment
variables (set by `python -m dashboard`), default ./artlens.duckdb.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run dashboard/app.py` puts dashboard/ first, not the repo
    sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402
import plotly.express as px  # noqa: E402
import streamlit as st  # noqa: E402

from db.schema import DECISIONS  # noqa: E402
from dashboard.palette import OTHER, class_colours  # noqa: E402
from db.store import Paths, StoreError  # noqa: E402
from embeddings.scores import DETECTORS  # noqa: E402
from embeddings.service import UPLOAD_MAX_BYTES, Artlens, thumbnail_bytes  # noqa: E402
from trainer.plots import top_confusion  # noqa: E402

PAGES = ("Overview", "Explore", "Neighbours", "Outliers", "Review", "Export")
DETECTOR_HELP = {
    "confidence": "1 − p(given label)", "margin": "best other class − p(given)",
    "centroid": "cosine distance to the given class centroid",
    "centroid_margin": "own-centroid distance − nearest other centroid",
    "mahalanobis": "Mahalanobis distance to the class mean (shared Ledoit-Wolf covariance): how unusual, not "
                   "whether the label fits",
    "mahalanobis_margin": "Mahalanobis distance to the given class's mean − to the nearest other class's",
    "zscore": "z-score of the own-centroid distance (flag > 3)",
    "knn": "share of the 10 nearest neighbours (cross-fitted head's embedding) with another label",
    "knn_backbone": "share of the 10 nearest neighbours in frozen-backbone features (no label used) with another label",
    "cross_task": "−log p(given label | the painting's other label), from the other paintings only "
                  "(style given artist, genre given style)",
    "confident_learning": "confident learning (per-class thresholds), flagged first",
    "consensus": "mean percentile rank over the model and picture detectors (not artist, period, title)",
    "ensemble": "mean percentile rank of one detector per kind of evidence: centroid_margin (cross-fitted model), "
                "knn_backbone (label-free features), cross_task (other labels)",
    "artist": "largest log Bayes factor of another class over the given one (each against its share of the "
              "collection), from the artist's other paintings, nearer dates weighing more",
    "period": "largest log Bayes factor of another class over the given one, from other paintings dated near this one",
    "title": "largest log Bayes factor of another class over the given one, from a cross-fitted text model over titles",
    "evidence": "the kinds of evidence (look, artist, period, title) combined: high only where several agree "
                "another label fits better; the Review default",
}
MAX_POINTS = 30_000  # scatter points drawn at once; more are sampled (the rest stay queryable)

st.set_page_config(page_title="artlens", layout="wide")


def store_signature(path: Path) -> tuple:
    """Changes whenever `make embed` swaps a new store in (new inode / mtime)."""
    s = path.stat()
    return (s.st_ino, s.st_mtime_ns)


@st.cache_resource(show_spinner="opening the store")
def open_artlens(store: str, index: str, tags: str, data_root: str, signature: tuple) -> Artlens:
    return Artlens(Paths.from_store(store, index or None, tags or None), data_root or None)


@st.cache_resource(show_spinner="loading the model")
def open_embedder(run_dir: str):
    from embeddings.export import Embedder
    return Embedder(Path(run_dir))


@st.cache_data(show_spinner="Grad-CAM", max_entries=500)
def cached_gradcam(_app: Artlens, run_id: str, path: str, task: str, given: str | None) -> list[tuple[str, bytes]]:
    # cached per painting, task, given class and run (run_id is part of the key)
    return _app.gradcam_panels(open_embedder(_app.info["run_dir"]), path, task, given)


def show_gradcam(app: Artlens, path: str, task: str, given: str | None, container=st):
    """Grad-CAM panels (given label, model's top class) side by side, or one line saying why not."""
    from trainer.cli import UserError
    try:
        panels = cached_gradcam(app, app.run_id, path, task, given)
    except UserError as e:
        container.caption(f"Grad-CAM unavailable: {e}")
        return
    if not panels:
        container.caption(f"Grad-CAM unavailable: image not readable: {path}")
        return
    for col, (caption, png) in zip(container.columns(len(panels)), panels):
        col.image(png, caption=caption, width="stretch")


@st.cache_data(show_spinner=False, max_entries=2000)
def thumb(path: str, size: int) -> bytes:
    return thumbnail_bytes(Path(path), size)


@st.cache_data(show_spinner=False)
def cached_points(_app: Artlens, run_key: tuple, task: str, method: str, detector: str, tags_version: int):
    return _app.store.points(task, method, detector, _app.tags.latest())


def show_thumb(app: Artlens, path: str, size: int = 220, caption: str | None = None, container=st):
    f = app.image_file(path)
    if f is None:
        container.warning(f"image not available: {path}")
    else:
        container.image(thumb(str(f), size), caption=caption, width="stretch")


def card_text(app: Artlens, task: str, row: dict) -> str:
    top = " · ".join(f"{n} {p:.2f}" for n, p in app.top3_text(task, row))
    return f"**given:** {row.get('given') or '—'}  \n**model:** {top}"


def grid(app: Artlens, task: str, rows: pd.DataFrame, cols: int = 6, extra=None, gradcam: bool = False):
    for start in range(0, len(rows), cols):
        columns = st.columns(cols)
        for col, (_, r) in zip(columns, rows.iloc[start:start + cols].iterrows()):
            if gradcam:
                show_gradcam(app, r["path"], task, r.get("given"), container=col)
            else:
                show_thumb(app, r["path"], container=col)
            col.markdown(card_text(app, task, r.to_dict()) + (extra(r) if extra else ""))
            col.caption(f"#{r['image_id']} {r['path']}")


# ------------------------------------------------------------------ pages
def page_overview(app: Artlens, task: str):
    c = app.store.counts()
    cols = st.columns(5)
    for col, (k, v) in zip(cols, [("paintings", c["paintings"]), ("train", c["train"]), ("val", c["val"]),
                                  ("test", c["test"]), ("embedding dim", int(app.info.get("embedding_dim", 0)))]):
        col.metric(k, f"{v:,}")
    run = app.run
    st.caption(f"run **{app.run_id}** · {run.get('arch')} on {run.get('backbone')} · weights: {run.get('weights')} · "
               f"index: {app.info.get('index_kind')} · scores: "
               + (f"cross-fitted for every painting ({app.info.get('folds')} folds: none from a model that "
                  "saw its label)" if app.info.get("cross_fitted") == "true"
                  else "in sample (trained with --folds 0: the model saw the train labels)")
               + f" · review default: **{app.review_default}**")
    applied = app.applied_tags_text()
    if applied:
        st.info(applied)
    summary, per_class = app.wrong_label_summary(task)
    if summary:
        st.subheader("How many labels look wrong")
        st.markdown(summary)
        st.dataframe(per_class.head(10).round(1), hide_index=True)
    test = run.get("metrics", {}).get("test", {})
    if test:
        st.subheader("Held-out test split")
        st.dataframe(pd.DataFrame([{"task": t, "n": m["n"], "top-1": m["top1"], "top-5": m["top5"],
                                    "macro F1": m["macro_f1"], "weighted F1": m["weighted_f1"]}
                                   for t, m in test.items()]).style.format(precision=3), hide_index=True)
    left, right = st.columns(2)
    dist = app.store.label_distribution(task)
    left.plotly_chart(px.bar(dist, x="label", y="paintings", title=f"{task} labels"), key="dist")
    if task in test:
        m = test[task]
        cm, names = top_confusion(m["confusion_matrix"], m["classes"], st.session_state.get("cm_k", 10))
        right.plotly_chart(px.imshow(cm, x=names, y=names, text_auto=True, color_continuous_scale="Blues",
                                     labels=dict(x="predicted", y="given", color="paintings"),
                                     title=f"{task}: confusion, {len(names)} most frequent classes"), key="cm")
        rec = pd.DataFrame({"class": list(m["per_class_recall"]), "recall": list(m["per_class_recall"].values())})
        st.plotly_chart(px.bar(rec, x="class", y="recall", title=f"{task}: per-class recall (test)"), key="recall")


def page_explore(app: Artlens, task: str, reviewer: str):
    methods = app.store.projection_methods()
    c1, c2, c3 = st.columns(3)
    method = c1.selectbox("projection", methods, key="ex_method")
    color = c2.selectbox("colour by", ["given", "predicted", "agreement", "tag", *[f"score: {d}" for d in DETECTORS]],
                         key="ex_color")
    detector = color.split(": ")[1] if color.startswith("score: ") else "consensus"
    tags_version = len(app.tags.history())
    pts = cached_points(app, (app.run_id, str(app.paths.store)), task, method, detector, tags_version)
    if pts["x"].isna().all() or len(pts) == 0:
        st.info(f"no {method} projection in this store; choose another")
        return
    f1, f2, f3 = st.columns(3)
    classes = f1.multiselect("given class", sorted(pts["given"].unique()), key="ex_class")
    splits = f2.multiselect("split", sorted(pts["split"].unique()), key="ex_split")
    tagsel = f3.multiselect("tag", sorted(pts["tag"].unique()), key="ex_tag")
    view = pts
    if classes:
        view = view[view["given"].isin(classes)]
    if splits:
        view = view[view["split"].isin(splits)]
    if tagsel:
        view = view[view["tag"].isin(tagsel)]
    shown = view.sample(MAX_POINTS, random_state=0) if len(view) > MAX_POINTS else view
    if len(view) > MAX_POINTS:
        st.caption(f"showing a sample of {MAX_POINTS:,} of {len(view):,} paintings; filter to see all")
    col = "score" if color.startswith("score: ") else color
    colour_map = None
    if col in ("given", "predicted"):   # a colour column of its own: the hover keeps every class name
        colour_map = class_colours(pd.concat([pts["given"], pts["predicted"]]).fillna("(none)"))
        names = shown[col].fillna("(none)")
        shown = shown.assign(colour=names.where(names.isin(list(colour_map)), OTHER))
    fig = px.scatter(shown, x="x", y="y", color="colour" if colour_map else col, render_mode="webgl",
                     custom_data=["image_id"], labels={"colour": col},
                     hover_data={"path": True, "given": True, "predicted": True, "x": False, "y": False},
                     color_discrete_map=colour_map, height=620)
    fig.update_traces(marker=dict(size=5))
    fig.update_layout(legend=dict(itemsizing="constant"))   # click opens a point; lasso and box in the toolbar
    event = st.plotly_chart(fig, key="explore_chart", on_select="rerun", selection_mode=("points", "box", "lasso"))
    picked = [int(p["customdata"][0]) for p in (event.selection.points if event and event.selection else [])
              if p.get("customdata")]
    if picked:
        st.session_state["explore_selection"] = picked
    selected = st.session_state.get("explore_selection", [])
    if len(selected) == 1:   # a click on one point opens that painting
        painting_panel(app, task, selected[0], reviewer)
        return
    st.subheader(f"Selection: {len(selected)} paintings")
    if not selected:
        st.caption("click a point to open that painting; draw a lasso or box to select many")
        return
    rows = app.store.paintings(task, selected)
    with st.form("bulk_tag"):
        a, b, c = st.columns(3)
        decision = a.selectbox("tag all selected as", DECISIONS, key="bulk_decision")
        suggested = b.selectbox("suggested label", ["(none)", *app.class_names(task)], key="bulk_suggested")
        note = c.text_input("note", key="bulk_note")
        if st.form_submit_button(f"Tag {len(rows)} paintings"):
            if not reviewer.strip():
                st.error("enter your reviewer name in the sidebar first")
            else:
                ids = app.tag(task, rows, decision, reviewer, None if suggested == "(none)" else suggested, note)
                st.success(f"tagged {len(ids)} paintings as {decision}")
    grid(app, task, rows.head(60))
    if len(rows) > 60:
        st.caption(f"first 60 of {len(rows)} shown")


def painting_panel(app: Artlens, task: str, image_id: int, reviewer: str):
    """One painting opened from the plot: image, labels, top 3, Grad-CAM and tag buttons."""
    rows = app.store.paintings(task, [image_id])
    if rows.empty:
        st.warning(f"painting #{image_id} has no {task} label")
        return
    r = rows.iloc[0].to_dict()
    st.subheader(f"#{image_id} · {r['path']}")
    left, right = st.columns([2, 3])
    show_thumb(app, r["path"], 480, container=left)
    right.dataframe(app.store.labels_of(image_id), hide_index=True)
    top = app.top3_text(task, r)
    right.markdown("**model (top 3):** " + " · ".join(f"{n} {p:.2f}" for n, p in top))
    show_gradcam(app, r["path"], task, r["given"], container=right)
    decision, suggested, note, _ = decision_form(right, "open", image_id, app.class_names(task), top)
    if decision:
        if not reviewer.strip():
            right.error("enter your reviewer name in the sidebar first")
        else:
            app.tag(task, rows, decision, reviewer, suggested if decision != "correct" else None, note)
            right.success(f"#{image_id} tagged {decision}")


def decision_form(container, prefix: str, image_id: int, names: list[str], top: list, shortcuts: bool = False):
    """The one-painting tag form (suggested label defaulting to the model's top class, note, one
    button per decision; with `shortcuts` the Review page's keys and a skip button).
    Returns (the decision clicked or None, suggested label, note, skip clicked)."""
    keys = ("m", "o", "u") if shortcuts else (None, None, None)
    with container.form(f"{prefix}_{image_id}", clear_on_submit=True):
        suggested = st.selectbox("suggested label", names, index=names.index(top[0][0]) if top else 0,
                                 key=f"{prefix}_sugg_{image_id}")
        note = st.text_input("note", key=f"{prefix}_note_{image_id}")
        row = st.container(horizontal=True)
        clicked = [d for d, k in zip(DECISIONS, keys)
                   if row.form_submit_button(d, shortcut=k, type="primary" if d == "mislabel" else "secondary")]
        skip = row.form_submit_button("skip", shortcut="s") if shortcuts else False
    return (clicked[0] if clicked else None), suggested, note, skip


def page_neighbours(app: Artlens, task: str):
    k = st.slider("neighbours", 3, 30, 12, key="nb_k")
    how = st.radio("query", ["search", "id", "upload"], horizontal=True, key="nb_how")
    query_id, vec, query_img = None, None, None
    if how == "search":
        text = st.text_input("path, artist or title contains", key="nb_text")
        hits = app.store.search(text, 200) if text else pd.DataFrame()
        if text and hits.empty:
            st.info("no painting matches")
        elif not hits.empty:
            choice = st.selectbox("painting", hits["path"].tolist(), key="nb_pick")
            query_id = int(hits.loc[hits["path"] == choice, "image_id"].iloc[0])
    elif how == "id":
        query_id = int(st.number_input("image id", min_value=0, step=1, key="nb_id"))
    else:
        up = st.file_uploader("image (JPEG or PNG)", type=["jpg", "jpeg", "png"], key="nb_upload")
        if up is not None:
            if up.size > UPLOAD_MAX_BYTES:
                st.error(f"{up.name} is {up.size / 1e6:.1f} MB; the limit is {UPLOAD_MAX_BYTES / 1e6:.0f} MB")
                return
            from embeddings.service import decode_upload
            try:
                query_img = decode_upload(up.getvalue())
            except ValueError as e:
                st.error(f"{up.name}: {e}")
                return
            emb, probs = open_embedder(app.info["run_dir"])([query_img])
            vec = emb
            st.image(query_img, caption="uploaded", width=260)
            names = app.class_names(task)
            top = probs[task][0].argsort()[::-1][:3]
            st.markdown("**model:** " + " · ".join(f"{names[i]} {probs[task][0][i]:.2f}" for i in top))
    if query_id is not None:
        info = app.store.image_by_id(query_id)
        if info is None:
            st.error(f"no painting with id {query_id}")
            return
        c1, c2 = st.columns([1, 2])
        show_thumb(app, info["path"], 320, container=c1)
        c2.markdown(f"**{info['path']}** (#{query_id}, {info['split']})")
        c2.dataframe(app.store.labels_of(query_id), hide_index=True)
        show_gradcam(app, info["path"], task, app.store.given_label(info["path"], task), container=c2)
        nb = app.neighbours(query_id, k)
    elif vec is not None:
        nb = app.neighbours_of_vector(vec, k)
    else:
        return
    table = app.neighbour_table(task, nb)
    st.subheader(f"{len(table)} nearest paintings")
    grid(app, task, table, extra=lambda r: f"  \n**similarity:** {r['similarity']:.3f}")


def detector_label(app: Artlens, task: str):
    auroc = app.store.benchmark_auroc(task)
    return lambda d: f"{d} (AUROC {auroc[d]:.2f})" if d in auroc else d


def page_outliers(app: Artlens, task: str):
    c1, c2 = st.columns([1, 2])
    detector = c1.selectbox("detector", DETECTORS, key="out_detector", format_func=detector_label(app, task))
    c2.caption(DETECTOR_HELP[detector])
    min_score = None
    if detector == "confidence":
        thr = st.slider("show paintings whose given label has probability below", 0.0, 1.0, 0.5, 0.05, key="out_thr")
        min_score = 1.0 - thr
    total = app.store.count_scored(task, detector, min_score)
    per_page = 24
    pages = max(1, (total + per_page - 1) // per_page)
    page = st.number_input(f"page (of {pages}; {total:,} paintings)", 1, pages, 1, key="out_page")
    rows = app.store.ranked(task, detector, per_page, (page - 1) * per_page, min_score)
    cam = st.toggle("Grad-CAM: where the model finds the given label and its top class", key="out_cam")
    grid(app, task, rows, cols=4 if cam else 6, gradcam=cam,
         extra=lambda r: f"  \n**score:** {r['score']:.3f} · rank {r['rank']}" + (" · **flagged**" if r["flag"] else ""))
    st.subheader("Near-duplicates with conflicting labels")
    dup = app.store.duplicate_groups(conflicting_only=True)
    if dup.empty:
        st.caption("none found")
    for gid, g in dup.groupby("group_id", sort=True):
        st.markdown(f"**group {gid}** — conflicting: {g['conflicting_tasks'].iloc[0]} "
                    f"(similarity {g['similarity'].max():.3f})")
        cols = st.columns(max(len(g), 2))
        for col, (_, r) in zip(cols, g.iterrows()):
            show_thumb(app, r["path"], 200, container=col)
            col.caption(f"{r['path']}  \n{r['labels']}")


def page_review(app: Artlens, task: str, reviewer: str):
    c1, c2, c3 = st.columns(3)
    detector = c1.selectbox("queue ranked by", DETECTORS, index=DETECTORS.index(app.review_default), key="rv_detector",
                            format_func=detector_label(app, task))
    queue_size = int(c2.number_input("queue length", 10, 5000, 200, step=10, key="rv_size"))
    spot = st.toggle("spot check: random paintings from every depth of the queue", key="rv_spot",
                     help="Most-suspicious-first finds mislabels fastest; a spot check tells how many are left "
                          "deeper down. Each decision replaces the model's guess at its depth in the estimate below.")
    skipped = st.session_state.setdefault("rv_skipped", [])
    if spot:
        queue = app.spot_check_queue(task, queue_size + len(skipped))
    else:
        queue = app.review_queue(task, detector, queue_size)
        prog = app.review_progress(task, detector, queue_size)
        c3.metric("reviewed / queued", f"{prog['reviewed']} / {prog['queued']}",
                  help="decisions in force for paintings of this queue")
        st.progress(prog["reviewed"] / max(prog["queued"], 1))
        if prog["reviewed"]:
            st.caption(f"precision so far: {prog['precision']:.0%} of reviewed were tagged mislabel")
    queue = queue[~queue["path"].isin(skipped)]
    summary, _ = app.wrong_label_summary(task)
    if summary:
        st.caption(summary)
    if not reviewer.strip():
        st.warning("enter your reviewer name in the sidebar to tag")
    if queue.empty:
        st.success("queue done: every painting in it has a decision")
        return
    r = queue.iloc[0].to_dict()
    left, right = st.columns([3, 2])
    show_thumb(app, r["path"], 720, container=left)
    left.markdown("**Where the model looks** (Grad-CAM; red = strongest evidence for that class)")
    show_gradcam(app, r["path"], task, r["given"], container=left)
    right.markdown(f"### #{r['image_id']}  \n`{r['path']}`")
    right.markdown(f"**given {task}:** {r['given']}")
    top = app.top3_text(task, r)
    right.markdown("**model (top 3):**  \n" + "  \n".join(f"{n}: {p:.2f}" for n, p in top))
    lines, summary = app.evidence_card(int(r["image_id"]), task)
    if lines:
        right.markdown(f"**Why it is here:** {summary}")
        mark = {"against": ":red[✗ against]", "supports": ":green[✓ supports]", "mixed": ":orange[~ mixed]"}
        right.markdown("  \n".join(f"{mark.get(v, v)} · {line}" for v, line in lines))
    right.caption((f"spot check · rank {r['rank']} in the {app.review_default} ranking" if spot else
                   f"{detector} score {r['score']:.3f} · rank {r['rank']}") + f" · probabilities: {r['source']}")
    d, suggested, note, skip = decision_form(right, "rv", r["image_id"], app.class_names(task), top, shortcuts=True)
    right.caption("keys: **m** mislabel · **o** correct (ok) · **u** unsure · **s** skip")
    if d:
        if not reviewer.strip():
            right.error("enter your reviewer name in the sidebar first")
        else:
            app.tag(task, pd.DataFrame([r]), d, reviewer, suggested if d != "correct" else None, note)
            st.session_state["rv_last"] = f"#{r['image_id']} tagged {d}"
            st.rerun()
    if skip:
        skipped.append(r["path"])
        st.rerun()
    if st.session_state.get("rv_last"):
        right.success(st.session_state["rv_last"])
    st.subheader("6 nearest neighbours")
    grid(app, task, app.neighbour_table(task, app.neighbours(int(r["image_id"]), 6)),
         extra=lambda x: f"  \n**similarity:** {x['similarity']:.3f}")


def page_export(app: Artlens):
    hist = app.tags.history()
    st.metric("decisions recorded", len(hist))
    st.dataframe(app.tags.latest(), hide_index=True)
    st.download_button("tags (full history) as CSV", app.tags_csv(), "artlens_tags.csv", "text/csv", key="dl_tags")
    st.download_button("corrected labels (ArtGAN layout, zip)", app.corrected_labels_zip(),
                       "artlens_corrected_labels.zip", "application/zip", key="dl_zip")
    st.caption("Corrected CSVs replace a given label with the suggested one wherever the latest decision is "
               "`mislabel`. Same files from the shell: `python -m dashboard.export --out DIR`.")


def main():
    store = os.environ.get("ARTLENS_STORE", "artlens.duckdb")
    if not Path(store).is_file():
        st.error(f"No store at `{store}`. Run `make train embed` first, then reload this page.")
        st.stop()
    try:
        app = open_artlens(store, os.environ.get("ARTLENS_INDEX", ""), os.environ.get("ARTLENS_TAGS", ""),
                           os.environ.get("ARTLENS_DATA_ROOT", ""), store_signature(Path(store)))
    except StoreError as e:
        st.error(str(e))
        st.stop()
    st.sidebar.title("artlens")
    page = st.sidebar.radio("page", PAGES, key="page")
    tasks = app.store.tasks()
    task = st.sidebar.selectbox("task", tasks, index=tasks.index("style") if "style" in tasks else 0, key="task")
    reviewer = st.sidebar.text_input("reviewer name", key="reviewer")
    st.sidebar.caption(f"{app.info.get('paintings')} paintings · run {app.run_id}")
    st.title(page)
    try:
        if page == "Overview":
            page_overview(app, task)
        elif page == "Explore":
            page_explore(app, task, reviewer)
        elif page == "Neighbours":
            page_neighbours(app, task)
        elif page == "Outliers":
            page_outliers(app, task)
        elif page == "Review":
            page_review(app, task, reviewer)
        else:
            page_export(app)
    except StoreError as e:
        st.error(str(e))


main()
