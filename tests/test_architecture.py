"""The package's shape: one folder per step of the data flow, imports only from earlier steps.

The steps, earliest first, as ``docs/architecture.md`` draws them. A module may import its own step
and earlier ones; an import from a later step, or any cycle between modules, fails here with the
offending import named. The package's own imports sit at the top of each module: a function may
import only a module that pulls in a heavy library (torch, onnxruntime, ...) at load time
(``tests/test_cli.py`` checks that ``--help`` and completion load none of them).
"""

from __future__ import annotations

import ast
from pathlib import Path

import lesionaug

PACKAGE = Path(lesionaug.__file__).parent
STEPS = [
    {"errors", "progress", "atomic_files", "formats", "cards", "seeds", "safe_paths", "safe_weights", "environment", ""},  # foundations ("" is __init__)
    {"dataset"},
    {"masks"},
    {"plan"},
    {"engine"},
    {"output"},
    {"train"},
    {"export"},
    {"augment"},
    {"evaluate"},
    {"datalist"},
    {"demo"},
    {"cli", "__main__"},
]
HEAVY = ("torch", "diffusers", "transformers", "onnxruntime", "onnx", "onnxscript", "monai", "matplotlib",
         "accelerate", "safetensors", "scipy")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def step_of(module: str) -> int:
    first = module.split(".")[1] if "." in module else ""
    for i, names in enumerate(STEPS):
        if first in names:
            return i
    raise AssertionError(f"{module} belongs to no step: add its folder to STEPS and docs/architecture.md")


def imported(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The package modules one import statement loads (``from pkg import mod`` names a module)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.startswith("lesionaug")]
    if node.level:
        base = module.split(".")
        if MODULES[module].name != "__init__.py":
            base = base[:-1]
        base = base[: len(base) - node.level + 1]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    if not source.startswith("lesionaug"):
        return []
    return [f"{source}.{a.name}" if f"{source}.{a.name}" in MODULES else source for a in node.names]


def edges() -> dict[str, dict[str, tuple[int, bool]]]:
    """module -> {imported module: (line, at top level)}."""
    graph: dict[str, dict[str, tuple[int, bool]]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = {id(n) for n in tree.body}
        out: dict[str, tuple[int, bool]] = {}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in imported(module, node):
                    if target in MODULES and target != module:
                        out.setdefault(target, (node.lineno, id(node) in top))
        graph[module] = out
    return graph


def loads_heavy_library(module: str) -> bool:
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    for node in tree.body:
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
        if any(n.split(".")[0] in HEAVY for n in names):
            return True
    return False


GRAPH = edges()


def test_every_module_belongs_to_a_step():
    for module in MODULES:
        step_of(module)


# The package's own face may hand out public entry points (``lesionaug.open_dataset``) from any step,
# loaded on first use by its module ``__getattr__``, so ``import lesionaug`` loads none of them.
LAZY_FACES = ("lesionaug", "lesionaug.engine")


def test_no_import_runs_against_the_data_flow():
    upward = [
        f"{module} (line {line}) imports {target}: step {step_of(target)} is later than step {step_of(module)}"
        for module, targets in GRAPH.items()
        for target, (line, top) in targets.items()
        if step_of(target) > step_of(module) and not (module in LAZY_FACES and not top)
    ]
    assert not upward, "\n".join(upward)


def find_cycle(graph: dict[str, dict[str, tuple[int, bool]]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, {}):
            if nxt.startswith(node + ".") or node.startswith(nxt + "."):
                continue  # a package and its own modules: __init__ is a face, not a dependency
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if state.get(nxt) is None and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in graph:
        if state.get(node) is None and (found := visit(node)):
            return found
    return None


def test_no_import_cycle():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_cycle_finder_finds_a_planted_cycle():
    planted = {"a": {"b": (1, True)}, "b": {"c": (1, True)}, "c": {"a": (1, False)}, "d": {}}
    assert find_cycle(planted) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": (1, True)}, "b": {}}) is None


def test_depth_of_the_import_graph_stays_small():
    depth: dict[str, int] = {}

    def longest(node: str) -> int:
        if node not in depth:
            depth[node] = 0  # guards a cycle, which test_no_import_cycle reports
            depth[node] = 1 + max((longest(t) for t in GRAPH[node] if not t.startswith(node + ".")), default=0)
        return depth[node]

    deepest = max(MODULES, key=longest)
    assert longest(deepest) <= 12, f"{deepest} sits {longest(deepest)} imports deep"


def test_own_imports_sit_at_the_top_of_each_module():
    hidden = [
        f"{module} (line {line}) imports {target} inside a function"
        for module, targets in GRAPH.items()
        for target, (line, top) in targets.items()
        if not top and not loads_heavy_library(target) and module not in LAZY_FACES
    ]
    assert not hidden, "\n".join(hidden)


def test_the_package_face_loads_nothing_until_asked():
    import subprocess
    import sys

    code = (
        "import sys, lesionaug; before = sorted(m for m in sys.modules if m.startswith('lesionaug.')); "
        "lesionaug.open_dataset; print(before, 'lesionaug.dataset.samples' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[] True"
