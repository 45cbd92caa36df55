"""Base class for every typed schema in the project (protocol sections, task and model configs).

Schemas are pydantic models that refuse unknown keys and do not coerce types silently
(strict mode: ``"yes"`` is not a bool, ``"1e-3"`` is not a float). Integers are accepted where a
float is expected.
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Schema(BaseModel):
    """A strict, frozen schema: unknown keys are refused, no silent type coercion."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)
