"""The folders are layers: each imports only the layers below it, so the import graph has no upward
arrow and no cycle (between layers, or between modules)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "latentlab"

#: lowest first; a module may import its own layer's modules and any lower layer's
LAYERS = {
    "config": 0, "checks": 0, "distributions": 0, "distributed": 0,
    "data": 1, "nets": 2, "models": 3, "training": 4, "evaluation": 5, "editing": 6, "chapters": 7, "commands": 8,
}
ENTRY_POINTS = {"__init__", "__main__"}  # the package's own face may import from every layer


def internal_imports(root: Path) -> dict[str, set[str]]:
    """module -> the latentlab modules it imports (module level and inside functions), by dotted name."""
    graph = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        module = ".".join(parts[:-1] if is_package else parts)
        package = module.split(".") if is_package else module.split(".")[:-1]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
                targets |= {base} if node.module else {f"{base}.{alias.name}" for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(root.name):
                targets.add(node.module)
        graph[module] = targets
    return graph


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for module, targets in graph.items():
        here = layer_of(module)
        if here is None or module.split(".")[1] in ENTRY_POINTS:
            continue
        found += [f"{module} -> {t}" for t in sorted(targets) if (layer_of(t) or 0) > here]
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles among modules (a package's ``__init__`` importing its own submodules is not one)."""
    modules = set(graph)
    edges = {m: {t for t in graph[m] if t in modules and not t.startswith(m + ".")} for m in modules}
    found, state = [], {}

    def visit(node, trail):
        state[node] = "open"
        for nxt in edges[node]:
            if state.get(nxt) == "open":
                found.append(trail[trail.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = "done"

    for module in sorted(modules):
        if module not in state:
            visit(module, [module])
    return found


def test_every_layer_imports_only_lower_layers():
    assert upward_imports(internal_imports(PACKAGE)) == []


def test_no_import_cycles():
    assert cycles(internal_imports(PACKAGE)) == []


def test_the_checks_find_an_upward_import_and_a_cycle(tmp_path):
    root = tmp_path / "latentlab"
    (root / "models").mkdir(parents=True)
    (root / "editing").mkdir()
    (root / "__init__.py").write_text("")
    (root / "models" / "__init__.py").write_text("")
    (root / "editing" / "__init__.py").write_text("")
    (root / "models" / "base.py").write_text("from ..editing.sliders import static_sliders\n")  # models -> editing
    (root / "editing" / "sliders.py").write_text("from ..models.base import LatentVariableModel\n")
    graph = internal_imports(root)
    assert upward_imports(graph) == ["latentlab.models.base -> latentlab.editing.sliders"]
    assert cycles(graph) and set(cycles(graph)[0]) == {"latentlab.models.base", "latentlab.editing.sliders"}
