"""The shape of the source tree: layers point one way, no import cycles, small functions, and every
function-local import says why it is local (an optional dependency or start-up time)."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "steindiff"
MODULES = sorted(PACKAGE.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


NAMES = {module_name(p): p for p in MODULES}


def _target(importer: str, node: ast.ImportFrom | ast.Import, is_package: bool) -> list[str]:
    """The steindiff modules an import statement loads (module-level names resolved to modules)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.startswith("steindiff")]
    base = node.module or ""
    if node.level:
        anchor = importer.split(".") if is_package else importer.split(".")[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join([*anchor, base] if base else anchor)
    if not base.startswith("steindiff"):
        return []
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in NAMES else base for a in node.names]


def import_graph() -> dict[str, set[str]]:
    """Module -> the steindiff modules it imports (at module level or inside functions: a cycle through a
    function-local import is still two modules that need each other)."""
    graph = {}
    for name, path in NAMES.items():
        edges = set()
        for stmt in ast.walk(ast.parse(path.read_text())):
            if isinstance(stmt, ast.Import | ast.ImportFrom):
                edges.update(t for t in _target(name, stmt, path.name == "__init__.py") if t in NAMES)
        graph[name] = edges - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt.startswith(node + "."):  # a package importing its own submodules is not a cycle
                continue
            if state.get(nxt) == 1 and not node.startswith(nxt + "."):
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_graph_sees_the_imports():
    graph = import_graph()
    assert "steindiff.core.sampling" in graph["steindiff.build"] or "steindiff.core" in graph["steindiff.build"]
    assert "steindiff.metrics.frechet" in graph["steindiff.metrics.fid"]


def test_no_import_cycle():
    assert find_cycle(import_graph()) is None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


@pytest.mark.parametrize("layer,forbidden", [("core", ("lightning", "pytorch_lightning", "hydra", "omegaconf",
                                                       "steindiff.cli", "steindiff.lightning", "steindiff.build")),
                                             ("metrics", ("steindiff.models", "steindiff.cli", "steindiff.lightning")),
                                             ("lightning", ("steindiff.cli", "hydra"))])
def test_layers_point_down(layer, forbidden):
    for path in (PACKAGE / layer).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            bad = [n for n in names if any(n == f or n.startswith(f + ".") for f in forbidden)]
            assert not bad, f"{path.relative_to(SRC)} imports {bad}"


def test_functions_are_small_and_local_imports_say_why():
    long, unexplained = [], []
    for path in MODULES:
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if node.end_lineno - node.lineno + 1 > 50:
                long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name}")
            for sub in ast.walk(node):
                line = lines[sub.lineno - 1] if isinstance(sub, ast.Import | ast.ImportFrom) else ""
                if line and "# start-up" not in line and "# optional" not in line:
                    unexplained.append(f"{path.relative_to(SRC)}:{sub.lineno} {line.strip()}")
    assert not long, long
    assert not unexplained, unexplained
