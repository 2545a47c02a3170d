"""The app's import graph: no cycle among its modules, counting imports inside functions and
type-only ones; no module of app/ imports the eval harness when it is imported; and the
shipped CLI loads no module of the eval harness until ``foreman eval`` runs.

Modules are found by their dotted tails (``llm.catalog``), not their full paths, so the
checks hold wherever a module sits under app/."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def modules_of(package: Path) -> dict[str, Path]:
    """Dotted module name -> source file, for every module under ``package``."""
    modules = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imported(node: ast.AST) -> list[str]:
    """The dotted names an import statement may load (a module, or a module's member)."""
    if isinstance(node, ast.ImportFrom) and node.module and not node.level:
        return [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    return []


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere in its source."""
    modules = modules_of(package)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            graph[name] |= {t for t in imported(node) if t in modules and t != name}
    return graph


def import_time_imports(tree: ast.Module) -> list[str]:
    """What a module imports while it is imported: not in functions, not under TYPE_CHECKING."""
    out: list[str] = []
    todo: list[ast.AST] = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo.extend(node.orelse)
            continue
        out += imported(node)
        todo.extend(ast.iter_child_nodes(node))
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, nexts = work[-1]
            nxt = next(nexts, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def module(graph: dict[str, set[str]], tail: str) -> str:
    """The one module whose dotted name ends with ``tail``."""
    named = [m for m in graph if m == tail or m.endswith("." + tail)]
    assert len(named) == 1, f"{tail}: {named}"
    return named[0]


def test_import_layout_app_modules_sit_in_no_cycle() -> None:
    assert cycles(import_graph(ROOT / "app")) == []


def test_import_layout_configuration_schema_is_the_bottom() -> None:
    graph = import_graph(ROOT / "app")
    schema = module(graph, "settings_schema")
    config = {module(graph, t) for t in ("settings", "validate", "llm.catalog")}
    # Nothing the schema imports leads back to the loader, the checks or the catalog.
    assert reachable(graph, schema).isdisjoint(config)
    assert schema in reachable(graph, module(graph, "llm.catalog"))


def test_import_layout_app_imports_no_eval_harness_at_import_time() -> None:
    offenders = {name: sorted(t for t in import_time_imports(ast.parse(path.read_text(
                     encoding="utf-8"))) if t.split(".")[0] == "evals")
                 for name, path in modules_of(ROOT / "app").items()}
    assert {n: t for n, t in offenders.items() if t} == {}


def test_import_layout_checks_see_what_they_forbid(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.b import thing\n")
    (pkg / "b.py").write_text("def thing():\n    from pkg import a\n    return a\n")
    (pkg / "c.py").write_text("import pkg.a\n")
    assert cycles(import_graph(pkg)) == [["pkg.a", "pkg.b"]]
    top = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import evals.x\n"
                    "try:\n    from evals.y import z\nexcept ImportError:\n    pass\n"
                    "def f():\n    import evals.w\n")
    assert [t for t in import_time_imports(top) if t.startswith("evals")] == [
        "evals.y", "evals.y.z"]


def test_import_layout_cli_loads_no_eval_harness() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    entry = next(line.split("=", 1)[1].strip().strip('"') for line in pyproject.splitlines()
                 if line.startswith("foreman ="))
    target, _, func = entry.partition(":")
    probe = (f"import sys\nsys.argv = ['foreman', '--help']\nfrom {target} import {func}\n"
             f"try:\n    {func}()\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] == 'evals'))\n")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, check=True)
    assert "Usage" in out.stdout and out.stdout.strip().splitlines()[-1] == "[]"
