"""What the dashboard's pages share: the opened store, cached thumbnails and Grad-CAM, the painting
grid and panel, the evidence lines, the tag form. Pages are one file each under dashboard/pages/;
app.py runs them."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard.service import Artlens, thumbnail_bytes
from db.schema import AGAINST, DECISIONS, LEFT_OUT, MIXED, SUPPORTS, UNJUDGED
from db.store import Paths, StoreError

MAX_POINTS = 30_000  # scatter points drawn at once; more are sampled (the rest stay queryable)


def page_setup(title: str) -> tuple[Artlens, str, str]:
    """Every page's first call: the opened store and the sidebar every page shares (task, reviewer),
    then the page title. Returns (store, task, reviewer name).

    Each page draws the sidebar itself, rather than app.py: Streamlit runs a page file alone when a
    link to it (/review?painting=...) is the first request a server sees (its pages/ folder rule)."""
    st.set_page_config(page_title=f"artlens · {title}", layout="wide")
    app = open_store()
    tasks = app.store.tasks()
    # Widget state does not outlive a page switch: the choices live under their own keys and are
    # handed to the widgets on every page.
    kept = st.session_state
    if kept.get("_task") not in tasks:   # a shared link's task, else style
        linked = st.query_params.get("task")
        kept["_task"] = linked if linked in tasks else ("style" if "style" in tasks else tasks[0])
    kept["task"], kept["reviewer"] = kept["_task"], kept.get("_reviewer", "")
    task = st.sidebar.selectbox("task", tasks, key="task", on_change=_keep, args=("task",))
    reviewer = st.sidebar.text_input("reviewer name", key="reviewer", on_change=_keep, args=("reviewer",))
    st.sidebar.caption(f"{app.info.get('paintings')} paintings · run {app.run_id}")
    st.query_params["task"] = task   # the address bar always holds a shareable link
    st.title(title)
    if not app.data_root.is_dir():
        st.warning(f"The images' folder `{app.data_root}` is not there (moved, or on another machine): pictures, "
                   "Grad-CAM and thumbnails are missing. Start the dashboard with `--data-root FOLDER` "
                   "(`make dashboard ARGS=\"--data-root FOLDER\"`) to show them from where they are now.")
    return app, task, reviewer


@contextmanager
def store_errors():
    """Around a page's body: a store or tag log that fails under it (a team's PostgreSQL out of reach,
    a DuckDB tag log another process holds past the wait) is one line on the page, not a traceback,
    and nothing is written. app.py catches the same, but a shared link's first request may run a
    page file alone."""
    try:
        yield
    except StoreError as e:
        st.error(str(e))


def _keep(key: str) -> None:
    st.session_state[f"_{key}"] = st.session_state[key]


def painting_param() -> int | None:
    """The painting a shared link opens (`?painting=2236`), if any and a number."""
    raw = st.query_params.get("painting")
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        st.warning(f"?painting={raw}: not a painting id")
        return None


def painting_link(page: str, task: str, image_id: int) -> str:
    """A link that opens this painting on `page` for `task` (relative: it works behind any host)."""
    return f"./{page}?task={task}&painting={image_id}"


def open_store() -> Artlens:
    """The store named by ARTLENS_STORE (set by `artlens dashboard`), opened once per version of it."""
    store = os.environ.get("ARTLENS_STORE", "artlens.duckdb")
    if not Path(store).is_file():
        st.error(f"No store at `{store}`. Run `make train embed` first, then reload this page.")
        st.stop()
    try:
        return open_artlens(store, os.environ.get("ARTLENS_INDEX", ""), os.environ.get("ARTLENS_TAGS", ""),
                            os.environ.get("ARTLENS_DATA_ROOT", ""), store_signature(Path(store)))
    except StoreError as e:
        st.error(str(e))
        st.stop()


def store_signature(path: Path) -> tuple:
    """Changes whenever `make embed` swaps a new store in (new inode / mtime)."""
    s = path.stat()
    return (s.st_ino, s.st_mtime_ns)


@st.cache_resource(show_spinner="opening the store")
def open_artlens(store: str, index: str, tags: str, data_root: str, signature: tuple) -> Artlens:
    return Artlens(Paths.from_store(store, index or None, tags or None), data_root or None)


@st.cache_resource(show_spinner="loading the model")
def open_embedder(run_dir: str, fold: int | None = None):
    from trainer.checkpoint import Embedder
    return Embedder(Path(run_dir), fold=fold)


@st.cache_data(show_spinner="Grad-CAM", max_entries=500)
def cached_gradcam(_app: Artlens, run_id: str, path: str, task: str, given: str | None) -> list[tuple[str, bytes]]:
    # cached per painting, task, given class and run (run_id is part of the key)
    # drawn by the cross-fitting head that held the painting out (the final model for uploads)
    return _app.gradcam_panels(lambda fold: open_embedder(_app.info["run_dir"], fold), path, task, given)


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


def painting_panel(app: Artlens, task: str, image_id: int, reviewer: str):
    """One painting opened from the plot or a shared link: image, labels, top 3, the evidence lines,
    Grad-CAM and tag buttons."""
    rows = app.store.paintings(task, [image_id])
    if rows.empty:
        st.warning(f"painting #{image_id} has no {task} label")
        return
    r = rows.iloc[0].to_dict()
    st.subheader(f"#{image_id} · {r['path']}")
    left, right = st.columns([2, 3])
    show_thumb(app, r["path"], 480, container=left)
    right.dataframe(app.store.labels_of(image_id), hide_index=True)
    show_other_spellings(app, task, r["given"], right)
    top = app.top3_text(task, r)
    right.markdown("**model (top 3):** " + " · ".join(f"{n} {p:.2f}" for n, p in top))
    # a link shared from the Review card must carry the card's reasons, not only the picture
    show_evidence(app, image_id, task, right, heading="What the evidence says")
    show_gradcam(app, r["path"], task, r["given"], container=right)
    decision, suggested, note, _ = decision_form(right, "open", image_id, app.class_names(task),
                                                 app.suggested_label(image_id, task, r["given"], top))
    if decision:
        if not reviewer.strip():
            right.error("enter your reviewer name in the sidebar first")
        else:
            app.tag(task, rows, decision, reviewer, suggested if decision != "correct" else None, note)
            right.success(f"#{image_id} tagged {decision}")


def show_other_spellings(app: Artlens, task: str, given: str, container):
    """A warning where the given label looks like another class spelt another way (`Pop_Art`, `pop art`)."""
    spelt = app.other_spellings(task, given)
    if spelt:
        container.warning(f"{given} and {', '.join(spelt)} look like one class spelt two ways: if so, rename one "
                          "in the data and retrain rather than tagging each painting")


EVIDENCE_MARKS = {AGAINST: ":red[✗ against]", SUPPORTS: ":green[✓ supports]", MIXED: ":orange[~ mixed]",
                  LEFT_OUT: ":gray[– left out]", UNJUDGED: ":gray[– cannot judge]"}


def show_evidence(app: Artlens, image_id: int, task: str, container, heading: str = "Why it is here"):
    """The painting's evidence lines under a one-sentence summary, one line per kind marked
    against / supports / mixed (or left out). Draws nothing for a store without the evidence table."""
    lines, summary = app.evidence_card(image_id, task)
    if lines:
        container.markdown(f"**{heading}:** {summary}")
        container.markdown("  \n".join(f"{EVIDENCE_MARKS.get(v, v)} · {line}" for v, line in lines))


def decision_form(container, prefix: str, image_id: int, names: list[str], default: str | None,
                  shortcuts: bool = False):
    """The one-painting tag form (suggested label defaulting to `default`, `Artlens.suggested_label`;
    note, one button per decision; with `shortcuts` the Review page's keys and a skip button).
    Returns (the decision clicked or None, suggested label, note, skip clicked)."""
    keys = ("m", "o", "u") if shortcuts else (None, None, None)
    with container.form(f"{prefix}_{image_id}", clear_on_submit=True):
        suggested = st.selectbox("suggested label", names, index=names.index(default) if default in names else 0,
                                 key=f"{prefix}_sugg_{image_id}")
        note = st.text_input("note", key=f"{prefix}_note_{image_id}")
        row = st.container(horizontal=True)
        clicked = [d for d, k in zip(DECISIONS, keys)
                   if row.form_submit_button(d, shortcut=k, type="primary" if d == "mislabel" else "secondary")]
        skip = row.form_submit_button("skip", shortcut="s") if shortcuts else False
    return (clicked[0] if clicked else None), suggested, note, skip


def detector_label(app: Artlens, task: str):
    auroc = app.store.benchmark_auroc(task)
    return lambda d: f"{d} (AUROC {auroc[d]:.2f})" if d in auroc else d
