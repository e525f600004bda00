"""The deploy decision: which arms a generation's window served, the champion coming out of it, and why.

Written once per generation by the deploy stage (``artifacts.DECISION``) and read back by the next
generation's lineage, the run summary, the report and the command line, so its shape lives here.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from characterflywheel.data.jsonl import write_json


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    champion_model: str          # the champion after this window (the challenger's when promoted)
    champion_version: str
    challenger_model: str | None = None
    challenger_version: str | None = None
    promoted: bool = False
    arms: dict[str, str] = Field(default_factory=dict)  # arm name -> model version it served
    reason: str = ""

    @property
    def parent_version(self) -> str | None:
        """The champion going into the window (the one the challenger was read against)."""
        return self.arms.get("champion", None if self.promoted else self.champion_version)

    def write(self, path: Path) -> None:
        write_json(path, self.model_dump())


def read_decision(path: Path) -> Decision:
    """A decision file; a bad one is a one-line ``ValueError`` naming the file and the field."""
    try:
        return Decision.model_validate_json(Path(path).read_text(encoding="utf-8"))
    except ValueError as error:
        first = error.errors()[0] if hasattr(error, "errors") else {"loc": (), "msg": str(error)}
        field = ".".join(str(part) for part in first["loc"]) or "<record>"
        raise ValueError(f"{path}: {field}: {first['msg']}") from None
