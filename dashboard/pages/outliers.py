"""Outliers: every painting ranked by one detector, and near-duplicates whose labels disagree."""
from __future__ import annotations

import streamlit as st

from dashboard.service import Artlens
from embeddings.detectors import DETECTOR_HELP, DETECTORS
from dashboard.ui import page_setup, store_errors, detector_label, grid, show_thumb


def page_outliers(app: Artlens, task: str):
    c1, c2 = st.columns([1, 2])
    detector = c1.selectbox("detector", DETECTORS, key="out_detector", format_func=detector_label(app, task))
    c2.caption(DETECTOR_HELP[detector])
    min_score = None
    if detector == "confidence":
        thr = st.slider("show paintings whose given label has probability below", 0.0, 1.0, 0.5, 0.05, key="out_thr")
        min_score = 1.0 - thr
    total = app.store.count_scored(task, detector, min_score)
    if total == 0 and min_score is None:
        st.info(f"`{detector}` scores no {task} label in this store: it needs metadata these paintings lack, "
                "or it is no evidence about this task (a date says nothing of a genre).")
    else:
        ranked_grid(app, task, detector, total, min_score)
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


def ranked_grid(app: Artlens, task: str, detector: str, total: int, min_score: float | None):
    """One page of the paintings `detector` ranks, worst first."""
    per_page = 24
    pages = max(1, (total + per_page - 1) // per_page)
    page = st.number_input(f"page (of {pages}; {total:,} paintings)", 1, pages, 1, key="out_page")
    rows = app.store.ranked(task, detector, per_page, (page - 1) * per_page, min_score)
    cam = st.toggle("Grad-CAM: where the model finds the given label and its top class", key="out_cam")
    grid(app, task, rows, cols=4 if cam else 6, gradcam=cam,
         extra=lambda r: f"  \n**score:** {r['score']:.3f} · rank {r['rank']}" + (" · **flagged**" if r["flag"] else ""))


app, task, _ = page_setup("Outliers")
with store_errors():
    page_outliers(app, task)
