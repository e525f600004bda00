"""No flywheel stage may see the hidden world: only simulate/, the CLI and the demo wiring import it."""

import ast
from pathlib import Path

import characterflywheel

PACKAGE_ROOT = Path(characterflywheel.__file__).parent
ALLOWED = {"cli.py", "demo.py"}


def module_package(path: Path) -> str:
    return ".".join(("characterflywheel", *path.relative_to(PACKAGE_ROOT).parent.parts))


def imported_modules(source: str, package: str) -> set[str]:
    """Every module a source file imports, relative imports resolved against ``package``."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                module = ".".join([*parts[: len(parts) - node.level + 1], *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def touches_world(name: str) -> bool:
    return name == "characterflywheel.simulate" or name.startswith("characterflywheel.simulate.")


def test_only_the_world_the_cli_and_the_demo_import_the_world() -> None:
    offenders = []
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        relative = path.relative_to(PACKAGE_ROOT)
        if relative.parts[0] == "simulate" or relative.as_posix() in ALLOWED:
            continue
        leaks = sorted(filter(touches_world, imported_modules(path.read_text(encoding="utf-8"), module_package(path))))
        if leaks:
            offenders.append(f"{relative}: {', '.join(leaks)}")
    assert not offenders, "flywheel code imports the simulated world:\n" + "\n".join(offenders)


def test_the_walker_catches_absolute_and_relative_imports() -> None:
    for source in ("import characterflywheel.simulate.landscape\n",
                   "from characterflywheel.simulate import landscape\n",
                   "from ..simulate.landscape import Landscape\n",
                   "from .. import simulate\n",
                   "from characterflywheel import simulate\n"):
        assert any(map(touches_world, imported_modules(source, "characterflywheel.curate"))), source
    assert not any(map(touches_world, imported_modules("from ..evaluate import ab\n", "characterflywheel.curate")))
