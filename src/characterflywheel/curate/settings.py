"""The ``[curate]`` config section and its preset values."""

from __future__ import annotations

from typing import Any

from pydantic import Field  # noqa: F401

from characterflywheel.section import Section


class CurateConfig(Section):
    pass


# Merged into config.PRESETS["tiny"] / ["demo"] under the "curate" key.
PRESETS: dict[str, dict[str, Any]] = {"tiny": {}, "demo": {}}
