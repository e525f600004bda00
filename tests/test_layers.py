"""Imports flow one way: no module imports itself back through others, and no stage package reaches
up into the wiring (config, pipeline, flywheel, cli, demo, production, experiments, summary).

``from package import submodule`` counts as importing the submodule (every submodule import runs its
package's ``__init__`` anyway, so counting the package too would make every re-export a cycle).
Function-local imports count like top-level ones: a lazy import does not make a cycle go away.
"""

from __future__ import annotations

import ast
from pathlib import Path

import characterflywheel

PACKAGE_ROOT = Path(characterflywheel.__file__).parent
STAGE_PACKAGES = {"data", "curate", "reward", "sample", "train", "evaluate", "deploy", "simulate", "models",
                  "characters", "report"}
WIRING = {"config", "pipeline", "flywheel", "cli", "demo", "production", "experiments", "summary"}
ENTRY_POINTS = {"__main__.py"}  # `python -m characterflywheel.train` reads a flywheel config: a CLI, not a stage


def all_modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE_ROOT.rglob("*.py"):
        relative = path.relative_to(PACKAGE_ROOT).with_suffix("")
        parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
        modules[".".join(("characterflywheel", *parts))] = path
    return modules


def imports_of(name: str, source: str, modules: dict[str, Path], is_package: bool = False) -> set[str]:
    """The package's own modules (and namespace packages, such as ``simulate``) that ``source``
    (module ``name``) imports."""
    package = name if is_package else name.rsplit(".", 1)[0]
    known = set(modules) | {".".join(m.split(".")[:depth]) for m in modules for depth in range(1, m.count(".") + 1)}
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            found.update(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                         for alias in node.names)
    return {module for module in found if module in known and module != name}


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports_of(name, path.read_text(encoding="utf-8"), modules, path.name == "__init__.py")
            for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_import_graph_has_no_cycles() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(component) for component in found)


def test_stage_packages_do_not_import_the_wiring() -> None:
    modules = all_modules()
    offenders = []
    for name, targets in import_graph().items():
        parts = name.split(".")
        if len(parts) < 2 or parts[1] not in STAGE_PACKAGES or modules[name].name in ENTRY_POINTS:
            continue
        upward = sorted(t for t in targets if len(t.split(".")) == 2 and t.split(".")[1] in WIRING)
        if upward:
            offenders.append(f"{name}: {', '.join(upward)}")
    assert not offenders, "stage packages importing the wiring:\n" + "\n".join(offenders)


def test_the_checks_see_a_cycle_and_an_upward_import() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    modules = {"characterflywheel.config": Path(), "characterflywheel.curate": Path(),
               "characterflywheel.curate.stage": Path()}
    lazy = "def f():\n    from ..config import Config\n"
    assert imports_of("characterflywheel.curate.stage", lazy, modules) == {"characterflywheel.config"}
    assert imports_of("characterflywheel.curate.stage", "from characterflywheel import curate\n", modules) == {
        "characterflywheel.curate"}


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The module graph folded onto the top-level packages and modules (``characterflywheel.curate``,
    ``characterflywheel.flywheel``): an edge where any module of one imports any module of the other.
    Entry points (``python -m characterflywheel.train``) are left out: they are CLIs, not the package."""

    def top(module: str) -> str:
        return ".".join(module.split(".")[:2])

    folded: dict[str, set[str]] = {}
    for source, targets in graph.items():
        if source.rsplit(".", 1)[-1] == "__main__":
            continue
        folded.setdefault(top(source), set()).update(top(t) for t in targets if top(t) != top(source))
    return folded


def test_the_packages_import_one_way() -> None:
    found = cycles(package_graph(import_graph()))
    assert not found, "packages importing each other:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_package_check_folds_modules_onto_their_packages() -> None:
    graph = {"characterflywheel.evaluate.offline": {"characterflywheel.characters"},
             "characterflywheel.characters": {"characterflywheel.evaluate.instructions"}}
    assert cycles(package_graph(graph)) == [["characterflywheel.characters", "characterflywheel.evaluate"]]
