"""The house rules, checked on the source: packages layered with no cycles, short functions, one
file per dashboard page, one `artlens` command."""
from __future__ import annotations

import ast
import re

from conftest import ROOT, run_cli

# Bottom to top: a package may import only those at its left (and itself).
LAYERS = ["db", "trainer", "embeddings", "dashboard", "bench", "artlens"]


def _modules() -> dict[str, set[str]]:
    """{module: every project module it imports, at the top or inside a function}."""
    mods = {}
    for path in ROOT.glob("*/**/*.py"):
        rel = path.relative_to(ROOT)
        if rel.parts[0] not in LAYERS:
            continue
        name = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
        imports = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imports |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
            elif isinstance(node, ast.Import):
                imports |= {a.name for a in node.names}
        mods[name] = {i for i in imports if i.split(".")[0] in LAYERS}
    return mods


def test_packages_import_only_downwards():
    mods = _modules()
    assert len(mods) > 40
    upward = [(m, i) for m, imps in mods.items() for i in imps
              if LAYERS.index(i.split(".")[0]) > LAYERS.index(m.split(".")[0])]
    assert not upward, upward


def test_no_import_cycles():
    mods = _modules()
    graph = {m: {i for i in imps if i in mods and i != m} for m, imps in mods.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(m, path):
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycles.append(path[path.index(n):] + [n])
            elif n not in state:
                visit(n, path + [n])
        state[m] = 2
    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, cycles


def test_no_function_over_100_lines_outside_tests():
    long = []
    for path in ROOT.glob("*/**/*.py"):
        rel = path.relative_to(ROOT)
        if rel.parts[0] not in LAYERS:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 100:
                long.append(f"{rel}:{node.lineno} {node.name}")
    assert not long, long


def test_one_file_per_dashboard_page_and_no_path_edits():
    pages = sorted(p.name for p in (ROOT / "dashboard" / "pages").glob("*.py"))
    app = (ROOT / "dashboard" / "app.py").read_text()
    assert sorted(re.findall(r'\("(\w+\.py)", "', app)) == pages and len(pages) == 6
    for path in ROOT.glob("*/**/*.py"):
        if path.relative_to(ROOT).parts[0] in LAYERS:
            assert "sys.path.insert" not in path.read_text(), path


def test_artlens_lists_its_commands_and_refuses_an_unknown_one():
    r = run_cli("")
    assert r.returncode == 0
    for command in ("train", "embed", "dashboard", "explain", "export", "bench"):
        assert re.search(rf"^  {command}\s", r.stdout, re.M), r.stdout
    r = run_cli("retrain")
    assert r.returncode == 2 and "unknown command 'retrain'" in r.stderr
    r = run_cli("bench", "nosuch")
    assert r.returncode == 2 and "unknown benchmark 'nosuch'" in r.stderr
