"""Explicit registries: a name in YAML (``kind: leaky_rate``) maps to one class.

Duplicate registrations are refused, and a lookup of an unknown name lists the known ones and the
closest match ("did you mean ...?").
"""
from __future__ import annotations

import difflib
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """Raised by :meth:`Registry.get` for a name that is not registered."""

    def __init__(self, what: str, name: object, known: list[str]):
        self.what, self.name, self.known = what, name, known
        hint = difflib.get_close_matches(str(name), known, n=1)
        msg = f"unknown {what} {name!r}; expected one of: {', '.join(known)}"
        if hint:
            msg += f" (did you mean {hint[0]!r}?)"
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return self.args[0]


class Registry(Generic[T]):
    """A name -> class mapping for one family (tasks, networks, schedules, ...)."""

    def __init__(self, what: str):
        self.what = what
        self._items: dict[str, T] = {}

    def register(self, name: str):
        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.what} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise UnknownNameError(self.what, name, self.names()) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
