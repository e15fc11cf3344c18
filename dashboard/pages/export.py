"""Export: the tag history and the corrected label CSVs."""
from __future__ import annotations

import streamlit as st

from dashboard.service import Artlens
from dashboard.ui import page_setup


def page_export(app: Artlens):
    hist = app.tags.history()
    st.metric("decisions recorded", len(hist))
    st.dataframe(app.tags.latest(), hide_index=True)
    st.download_button("tags (full history) as CSV", app.tags_csv(), "artlens_tags.csv", "text/csv", key="dl_tags")
    st.download_button("corrected labels (ArtGAN layout, zip)", app.corrected_labels_zip(),
                       "artlens_corrected_labels.zip", "application/zip", key="dl_zip")
    st.caption("Corrected CSVs replace a given label with the suggested one wherever the latest decision is "
               "`mislabel`. Same files from the shell: `artlens export --out DIR`.")


app, _, _ = page_setup("Export")
page_export(app)
