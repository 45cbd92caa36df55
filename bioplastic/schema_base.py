"""Base class for every typed schema in the project (protocol sections, task and model configs).

Schemas are pydantic models that refuse unknown keys and do not coerce types silently
(strict mode: ``"yes"`` is not a bool, ``"1e-3"`` is not a float). Integers are accepted where a
float is expected. Numbers must be finite: ``.inf`` and ``.nan`` are refused in every float field
(``allow_inf_nan=False``), naming the field.
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Schema(BaseModel):
    """A strict, frozen schema: unknown keys are refused, no silent type coercion, finite numbers only."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True, allow_inf_nan=False)
