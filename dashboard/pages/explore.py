"""Explore: the 2-D map of the embeddings; click one painting, lasso many, tag them."""
from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from dashboard.palette import OTHER, class_colours
from dashboard.service import Artlens
from db.schema import DECISIONS
from embeddings.detectors import DETECTORS
from dashboard.ui import MAX_POINTS, cached_points, page_setup, store_errors, grid, painting_panel, painting_param


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
    if not selected and painting_param() is not None:   # opened from a shared link
        selected = [painting_param()]
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


app, task, reviewer = page_setup("Explore")
with store_errors():
    page_explore(app, task, reviewer)
