"""Review: the queue, most suspicious first, one painting at a time with why it is there."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard.service import Artlens
from embeddings.detectors import DETECTORS
from embeddings.quality import FLAG_NAMES as QUALITY_NAMES
from embeddings.quality import PHOTO_DEFECTS
from dashboard.ui import (page_setup, store_errors, decision_form, detector_label, grid, painting_link, painting_panel,
                          painting_param, show_evidence, show_gradcam, show_other_spellings, show_thumb)


def page_review(app: Artlens, task: str, reviewer: str):
    linked = painting_param()
    if linked is not None:   # a shared link to one painting: it, then back to the queue
        painting_panel(app, task, linked, reviewer)
        if st.button("back to the queue", key="rv_back"):
            del st.query_params["painting"]
            st.rerun()
        return
    c1, c2, c3 = st.columns(3)
    detector = c1.selectbox("queue ranked by", DETECTORS, index=DETECTORS.index(app.review_default), key="rv_detector",
                            format_func=detector_label(app, task))
    queue_size = int(c2.number_input("queue length", 10, 5000, 200, step=10, key="rv_size"))
    leave_out = st.multiselect("leave out paintings whose image is flagged", QUALITY_NAMES, list(PHOTO_DEFECTS),
                               key="rv_leave_out", help="image quality flags (Overview lists them): a dark or "
                               "blurred photograph can read as a style; empty = every painting")
    spot = st.toggle("spot check: random paintings from every depth of the queue", key="rv_spot",
                     help="Most-suspicious-first finds mislabels fastest; a spot check tells how many are left "
                          "deeper down. Each decision replaces the model's guess at its depth in the estimate below.")
    skipped = st.session_state.setdefault("rv_skipped", [])
    if spot:
        queue = app.spot_check_queue(task, queue_size + len(skipped))
    else:
        queue = app.review_queue(task, detector, queue_size, leave_out=leave_out)
        prog = app.review_progress(task, detector, queue_size, leave_out=leave_out)
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
    # the rank first: "#12" alone read as the queue position, and it is the painting's id
    right.markdown(f"### Rank {r['rank']} · painting #{r['image_id']}  \n`{r['path']}`")
    right.caption(f"[link to this painting]({painting_link('review', task, int(r['image_id']))})")
    right.markdown(f"**given {task}:** {r['given']}")
    show_other_spellings(app, task, r["given"], right)
    quality = app.quality_of(int(r["image_id"]))
    if quality:
        right.caption("image quality: " + "; ".join(f"**{f}** ({m})" for f, m in quality))
    copies = app.copies_of(r["path"], task)
    if len(copies):
        right.caption("the same picture is also filed as " + ", ".join(f"`{p}`" for p in copies["copy_path"])
                      + f" under {r['given']}: your decision here covers it too")
    top = app.top3_text(task, r)
    right.markdown("**model (top 3):**  \n" + "  \n".join(f"{n}: {p:.2f}" for n, p in top))
    show_evidence(app, int(r["image_id"]), task, right)
    right.caption((f"spot check · rank {r['rank']} in the {app.review_default} ranking" if spot else
                   f"{detector} score {r['score']:.3f} · rank {r['rank']}") + f" · probabilities: {r['source']}")
    d, suggested, note, skip = decision_form(right, "rv", r["image_id"], app.class_names(task),
                                             app.suggested_label(int(r["image_id"]), task, r["given"], top),
                                             shortcuts=True)
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


app, task, reviewer = page_setup("Review")
with store_errors():
    page_review(app, task, reviewer)
