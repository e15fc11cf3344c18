"""Neighbours: the nearest paintings to one found by path, id or an uploaded image."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard.service import UPLOAD_MAX_BYTES, UPLOAD_TYPES, Artlens
from dashboard.ui import page_setup, store_errors, grid, open_embedder, show_gradcam, show_thumb


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
        up = st.file_uploader("image (JPEG, PNG, HEIC, ...)", type=UPLOAD_TYPES, key="nb_upload")
        if up is not None:
            if up.size > UPLOAD_MAX_BYTES:
                st.error(f"{up.name} is {up.size / 1e6:.1f} MB; the limit is {UPLOAD_MAX_BYTES / 1e6:.0f} MB")
                return
            from dashboard.service import decode_upload
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


app, task, _ = page_setup("Neighbours")
with store_errors():
    page_neighbours(app, task)
