"""The app's import graph: no cycle among its modules through the configuration (settings,
its checks, the model catalog), counting imports inside functions and type-only ones; and
the shipped CLI loads no module of the eval harness until ``foreman eval`` runs."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = {"app.settings", "app.settings_schema", "app.validate", "app.llm.catalog"}


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere in its source."""
    modules = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def test_import_layout_configuration_modules_sit_in_no_cycle() -> None:
    graph = import_graph(ROOT / "app")
    assert set(graph) >= CONFIG
    looped = {m for m in CONFIG if m in reachable(graph, m)}
    assert looped == set(), f"import cycles through {sorted(looped)}"
    # The schema is the bottom: nothing it imports leads back to the loader or the checks.
    assert reachable(graph, "app.settings_schema").isdisjoint(CONFIG)
    assert "app.settings_schema" in reachable(graph, "app.llm.catalog")


def test_import_layout_cycle_check_sees_a_function_level_cycle(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.b import thing\n")
    (pkg / "b.py").write_text("def thing():\n    from pkg import a\n    return a\n")
    graph = import_graph(pkg)
    assert "pkg.a" in reachable(graph, "pkg.a")


def test_import_layout_cli_loads_no_eval_harness() -> None:
    probe = ("import sys\nsys.argv = ['foreman', '--help']\nfrom app.cli import main\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] == 'evals'))\n")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, check=True)
    assert "Usage" in out.stdout and out.stdout.strip().splitlines()[-1] == "[]"
