"""`artlens <command> [flags]`: the one command line of the project (`artlens <command> --help`).

Each subcommand is the `main(argv)` of the module that does the work; this module only wires them,
so it is the one place that sits above every package (it hands `train` the embedding detectors
that score each cross-fitting fold, which live with the other detectors in embeddings/).
"""
from __future__ import annotations

import importlib
import sys
from typing import Callable, Sequence

from trainer.cli import parse_config, run_cli


def _load(target: str):
    """The object `target` ("module:name") names, its module imported now."""
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def _entry(target: str) -> Callable[[Sequence[str] | None], object]:
    return lambda argv: _load(target)(argv)


def _configured(config: str, work: str, prog: str, description: str) -> Callable[[Sequence[str] | None], object]:
    """A command whose work loads torch: its flags are parsed from the torch-free config dataclass
    `config` ("module:Class") first, so `--help` and a wrong flag answer at once; then `work`
    ("module:function") runs on the parsed config."""
    def main(argv):
        cfg = parse_config(_load(config), argv, prog, description)
        return _load(work)(cfg)
    return main


def _train(cfg) -> object:
    from trainer.config import check_settings, run_paintings
    # flags and data are checked before torch loads, so a wrong flag, path, column or label answers at once
    check_settings(cfg)
    paintings = None if cfg.resume else run_paintings(cfg)
    from embeddings.scores import fold_scores
    from trainer.train import train
    return train(cfg, fold_scores, paintings)


# name -> (what it does, its main(argv)); imported only when run, so `artlens --help` is instant.
COMMANDS: dict[str, tuple[str, Callable]] = {
    "train": ("fit the classifier, cross-fit every painting's scores (runs/<id>/)",
              _configured("trainer.config:TrainConfig", "artlens.cli:_train", "artlens train",
                          "fit a multi-task CNN-RNN classifier (artist, genre, style) and cross-fit every "
                          "painting's scores (trainer/train.py)")),
    "embed": ("run the model over the collection and build the store + FAISS index",
              _configured("embeddings.config:EmbedConfig", "embeddings.export:embed", "artlens embed",
                          "run the trained model over the whole data set and build the store "
                          "(embeddings/export.py)")),
    "dashboard": ("start the Streamlit dashboard over the store", _entry("dashboard.launch:main")),
    "explain": ("Grad-CAM of one painting for one task",
                _configured("embeddings.config:ExplainConfig", "embeddings.explain:write_explanation", "artlens explain",
                            "Grad-CAM: where in a painting the model finds a class (`artlens explain PATH --task style`)")),
    "export": ("write the review tags and corrected label CSVs", _entry("dashboard.export:main")),
    "bench": ("benchmarks: artlens bench [run|noise|audit|loop|ablation|paired|synthetic|subset|catalogue] ...",
              None),
}
BENCHES: dict[str, tuple[str, Callable]] = {
    "run": ("speed, memory and dashboard latency (make bench)", _entry("bench.run:main")),
    "noise": ("injected flips through the product path (make bench-noise)",
              _configured("bench.configs:NoiseBenchConfig", "bench.noise:run_bench", "artlens bench noise",
                          "how much of the review queue is real mislabels, on the product path (bench/noise.py)")),
    "audit": ("the rankings against the blind audit of real labels (make bench-audit)", _entry("bench.audit:main")),
    "loop": ("one round of review and retraining (make bench-loop)",
             _configured("bench.configs:LoopBenchConfig", "bench.loop:run_loop", "artlens bench loop",
                         "what one round of review and retraining buys (bench/loop.py)")),
    "ablation": ("the classifier's changes on and off (make bench-ablation)", _entry("bench.ablation:main")),
    "paired": ("two runs' cross-fitted top-1 on the same paintings", _entry("bench.paired:main")),
    "synthetic": ("a synthetic store of N paintings", _entry("bench.synthetic:main")),
    "subset": ("a smaller copy of a collection: every k-th painting, a manifest beside links",
               _configured("bench.configs:SubsetConfig", "bench.copies:write_subset", "artlens bench subset",
                           "every k-th painting of a collection as a manifest beside links to its class folders "
                           "(bench/copies.py): the smaller collections the benchmarks report on")),
    "catalogue": ("a collection as a museum catalogues it: numbered files, an artist column, dates in words",
                  _configured("bench.configs:CatalogueConfig", "bench.copies:write_catalogue", "artlens bench catalogue",
                              "every k-th painting of a collection as a museum would catalogue it (bench/copies.py): "
                              "numbered image files, a manifest with artist names, titles and dates as catalogues "
                              "write them")),
}


def usage() -> str:
    width = max(map(len, COMMANDS)) + 2
    lines = ["usage: artlens <command> [flags]   (artlens <command> --help for its flags)", "", "commands:"]
    lines += [f"  {name:<{width}}{what}" for name, (what, _) in COMMANDS.items()]
    lines += ["", "benchmarks (artlens bench <name>, default run):"]
    lines += [f"  {name:<{width}}{what}" for name, (what, _) in BENCHES.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = args[0], args[1:]
    if name == "bench":
        bench = rest[0] if rest and not rest[0].startswith("-") else "run"
        if bench not in BENCHES:
            print(f"error: unknown benchmark {bench!r}; one of: {', '.join(BENCHES)}", file=sys.stderr)
            return 2
        return run_cli(BENCHES[bench][1], rest[1:] if rest and rest[0] == bench else rest)
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    return run_cli(COMMANDS[name][1], rest)
