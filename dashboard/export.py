"""`artlens export`: write the review tags and corrected ArtGAN label CSVs to a folder."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Sequence

from db.store import Paths, StoreError
from dashboard.service import Artlens
from trainer.cli import UserError, field, parse_config, run_cli


@dataclass
class ExportConfig:
    out: str = field("corrected_labels", "folder to write {task}_{train,val}.csv, {task}_class.txt, tags.csv")
    store: str = field("artlens.duckdb", "store written by `make embed`")
    tags: str = field("", "tag log: a DuckDB file or a postgresql://user@host/db URL (shared by a team); "
                          "default: <store stem>.tags.duckdb")


def main(argv: Sequence[str] | None = None) -> None:
    cfg = parse_config(ExportConfig, argv, "artlens export", __doc__.split("\n")[0])
    try:
        app = Artlens(Paths.from_store(cfg.store, None, cfg.tags or None))
    except StoreError as e:
        raise UserError(str(e)) from None
    try:
        written = app.write_exports(cfg.out)
    except OSError as e:
        raise UserError(f"cannot write to {cfg.out}: {e.strerror or e}") from None
    finally:
        app.close()
    print(f"wrote {len(written)} files to {cfg.out}: " + ", ".join(p.name for p in written))


if __name__ == "__main__":
    sys.exit(run_cli(main))
