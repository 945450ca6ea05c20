"""The edge's boundary (issue 8): no import circle, and the API never loads uvicorn's protocol."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import madbwpu_r

PACKAGE = Path(madbwpu_r.__file__).parent


def _imports(path: Path, module: str) -> set[str]:
    """Every madbwpu_r module `path` imports, TYPE_CHECKING blocks and function bodies included."""
    found: set[str] = set()
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in found if m.startswith("madbwpu_r.")}


def _graph() -> dict[str, set[str]]:
    modules: dict[str, Path] = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        modules[name] = path
    return {m: _imports(p, m) & modules.keys() - {m} for m, p in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_circle_among_the_edge_modules():
    graph = _graph()
    edge = {m: {n for n in deps if n.startswith("madbwpu_r.edge")} for m, deps in graph.items()}
    edge = {m: deps for m, deps in edge.items() if m.startswith("madbwpu_r.edge")}
    # The package __init__ names its submodules for type checkers only; leave it out.
    edge.pop("madbwpu_r.edge", None)
    edge = {m: deps - {"madbwpu_r.edge"} for m, deps in edge.items()}
    assert _cycle(edge) is None, f"import circle: {' -> '.join(_cycle(edge) or [])}"
    for handler in ("madbwpu_r.edge.admin", "madbwpu_r.edge.subscriber"):
        assert "madbwpu_r.edge.app" not in graph[handler]


def test_the_purge_package_does_not_depend_on_the_edge():
    graph = _graph()
    for module, deps in graph.items():
        if module.startswith("madbwpu_r.purge"):
            assert not {d for d in deps if d.startswith("madbwpu_r.edge")}, module


def test_importing_the_api_does_not_load_uvicorns_protocols():
    code = (
        "import sys, madbwpu_r.api, madbwpu_r.api.state, madbwpu_r.edge\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('uvicorn.protocols', "
        "'madbwpu_r.edge.')))\n"
        "print(loaded)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
