"""The package's import graph: no cycle (lazy imports inside functions included) and no import
from a lower layer to a higher one. The layer order is `cotscope._layers.LAYERS`, written down
once; docs/architecture.md shows it."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).parent.parent
PKG = ROOT / "src" / "cotscope"


def layers() -> list[list[str]]:
    from cotscope._layers import LAYERS

    return [list(names) for _, names in LAYERS]


def test_the_architecture_page_shows_the_layers():
    from cotscope._layers import LAYERS

    text = ROOT.joinpath("docs", "architecture.md").read_text()
    rows = re.findall(r"^\d+\. ([^:\n]+): (.+)$", text, re.M)
    assert [(name, tuple(re.findall(r"`([^`]+)`", row))) for name, row in rows] == [(n, tuple(m)) for n, m in LAYERS]


def modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for path in PKG.rglob("*.py"):
        parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        out[".".join(parts)] = (path, is_pkg)
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the cotscope modules it imports anywhere in its body."""
    mods = modules()
    graph = {}
    for name, (path, is_pkg) in mods.items():
        here = name.split(".") if is_pkg else name.split(".")[:-1]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                base = here[: len(here) - node.level + 1] if node.level else []
                mod = ".".join(base + ([node.module] if node.module else [])) if node.level else node.module
                for alias in node.names:
                    if f"{mod}.{alias.name}" in mods:
                        targets.add(f"{mod}.{alias.name}")
                    elif mod in mods:
                        targets.add(mod)
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name in mods}
        targets.discard(name)
        graph[name] = targets
    return graph


def layer_of(module: str, table: list[list[str]]) -> int:
    rel = module.removeprefix("cotscope").lstrip(".") or "__init__"
    top = rel.split(".")[0]
    for i, names in enumerate(table):
        if top in names:
            return i
    raise AssertionError(f"module {module} is in no layer of cotscope._layers.LAYERS")


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_layer_list_is_complete():
    table = layers()
    assert len(table) >= 10
    for module in modules():
        layer_of(module, table)


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_no_upward_imports():
    table = layers()
    upward = [
        f"{src} (layer {layer_of(src, table) + 1}) imports {dst} (layer {layer_of(dst, table) + 1})"
        for src, targets in import_graph().items()
        for dst in targets
        if layer_of(dst, table) > layer_of(src, table)
    ]
    assert upward == []


def test_the_checker_sees_lazy_imports_and_cycles():
    """The graph includes imports inside functions, and a cycle is found when there is one."""
    graph = import_graph()
    assert "cotscope.report.html" in graph["cotscope.audit"]  # imported inside audit()
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_architecture_tree_names_every_module_and_package():
    """docs/architecture.md's tree of src/cotscope/ lists each top-level module and package."""
    from pathlib import Path

    root = Path(__file__).parent.parent
    doc = (root / "docs" / "architecture.md").read_text()
    tree = doc[doc.index("src/cotscope/"):]
    tree = tree[: tree.index("```")]
    pkg = root / "src" / "cotscope"
    names = [p.name for p in pkg.glob("*.py") if p.name != "__init__.py"] + [p.name + "/" for p in pkg.iterdir() if (p / "__init__.py").exists()]
    assert sorted(n for n in names if n not in tree) == []


def test_the_engine_is_a_room_of_its_own():
    """The transformers engine (cotscope.engine) imports from backends only the shared types of
    backends.base; no module imports a private name across the boundary either way; and no file
    of either package is over 400 lines."""
    graph = import_graph()
    engine = {m for m in graph if m.startswith("cotscope.engine")}
    for m in sorted(engine):
        assert {t for t in graph[m] if t.startswith("cotscope.backends")} <= {"cotscope.backends.base"}, m
    for path in list((PKG / "engine").glob("*.py")) + list((PKG / "backends").glob("*.py")):
        here = "engine" if path.parent.name == "engine" else "backends"
        other = "backends" if here == "engine" else "engine"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and other in node.module.split("."):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{path.relative_to(PKG)} imports {private} from {node.module}"
        assert len(path.read_text().splitlines()) <= 400, f"{path.relative_to(PKG)} is over 400 lines"
