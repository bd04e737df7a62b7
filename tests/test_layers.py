"""The folders are the architecture: each layer imports only the layers below it, and no
module imports itself back through others. Function-level and ``TYPE_CHECKING`` imports
count too; see docs/design.md."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "modeltriage"

# What each layer may import, besides itself. ``errors`` is the floor under everything.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "core": {"errors"},
    "log": {"errors", "core"},
    "followup": {"errors", "core", "log"},
    # What a router is assembled from (encoder, index, logger): the router's layer, one
    # module below it.
    "loading": {"errors", "core", "log", "followup"},
    "router": {"errors", "core", "log", "followup", "loading"},
    # Hot reload holds a router: the router's layer, one module above it.
    "reloader": {"errors", "core", "log", "followup", "loading", "router"},
    "learn": {"errors", "core", "log", "followup", "loading", "router"},
    "http": {
        *("errors", "core", "log", "followup", "loading", "router", "reloader", "learn"),
        "package",
    },
    "cli": {
        *("errors", "core", "log", "followup", "loading", "router", "reloader", "learn"),
        *("http", "package"),
    },
    "package": {"errors", "core", "log", "followup", "loading", "router"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "package"
    return parts[1]


def imports(path: Path, modules: set[str]) -> set[str]:
    """The modeltriage modules ``path`` imports, wherever in the file."""
    name = module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            targets = [f"{source}.{alias.name}" for alias in node.names] + [source]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        for target in targets:
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in modules and target != name:
                found.add(target)
                break
    return found


def graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: imports(path, set(paths)) for name, path in paths.items()}


def test_every_import_goes_down_the_layers() -> None:
    wrong = [
        f"{source} imports {target}"
        for source, targets in graph().items()
        for target in sorted(targets)
        if layer(target) != layer(source) and layer(target) not in ALLOWED[layer(source)]
    ]
    assert wrong == []


def test_no_import_cycles() -> None:
    edges = graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for target in sorted(edges[node]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert cycles == []


def test_the_layers_cover_every_module() -> None:
    assert {layer(name) for name in graph()} <= set(ALLOWED)
