"""The package's layers (docs/architecture.md): no import cycle, and no upward import.

The imports are read from the source (ast), so the test sees imports inside
functions too. A new upward import fails here; the known ones are listed,
each a debt docs/architecture.md names, so that the list can only shrink.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "provbatch"

#: bottom to top; a module may import its own layer and those below it
LAYERS: list[set[str]] = [
    {"errors", "version", "context", "processes", "files"},
    {"contract"},
    {"plugins", "multiplug"},
    {"inputs"},
    {"execution"},
    {"options"},  # RunOptions: its choices read the registries (execution's backends)
    {"store", "outputs", "provenance"},
    {"engine"},
    {"api", "cli", "authoring", ""},  # "" is provbatch/__init__.py, the lazy public face
]
#: (importing module, imported module) pairs that break the layers today (docs/architecture.md)
KNOWN_UPWARD: set[tuple[str, str]] = set()


def layer_of(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    for index, names in enumerate(LAYERS):
        if top in names:
            return index
    raise AssertionError(f"{module}: its package {top!r} is in no layer of this test or of docs/architecture.md")


def module_imports() -> dict[str, set[str]]:
    """Every provbatch module -> the provbatch modules (or packages) it imports, anywhere in its body."""
    imports: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        module = ".".join(parts[:-1] if is_package else parts)
        package = module if is_package else module.rsplit(".", 1)[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if target.split(".")[0] == "provbatch":
                    # `from .. import context` imports the module provbatch.context, not provbatch itself
                    found.update([target] if node.module else [f"{target}.{alias.name}" for alias in node.names])
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "provbatch")
        imports[module] = found - {module}
    return imports


def test_every_package_has_a_layer():
    for module in module_imports():
        layer_of(module)


def test_no_upward_import_but_the_known_ones():
    upward = {
        (module, target)
        for module, targets in module_imports().items()
        for target in targets
        if layer_of(target) > layer_of(module)
    }
    assert upward - KNOWN_UPWARD == set(), "imports from a higher layer (see docs/architecture.md)"
    assert KNOWN_UPWARD - upward == set(), "a known upward import is gone: take it off KNOWN_UPWARD"


def test_no_cycle_between_packages_at_import_time():
    """Module-level imports only (what runs at import): no two top-level packages need each other."""
    edges: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        top = parts[1] if len(parts) > 2 else parts[1].removesuffix("__init__") if len(parts) > 1 else ""
        tree = ast.parse(path.read_text())
        for node in tree.body:  # module level only
            if isinstance(node, ast.ImportFrom) and node.level:
                depth = len(parts) - 1 - node.level  # the package the import climbs to, below provbatch
                target_parts = list(parts[1:depth + 1]) + (node.module.split(".") if node.module else [])
                target = target_parts[0] if target_parts else ""
                if target and target != top:
                    edges.setdefault(top, set()).add(target)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in edges.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    cycles = sorted(top for top in edges if reaches(top, top, {top}))
    assert cycles == []
