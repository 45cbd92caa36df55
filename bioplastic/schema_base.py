"""Base class for every typed schema in the project (protocol sections, task and model configs).

Schemas are pydantic models that refuse unknown keys and do not coerce types silently
(strict mode: ``"yes"`` is not a bool, ``"1e-3"`` is not a float). Integers are accepted where a
float is expected. Numbers must be finite: ``.inf`` and ``.nan`` are refused in every float field
(``allow_inf_nan=False``), naming the field.
"""
from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict


class Schema(BaseModel):
    """A strict, frozen schema: unknown keys are refused, no silent type coercion, finite numbers only."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True, allow_inf_nan=False)


def validated_config(config_cls: type[Schema], config: Schema | Mapping | None, what: str) -> Schema:
    """``config`` as an instance of ``config_cls``: an instance is used as it is, a mapping (``None``:
    an empty one) is validated by it; another schema is refused (it belongs to another kind)."""
    if isinstance(config, config_cls):
        return config
    if isinstance(config, BaseModel):
        raise TypeError(f"{what} settings: expected a {config_cls.__module__}.{config_cls.__qualname__} or a mapping, "
                        f"got a {type(config).__qualname__} (the settings of another kind?)")
    if config is not None and not isinstance(config, Mapping):
        raise TypeError(f"{what} settings: expected a {config_cls.__qualname__} or a mapping, got {type(config).__name__}")
    return config_cls.model_validate(dict(config or {}))
