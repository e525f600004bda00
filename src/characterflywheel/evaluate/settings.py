"""The ``[evaluate]`` config section (offline evaluation, monitors and gates) and its presets."""

from __future__ import annotations

from typing import Any

from pydantic import Field  # noqa: F401

from characterflywheel.section import Section


class EvaluateConfig(Section):
    pass


# Merged into config.PRESETS["tiny"] / ["demo"] under the "evaluate" key.
PRESETS: dict[str, dict[str, Any]] = {"tiny": {}, "demo": {}}
