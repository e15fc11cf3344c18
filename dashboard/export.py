"""`artlens export`: write the review tags and the corrected labels (ArtGAN CSVs, your manifest) to a folder.

Or the review queue as Label Studio tasks (`--label-studio`), or read a Label Studio export back as
decisions (`--from-label-studio FILE`), or every painting as a FiftyOne dataset (`--fiftyone`)."""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from dashboard.service import Artlens
from db.store import Paths, StoreError
from db.tags import TAG_LOG_HELP
from embeddings.detectors import DETECTORS
from trainer.cli import UserError, field, parse_config, run_cli


@dataclass
class ExportConfig:
    out: str = field("corrected_labels", "folder to write {task}_{train,val}.csv, {task}_class.txt, tags.csv and, "
                                         "for a collection read from a manifest, <manifest>_corrected.csv")
    store: str = field("artlens.duckdb", "store written by `make embed`")
    tags: str = field("", TAG_LOG_HELP)
    manifest: str = field("", "the manifest CSV to write corrected (default: the one the store was embedded from); "
                              "every row and column kept, a label changed where the latest decision is `mislabel` "
                              "with a suggested label")
    label_studio: bool = field(False, "write the review queue as Label Studio tasks instead: "
                                      "labelstudio_tasks.json and labelstudio_config.xml in --out")
    from_label_studio: str = field("", "read a Label Studio JSON export of those tasks into the tag log as decisions")
    task: str = field("style", "--label-studio / --from-label-studio: the task of the queue")
    ranking: str = field("", "--label-studio: the ranking the queue follows (default: the store's review default)")
    top: int = field(200, "--label-studio: how many untagged paintings of the queue")
    spot_check: bool = field(False, "--label-studio: the spot check's random paintings from every depth instead")
    image_url: str = field("/data/local-files/?d=", "--label-studio: prefix of each painting's path in the tasks "
                                                    "(Label Studio's local files, document root = the data folder)")
    reviewer: str = field("", "--from-label-studio: record every decision under this name (default: the annotator)")
    fiftyone: bool = field(False, "write every painting as a FiftyOne dataset instead (--out/fiftyone: labels, "
                                  "predictions, detector scores, metadata, quality flags, embeddings, tags), for "
                                  "fo.Dataset.from_dir(DIR, fo.types.FiftyOneDataset) and the FiftyOne App")


def main(argv: Sequence[str] | None = None) -> None:
    cfg = parse_config(ExportConfig, argv, "artlens export", __doc__.split("\n")[0])
    try:
        app = Artlens(Paths.from_store(cfg.store, None, cfg.tags or None))
    except StoreError as e:
        raise UserError(str(e)) from None
    try:
        if cfg.from_label_studio:
            return import_label_studio(app, cfg)
        if cfg.label_studio:
            return write_label_studio(app, cfg)
        if cfg.fiftyone:
            return write_fiftyone_dataset(app, cfg)
        written, counts = app.write_exports(cfg.out, cfg.manifest or None)
    except OSError as e:
        raise UserError(f"cannot write to {cfg.out}: {e.strerror or e}") from None
    except StoreError as e:
        raise UserError(str(e)) from None
    finally:
        app.close()
    print(f"wrote {len(written)} files to {cfg.out}: " + ", ".join(p.name for p in written))
    if counts is not None:
        name = next(p.name for p in written if p.name.endswith("_corrected.csv"))
        print(f"{name}: {counts['replaced']} labels corrected; left as they are: "
              f"{counts['no_suggestion']} judged wrong with no label suggested (in tags.csv), "
              f"{counts['edited_since']} changed in the manifest since the decision, "
              f"{counts['not_in_manifest']} decisions on paintings or tasks the manifest does not hold")


def check_task(app: Artlens, task: str) -> None:
    if task not in app.store.tasks():
        raise UserError(f"--task {task}: the store has {', '.join(app.store.tasks())}")


def write_label_studio(app: Artlens, cfg: ExportConfig) -> None:
    check_task(app, cfg.task)
    if cfg.ranking and cfg.ranking not in DETECTORS:
        raise UserError(f"--ranking {cfg.ranking}: one of {', '.join(DETECTORS)}")
    config, tasks = app.label_studio_queue(cfg.task, cfg.ranking or None, cfg.top, cfg.spot_check, cfg.image_url)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "labelstudio_config.xml").write_text(config)
    (out / "labelstudio_tasks.json").write_text(json.dumps(tasks, indent=1))
    print(f"wrote {len(tasks)} Label Studio tasks ({cfg.task}) to {out / 'labelstudio_tasks.json'} and their "
          f"labeling config to {out / 'labelstudio_config.xml'}")


def write_fiftyone_dataset(app: Artlens, cfg: ExportConfig) -> None:
    from dashboard.fiftyone_export import write_fiftyone
    samples = app.fiftyone_dataset()
    out = write_fiftyone(Path(cfg.out) / "fiftyone", f"artlens-{app.run_id}", samples)
    print(f"wrote {len(samples['samples'])} FiftyOne samples to {out}; load them with\n"
          f"  python -c \"import fiftyone as fo; fo.Dataset.from_dir('{out}', fo.types.FiftyOneDataset, "
          f"name='artlens-{app.run_id}', persistent=True)\"\n  fiftyone app launch")


def import_label_studio(app: Artlens, cfg: ExportConfig) -> None:
    check_task(app, cfg.task)
    path = Path(cfg.from_label_studio)
    try:
        export = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"--from-label-studio: {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"--from-label-studio: {path} is not JSON ({e})") from None
    if not isinstance(export, list):
        raise UserError(f"--from-label-studio: {path} is not a Label Studio JSON export (a list of tasks)")
    try:
        counts = app.import_label_studio(export, cfg.task, cfg.reviewer)
    except ValueError as e:
        raise UserError(f"{path}: {e}; nothing was recorded") from None
    print(f"{path}: {counts['decisions']} decisions recorded in {app.tags.path} from {counts['tasks']} tasks "
          f"({counts['skipped']} skipped, {counts['unannotated']} not annotated)")


if __name__ == "__main__":
    sys.exit(run_cli(main))
