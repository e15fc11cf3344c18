"""Overview: the collection, the run, how many labels look wrong, test metrics."""
from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from dashboard.service import Artlens
from dashboard.ui import page_setup, store_errors
from trainer.plots import top_confusion


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
    spelt_twice = app.spelling_variants(task)
    if spelt_twice:
        st.warning(spelt_twice[0].upper() + spelt_twice[1:])
    summary, per_class = app.wrong_label_summary(task)
    if summary:
        st.subheader("How many labels look wrong")
        st.markdown(summary)
        if per_class is not None:
            # every class, the most doubted first: the table scrolls (27 styles, hundreds of artists)
            st.dataframe(per_class.round(1), hide_index=True, height=min(38 + 35 * len(per_class), 420))
    leaks, crossing = app.leaky_duplicates()
    if leaks:
        st.warning(leaks)
        with st.expander("duplicates across splits"):
            st.dataframe(crossing, hide_index=True)
    quality, flagged = app.image_quality()
    if len(quality):
        st.subheader("Image quality")
        st.caption("Flags on the reproduction, not on the label. Photo defects (small, dark, washed out, blurred) "
                   "are left out of the Review queue unless you ask for them there; greyscale, odd aspect and "
                   "low information are also what drawings, scrolls and colour fields are, so they stay in.")
        st.dataframe(quality, hide_index=True)
        if len(flagged):
            with st.expander(f"{len(flagged):,} flagged paintings"):
                st.dataframe(flagged[["path", "flags"]], hide_index=True)
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


app, task, _ = page_setup("Overview")
with store_errors():
    page_overview(app, task)
