"""No flywheel stage may see the hidden world: only simulate/, the CLI and the demo wiring import it."""

from test_layers import PACKAGE_ROOT, all_modules, imports_of

ALLOWED = {"cli.py", "demo.py"}


def touches_world(name: str) -> bool:
    return name == "characterflywheel.simulate" or name.startswith("characterflywheel.simulate.")


def test_only_the_world_the_cli_and_the_demo_import_the_world() -> None:
    modules = all_modules()
    offenders = []
    for name, path in sorted(modules.items()):
        relative = path.relative_to(PACKAGE_ROOT)
        if relative.parts[0] == "simulate" or relative.as_posix() in ALLOWED:
            continue
        found = imports_of(name, path.read_text(encoding="utf-8"), modules, path.name == "__init__.py")
        leaks = sorted(filter(touches_world, found))
        if leaks:
            offenders.append(f"{relative}: {', '.join(leaks)}")
    assert not offenders, "flywheel code imports the simulated world:\n" + "\n".join(offenders)


def test_the_walker_catches_absolute_and_relative_imports() -> None:
    modules = all_modules()
    for source in ("import characterflywheel.simulate.landscape\n",
                   "from characterflywheel.simulate import landscape\n",
                   "from ..simulate.landscape import Landscape\n",
                   "from .. import simulate\n",
                   "from characterflywheel import simulate\n"):
        assert any(map(touches_world, imports_of("characterflywheel.curate.stage", source, modules))), source
    assert not any(map(touches_world, imports_of("characterflywheel.curate.stage", "from ..evaluate import ab\n",
                                                 modules)))
