"""The base of every config section (kept apart from ``config`` so stage packages can define
their own section without importing the whole config)."""

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)
