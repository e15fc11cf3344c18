"""`make bench-ablation`: the classifier ablation - each change on and off, same seed, same data.

Every variant is a real `artlens train` run (the command `make train` runs) in its own
process, so its time is what a user would wait; the feature cache is shared, so a variant's
features cost only the views that no earlier variant computed (the table says which were cold).
Writes bench/ablation.json and bench/ablation.md (test top-1 per task with its 95% bootstrap
interval, and the val split's top-1: 794 paintings, three times the test split, though early
stopping looked at it).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
from trainer.cli import field, parse_config, run_cli

# v1-v3 trained the final model for up to 40 epochs on train, early-stopped on val; their rows pin that.
OLD = ["--epochs", "40", "--fit-on", "train"]
V1 = OLD + ["--no-tune-tail", "--no-texture"]   # v1's classifier: frozen backbone, the final map alone
NO_TEX = OLD + ["--no-texture"]                  # v2's default: tail tuning, the final map alone
MIX = ["--mixup", "0.2", "--cutmix", "1.0"]
VARIANTS = {   # each change alone on the v1 classifier, then on v2's tail tuning, then with texture, then v4's schedule
    "frozen (v1 default)": V1,
    "+ tune tail (v2 default)": NO_TEX,
    "+ MixUp/CutMix": V1 + MIX,
    "+ 2 crop views": V1 + ["--crops", "2"],
    "+ TTA": V1 + ["--tta"],
    "tail + MixUp/CutMix": NO_TEX + MIX,
    "tail + MixUp/CutMix + 2 crops": NO_TEX + MIX + ["--crops", "2"],
    "tail + refit on train+val": NO_TEX + ["--refit"],
    "lite2, frozen": ["--backbone", "efficientnet_lite2"] + V1,
    "lite2 + tail": ["--backbone", "efficientnet_lite2"] + NO_TEX,
    "frozen + texture": OLD + ["--no-tune-tail"],
    "tail + texture (v3 default)": OLD,
    "tail + texture + refit": OLD + ["--refit"],
    "v3, 10 epochs + refit": ["--fit-on", "train", "--refit"],
    "v3, 10 epochs on train+val (v4 default)": [],
    "frozen + texture, 10 epochs on train+val": ["--no-tune-tail"],
}



@dataclass
class AblationConfig:
    data: str = field("../shared/data/wikiart-mini", "data set every variant trains on")
    variants: list[str] = field(list(VARIANTS), "variants to run (names as in the table)")
    seed: int = field(0, "the one seed every variant uses")
    folds: int = field(0, "cross-fitting folds per run (0 = time the final model only)")
    out_dir: str = field("bench/ablation", "run folders and logs")
    cache_dir: str = field("cache", "feature cache shared by the variants")
    out: str = field("bench/ablation", "results: <out>.json and <out>.md")
    table_only: bool = field(False, "re-read the variants' finished run folders and rewrite the table; train nothing")


def _run_id(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-")


def run_variant(cfg: AblationConfig, name: str, flags: list[str]) -> dict:
    run_id = _run_id(name)
    log = Path(cfg.out_dir) / f"{run_id}.log"
    cmd = [sys.executable, "-m", "artlens", "train", "--data", cfg.data, "--out-dir", cfg.out_dir, "--run-id", run_id,
           "--seed", str(cfg.seed), "--folds", str(cfg.folds), "--cache-dir", cfg.cache_dir, *flags]
    t0 = time.time()
    with open(log, "w") as f:
        rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.time() - t0
    if rc:
        return {"name": name, "flags": flags, "error": f"exit {rc}, see {log}"}
    return {**read_variant(cfg, name, flags), "wall_s": wall}


def read_variant(cfg: AblationConfig, name: str, flags: list[str]) -> dict:
    path = Path(cfg.out_dir) / _run_id(name) / "metrics.json"
    if not path.is_file():
        return {"name": name, "flags": flags, "error": f"no {path}"}
    m = json.loads(path.read_text())
    return {"name": name, "flags": flags, "seed": cfg.seed, "folds": cfg.folds, "seconds": m["seconds"],
            "feature_cache": m["feature_cache"], "best_epoch": m["best_epoch"], "refit": bool(m.get("refit")),
            "val_in_sample": bool(m.get("val_in_sample", m.get("refit"))),
            "test_before_refit": {t: v["top1"] for t, v in m["metrics"].get("before_refit", {}).get("test", {}).items()},
            "val": {t: {"top1": v["top1"], "n": v["n"]} for t, v in m["metrics"]["val"].items()},
            "test": {t: {"top1": v["top1"], "ci95": v["top1_ci95"], "n": v["n"]} for t, v in m["metrics"]["test"].items()}}


def table(rows: list[dict], cfg: AblationConfig) -> str:
    tasks = next((list(r["test"]) for r in rows if "test" in r), [])
    head = ("| variant | flags | " + " | ".join(f"{t} top-1 (95% CI)" for t in tasks)
            + " | val top-1, mean of tasks | features s | head s | total s |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['name']} | `{' '.join(r['flags'])}` | {r['error']} |")
            continue
        cells = [f"{r['test'][t]['top1']:.3f} ({r['test'][t]['ci95'][0]:.2f}-{r['test'][t]['ci95'][1]:.2f})"
                 for t in tasks]
        cold = " (cold)" if r["feature_cache"]["misses"] else ""
        s = r["seconds"]
        val = np.mean([v["top1"] for v in r.get("val", {}).values()]) if r.get("val") else float("nan")
        val_cell = "in-sample (trained on val)" if r.get("val_in_sample", r.get("refit")) else f"{val:.3f}"
        lines.append(f"| {r['name']} | `{' '.join(r['flags']) or '(none)'}` | " + " | ".join(cells)
                     + f" | {val_cell} | {s['features']:.0f}{cold} | {s['train']:.0f} | {s['total']:.0f} |")
    notes = [f"\n{r['name']}: the same run's early-stopped model, before the refit, scored "
             + ", ".join(f"{t} {v:.3f}" for t, v in r["test_before_refit"].items()) + " on test."
             for r in rows if r.get("test_before_refit")]
    return (f"Seed {cfg.seed}, {cfg.folds or 'no'} cross-fitting folds, data {cfg.data}.\n"
            f"Command: `make bench-ablation ARGS=\"--seed {cfg.seed} --folds {cfg.folds}\"`\n\n" + "\n".join(lines)
            + "\n" + "".join(notes) + ("\n" if notes else ""))


def main(argv: Sequence[str] | None = None) -> dict:
    cfg = parse_config(AblationConfig, argv, "artlens bench ablation", __doc__.split("\n\n")[0])
    Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
    unknown = [n for n in cfg.variants if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"error: unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    # Rows of variants not re-run this time are kept from <out>.json: running one variant must
    # not drop the others from the table.
    out_json = Path(cfg.out + ".json")
    kept = json.loads(out_json.read_text()) if out_json.is_file() else []
    done = {r["name"]: r for r in kept if (r.get("seed", 0), r.get("folds", 0)) == (cfg.seed, cfg.folds)}

    def save() -> list[dict]:
        rows = [done[n] for n in VARIANTS if n in done]
        out_json.write_text(json.dumps(rows, indent=1))
        Path(cfg.out + ".md").write_text(table(rows, cfg))
        return rows
    for name in cfg.variants:
        if cfg.table_only:
            done[name] = read_variant(cfg, name, VARIANTS[name])
            continue
        print(f"{name}: training ...", flush=True)
        done[name] = run_variant(cfg, name, VARIANTS[name])
        print(f"{name}: {done[name].get('error') or {t: round(v['top1'], 3) for t, v in done[name]['test'].items()}}",
              flush=True)
        save()
    rows = save()
    print(table(rows, cfg))
    return {"rows": rows}


if __name__ == "__main__":
    sys.exit(run_cli(main))
