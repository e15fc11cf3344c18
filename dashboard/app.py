"""artlens dashboard (Streamlit). UI only: every query goes through dashboard/service.py and db/,
every computation through embeddings/ and trainer/. Start it with `make dashboard`
(`artlens dashboard`).

This file runs the page chosen under `st.navigation`; each page is one file under
dashboard/pages/ and starts with `ui.page_setup` (the store, the sidebar's task and reviewer).
Pages have their own URLs (/review, /explore, ...) and read `?task=style&painting=2236`, so a
queue or a painting can be shared as a link. The store comes from ARTLENS_STORE / ARTLENS_INDEX /
ARTLENS_TAGS / ARTLENS_DATA_ROOT (set by `artlens dashboard`), default ./artlens.duckdb.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from db.store import StoreError

PAGES_DIR = Path(__file__).with_name("pages")
# (file under pages/, title, URL path); the first is the landing page
PAGES = [("overview.py", "Overview", "overview"), ("explore.py", "Explore", "explore"),
         ("neighbours.py", "Neighbours", "neighbours"), ("outliers.py", "Outliers", "outliers"),
         ("review.py", "Review", "review"), ("export.py", "Export", "export")]

page = st.navigation([st.Page(PAGES_DIR / f, title=t, url_path=u, default=(i == 0))
                      for i, (f, t, u) in enumerate(PAGES)])
try:
    page.run()
except StoreError as e:
    st.error(str(e))
