"""The library's layers: imports flow one way (models/data/text/vad -> engine/metrics/features -> recipes ->
pipeline -> analysis/viz -> cli), there is no import cycle, and no unit outgrows the sizes the layout aims at."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[1] / "sevlm_lib"

# Lower numbers are lower layers; a module may import its own layer or any layer below it.
LAYERS: dict[str, int] = {
    "settings": 0,
    "emotions": 0,
    "registry": 0,
    "io": 0,
    "models": 1,
    "text": 1,
    "vad": 2,
    "data": 3,
    "generation": 3,
    "engine": 4,
    "metrics": 4,
    "features": 4,
    "memory": 4,
    "baselines": 4,
    "tower": 4,
    "recipes": 5,
    "pipeline": 6,
    "reload": 6,
    "analysis": 7,
    "viz": 7,
    "cli": 8,
    "course": 8,
    "student": 8,
    "train": 8,
    "evaluate": 8,
    "predict": 8,
    "check": 8,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(LIB.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    top = module.split(".")[1] if module.count(".") else ""
    if top not in LAYERS:
        raise AssertionError(f"{module}: not assigned to a layer in tests/test_layout.py")
    return LAYERS[top]


def _under_main_guard(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
            lines.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return lines


def library_imports(path: Path) -> dict[str, int]:
    """``{imported sevlm_lib module: line}`` for every import in the file (function-local ones too), except
    under ``if __name__ == "__main__"``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    guarded = _under_main_guard(tree)
    found: dict[str, int] = {}
    for node in ast.walk(tree):
        if getattr(node, "lineno", 0) in guarded:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sevlm_lib"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                target = (
                    full
                    if (LIB.parent / Path(*full.split("."))).with_suffix(".py").exists()
                    or (LIB.parent / Path(*full.split("."))).is_dir()
                    else node.module
                )
                found.setdefault(target, node.lineno)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("sevlm_lib"):
                    found.setdefault(alias.name, node.lineno)
    return found


MODULES = sorted(p for p in LIB.rglob("*.py"))


def test_every_module_has_a_layer() -> None:
    for path in MODULES:
        if path.parent == LIB and path.name == "__init__.py":
            continue
        layer_of(module_name(path))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(LIB)))
def test_imports_flow_downwards(path: Path) -> None:
    if path.parent == LIB and path.name == "__init__.py":
        return
    me = module_name(path)
    upward = [
        f"line {line}: {target} (layer {layer_of(target)})"
        for target, line in library_imports(path).items()
        if target != "sevlm_lib" and layer_of(target) > layer_of(me)
    ]
    assert not upward, f"{me} (layer {layer_of(me)}) imports from a higher layer: {upward}"


def test_no_import_cycle() -> None:
    graph: dict[str, set[str]] = {}
    for path in MODULES:
        me = module_name(path)
        graph[me] = {t for t in library_imports(path) if t != me}
    done: set[str] = set()

    def visit(node: str, stack: list[str]) -> None:
        if node in stack:
            raise AssertionError("import cycle: " + " -> ".join([*stack[stack.index(node) :], node]))
        if node in done or node not in graph:
            return
        for target in sorted(graph[node]):
            # a package's __init__ re-exports its submodules: importing them from it is not a cycle
            if target.startswith(node + "."):
                continue
            visit(target, [*stack, node])
        done.add(node)

    for module in sorted(graph):
        visit(module, [])


def test_units_stay_small() -> None:
    """No module over 800 lines, no class over 300, no function over 120 (the layout's limits)."""
    too_big = []
    for path in MODULES:
        source = path.read_text(encoding="utf-8")
        if len(source.splitlines()) > 800:
            too_big.append(f"{path.relative_to(LIB)}: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)):
            size = (getattr(node, "end_lineno", 0) or 0) - getattr(node, "lineno", 0) + 1
            if isinstance(node, ast.ClassDef) and size > 300:
                too_big.append(f"{path.relative_to(LIB)}:{node.lineno} class {node.name}: {size} lines")
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and size > 120:
                too_big.append(f"{path.relative_to(LIB)}:{node.lineno} {node.name}: {size} lines")
    assert not too_big, too_big
