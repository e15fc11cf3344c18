"""`artlens dashboard`: start the Streamlit dashboard on 127.0.0.1 over the store from `make embed`."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from db.tags import TAG_LOG_HELP
from trainer.cli import UserError, field, parse_config, run_cli


@dataclass
class DashboardConfig:
    store: str = field("artlens.duckdb", "store written by `make embed`")
    index: str = field("", "FAISS index; default: the store path with .faiss")
    tags: str = field("", TAG_LOG_HELP)
    data_root: str = field("", "folder the images are served from; default: the one recorded in the store")
    host: str = field("127.0.0.1", "address to bind (127.0.0.1 keeps it on this machine)")
    port: int = field(8501, "port")


# app.py lists its pages with st.navigation, but a pages/ folder beside the main script makes
# Streamlit start in its older folder mode until some run calls st.navigation: a link to /review
# as a fresh server's first request got the folder's page list (streamlit/streamlit#10276). The
# server starts with that mode off; if Streamlit renames the switch, app.py still works (each page
# sets itself up) and only that first request shows the folder's list.
STREAMLIT = """
import sys
from streamlit.runtime.pages_manager import PagesManager
if hasattr(PagesManager, "uses_pages_directory"):
    PagesManager.uses_pages_directory = False
from streamlit.web.cli import main
sys.exit(main(prog_name="streamlit"))
"""


def command(cfg: DashboardConfig) -> tuple[list[str], dict]:
    app = Path(__file__).with_name("app.py")
    env = {**os.environ, "ARTLENS_STORE": str(Path(cfg.store).resolve()), "ARTLENS_INDEX": cfg.index,
           "ARTLENS_TAGS": cfg.tags, "ARTLENS_DATA_ROOT": cfg.data_root}
    cmd = [sys.executable, "-c", STREAMLIT, "run", str(app), "--server.address", cfg.host,
           "--server.port", str(cfg.port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
           "--server.maxUploadSize", "20", "--client.toolbarMode", "minimal", "--server.fileWatcherType", "none"]
    return cmd, env


def main(argv: Sequence[str] | None = None) -> None:
    cfg = parse_config(DashboardConfig, argv, "artlens dashboard", __doc__.split("\n")[0])
    if not Path(cfg.store).is_file():
        raise UserError(f"no store at {cfg.store}: run `make train embed` first")
    cmd, env = command(cfg)
    print(f"artlens dashboard on http://{cfg.host}:{cfg.port}  (store {cfg.store}; Ctrl-C stops it)", flush=True)
    # Become Streamlit rather than wait on it: a SIGTERM (a service manager, a test's terminate())
    # then stops the server itself, where a waiting parent died and left it holding the port.
    os.execve(sys.executable, cmd, env)


if __name__ == "__main__":
    sys.exit(run_cli(main))
