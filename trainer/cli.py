"""Shared CLI plumbing: flags generated from one config dataclass, and user errors as one line.

Every command (`artlens train`, `artlens embed`, ...) declares a dataclass; this module
turns its fields into argparse flags (field name `batch_size` -> `--batch-size`, help text from the
field's `metadata["help"]`) so the defaults live in exactly one place.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import typing
from typing import Callable, Sequence, TypeVar

T = TypeVar("T")


class UserError(Exception):
    """A problem with the user's input (path, CSV, flag): printed as one line, exit code 2."""


def field(default, help: str, **kw):
    """A dataclass field with help text for its generated CLI flag; `choices=[...]` limits it to
    those values (argparse), `bounds=(lo, hi)` to that closed range (`check_bounds`)."""
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata={"help": help, **kw})
    return dataclasses.field(default=default, metadata={"help": help, **kw})


def build_parser(cls: type, prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        help_text = f.metadata.get("help", "").replace("%", "%%")   # argparse formats help with %
        choices = f.metadata.get("choices")
        if f.metadata.get("positional"):   # e.g. `artlens explain PATH`
            parser.add_argument(f.name, type=kind, help=help_text)
        elif kind is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                                default=default, help=help_text)
        elif typing.get_origin(kind) is typing.Union:  # Optional[x]
            inner = [a for a in typing.get_args(kind) if a is not type(None)][0]
            parser.add_argument(flag, dest=f.name, type=inner, default=default, help=help_text, choices=choices)
        elif typing.get_origin(kind) in (list, tuple):
            inner = typing.get_args(kind)[0]
            parser.add_argument(flag, dest=f.name, type=inner, nargs="+", default=default, help=help_text)
        else:
            parser.add_argument(flag, dest=f.name, type=kind, default=default, help=help_text, choices=choices)
    return parser


def parse_config(cls: type[T], argv: Sequence[str] | None, prog: str, description: str) -> T:
    args = build_parser(cls, prog, description).parse_args(argv)
    cfg = cls(**vars(args))
    check_bounds(cfg)
    return cfg


def check_bounds(cfg) -> None:
    """Raise UserError for a field whose value lies outside its `bounds`, before anything is read or
    written."""
    for f in dataclasses.fields(cfg):
        bounds = f.metadata.get("bounds")
        value = getattr(cfg, f.name)
        if bounds is not None and not bounds[0] <= value <= bounds[1]:
            raise UserError(f"--{f.name.replace('_', '-')} {value} is not between {bounds[0]} and {bounds[1]}")


def run_cli(main: Callable[[Sequence[str] | None], object], argv: Sequence[str] | None = None) -> int:
    """Run `main`; a UserError becomes `error: <message>` on stderr and exit code 2, no traceback."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("faiss").setLevel(logging.WARNING)   # its loader logs every CPU-feature probe at INFO
    try:
        main(argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


def progress(items, desc: str, unit: str = "batch", leave: bool = True, total: int | None = None):
    """Iterate with a progress bar on a terminal; in a log file (no TTY) one log line per ~10% instead
    of a bar redrawn per batch. `total` lets a generator be consumed lazily (its length, not a list)."""
    import time

    from tqdm import tqdm
    if sys.stderr.isatty():
        yield from tqdm(items, desc=desc, unit=unit, leave=leave, total=total)
        return
    if total is None:
        items = list(items)
    n, t0, next_pct = (len(items) if total is None else total), time.time(), 10
    for i, x in enumerate(items, 1):
        yield x
        if n >= 20 and 100 * i // n >= next_pct and i < n:
            el = time.time() - t0
            logging.getLogger("progress").info("%s: %d%% (%d/%d %s), about %.0fs left", desc, 100 * i // n,
                                                       i, n, unit, el / i * (n - i))
            next_pct = 100 * i // n // 10 * 10 + 10
