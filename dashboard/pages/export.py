"""Export: the tag history and the corrected label CSVs."""
from __future__ import annotations

import streamlit as st

from dashboard.service import Artlens
from dashboard.ui import page_setup, store_errors


def page_export(app: Artlens):
    hist = app.tags.history()
    st.metric("decisions recorded", len(hist))
    st.dataframe(app.tags.latest(), hide_index=True)
    st.download_button("tags (full history) as CSV", app.tags_csv(), "artlens_tags.csv", "text/csv", key="dl_tags")
    data, missing = app.corrected_labels_zip()
    manifest = app.manifest_path()
    st.download_button("corrected labels (zip)", data, "artlens_corrected_labels.zip", "application/zip", key="dl_zip")
    st.caption("The zip holds the label CSVs in the ArtGAN layout"
               + (f" and a copy of your manifest, `{manifest.stem}_corrected.csv`," if manifest and not missing else "")
               + " with the given label replaced by the suggested one wherever the latest decision is `mislabel`, "
               "and tags.csv. Same files from the shell: `artlens export --out DIR`.")
    if missing:
        st.warning(f"The corrected manifest is not in the zip: {missing}. "
                   "`artlens export --out DIR --manifest PATH` writes it from the manifest's new place.")


app, _, _ = page_setup("Export")
with store_errors():
    page_export(app)
