"""`make bench ARGS="--steps tags"`: a team reviewing at once. Writer processes each record N
decisions on one tag log, each followed by the read a page re-render does (`latest`), on both
backends: a DuckDB file (one writer at a time, retries) and PostgreSQL (a local server,
bench/postgres.py). Reports every decision's wait (p50, p90, p99) and how many were kept."""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# Each writer signals it is ready (imports done) and waits for the go: they all start writing at once.
WRITER = """
import json, sys, time
from pathlib import Path
from db.tags import open_tag_log
log = open_tag_log(sys.argv[2], wait_s=120)
here = Path(sys.argv[4])
(here / f"ready-{sys.argv[1]}").touch()
while not (here / "go").exists():
    time.sleep(0.005)
waits = []
for i in range(int(sys.argv[3])):
    t0 = time.perf_counter()
    log.add(f"{sys.argv[1]}/painting-{i:04d}.jpg", "style", "mislabel" if i % 2 else "correct", sys.argv[1], note=str(i))
    log.latest()
    waits.append(time.perf_counter() - t0)
print(json.dumps(waits))
"""


def run_writers(spec: str, names: list[str], decisions: int) -> list[list[float]]:
    """One process per name, each recording `decisions` decisions (paths `<name>/painting-<i>.jpg`,
    note = i) on the tag log `spec`, all starting together once every writer is up; returns each
    writer's seconds per decision."""
    from db.tags import open_tag_log
    open_tag_log(spec).ensure()
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "writer.py"
        script.write_text(WRITER)
        procs = [subprocess.Popen([sys.executable, str(script), name, spec, str(decisions), tmp],
                                  stdout=subprocess.PIPE, text=True) for name in names]
        deadline = time.monotonic() + 300
        while not all((Path(tmp) / f"ready-{n}").exists() for n in names):
            if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                break                        # a writer died before its start: reported below
            time.sleep(0.01)
        (Path(tmp) / "go").touch()
        outs = [p.communicate(timeout=1800)[0] for p in procs]
    if any(p.returncode for p in procs):
        raise RuntimeError(f"a writer failed on {spec}")
    return [json.loads(o) for o in outs]


def writer_load(spec: str, writers: int, decisions: int) -> dict:
    """`writers` processes x `decisions` each on the tag log `spec`: {p50_ms, p90_ms, p99_ms, max_ms,
    kept, expected}."""
    from db.tags import open_tag_log
    waits = np.concatenate(run_writers(spec, [f"r{k}" for k in range(writers)], decisions)) * 1000
    kept = len(open_tag_log(spec).history())
    return {"p50_ms": float(np.percentile(waits, 50)), "p90_ms": float(np.percentile(waits, 90)),
            "p99_ms": float(np.percentile(waits, 99)), "max_ms": float(waits.max()), "kept": kept,
            "expected": writers * decisions}


def step_tags(decisions: int, writers: int = 6) -> dict:
    """Both backends under the same load."""
    from bench.postgres import local_postgres
    out = {"writers": writers, "decisions_each": decisions}
    with tempfile.TemporaryDirectory() as tmp:
        out["duckdb"] = writer_load(str(Path(tmp) / "bench.tags.duckdb"), writers, decisions)
    with local_postgres("artlens_bench") as url:
        out["postgresql"] = writer_load(url, writers, decisions)
    return out
