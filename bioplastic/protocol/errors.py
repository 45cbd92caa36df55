"""Protocol errors: one line per problem, naming the field, what was expected and what was given."""
from __future__ import annotations

import difflib
import reprlib
import types
import typing

from pydantic import BaseModel, ValidationError


class ProtocolError(Exception):
    """A protocol (or an override) is invalid. ``problems`` holds one message per field."""

    def __init__(self, problems: list[str] | str, source: str = ""):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        head = f"invalid protocol {source}" if source else "invalid protocol"
        super().__init__(head + ":\n" + "\n".join(f"  - {p}" for p in self.problems))


def _unwrap(tp):
    """The schema class an annotation holds (through Optional, list, dict values, Annotated)."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        return [t for a in typing.get_args(tp) for t in ([_unwrap(a)] if _unwrap(a) else [])]
    if origin in (dict, list, tuple):
        args = typing.get_args(tp)
        return _unwrap(args[-1]) if args else None
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    return None


def _allowed_keys(root: type[BaseModel] | None, loc: tuple) -> list[str]:
    """Field names allowed at ``loc`` (the parent of an unknown key), following the schema."""
    cls: typing.Any = root
    for part in loc:
        if isinstance(cls, list):  # a discriminated union: the tag is part of the location
            cls = next((c for c in cls if c.model_fields.get("kind") and c.model_fields["kind"].default == part), None)
            if cls is not None:
                continue
            return []
        if cls is None or isinstance(part, int):
            continue
        field = cls.model_fields.get(part) or next(
            (f for f in cls.model_fields.values() if f.alias == part), None)
        if field is None:
            continue  # a dict key (e.g. a condition name): stay on the value type
        cls = _unwrap(field.annotation)
    if isinstance(cls, list):
        return []
    if cls is None:
        return []
    return sorted(f.alias or n for n, f in cls.model_fields.items())


def _clean_loc(loc: tuple, root) -> tuple:
    """Drop discriminator tags pydantic inserts into locations (``schedule.warmup.iterations``)."""
    out, cls = [], root
    for part in loc:
        if isinstance(cls, list) and any(
                c.model_fields.get("kind") is not None and c.model_fields["kind"].default == part for c in cls):
            cls = next(c for c in cls if c.model_fields["kind"].default == part)
            continue
        out.append(part)
        if isinstance(cls, type) and issubclass(cls, BaseModel):
            f = cls.model_fields.get(part) or next((f for f in cls.model_fields.values() if f.alias == part), None)
            cls = _unwrap(f.annotation) if f is not None else cls
    return tuple(out)


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict, _REPR.maxset = 3, 6, 6, 4, 6
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 60, 60, 40


def describe(value) -> str:
    """A short repr of ``value`` for a message (at most 60 characters). Its cost is bounded, whatever
    the size of the value: only the first few items of a container are looked at."""
    try:
        text = _REPR.repr(value)
    except Exception:  # e.g. an int too long for str(), or a broken __repr__
        text = f"<{type(value).__name__}>"
    text = text if len(text) <= 60 else text[:57] + "..."
    if isinstance(value, (list, tuple, dict, set)) and len(value) > 6:
        text += f" ({len(value)} items)"
    return text


def format_validation_error(exc: ValidationError, prefix: str = "", root: type[BaseModel] | None = None) -> list[str]:
    """Turn a pydantic error into 'dotted.path: expected ..., got ...' lines."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = _clean_loc(tuple(err["loc"]), root)
        path = ".".join(str(p) for p in (tuple(prefix.split(".")) if prefix else ()) + loc) or "(top level)"
        kind = err["type"]
        if kind == "extra_forbidden":
            allowed = _allowed_keys(root, loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = (f"; allowed keys here: {', '.join(allowed)}" if allowed else "") + (
                f" (did you mean {close[0]}?)" if close else "")
            lines.append(f"{path}: unknown key{hint}")
        elif kind == "missing":
            lines.append(f"{path}: required, but missing")
        elif kind == "invalid_key" or (kind == "string_type" and loc and loc[-1] == "[key]"):
            # a key that YAML read as a number or a bool (`1: x`, `yes: 2`): pydantic says "keys should be strings"
            if loc and loc[-1] == "[key]":
                loc = loc[:-1]
                path = ".".join(str(p) for p in (tuple(prefix.split(".")) if prefix else ()) + loc)
            allowed = _allowed_keys(root, loc[:-1]) if kind == "invalid_key" else []
            key = err.get("input")
            what = ("the boolean" if isinstance(key, bool) else "the number" if isinstance(key, int | float)
                    else f"a {type(key).__name__}")
            lines.append(f"{path}: a key must be text (a name); got {what} {describe(key)} - quote it ('{key}': ...) "
                         "if it is meant as a name" + (f"; allowed keys here: {', '.join(allowed)}" if allowed else ""))
        else:
            msg = err["msg"]
            msg = msg.removeprefix("Value error, ")
            msg = msg[0].lower() + msg[1:] if msg else msg
            msg = msg.replace("input should be", "expected")
            got = "" if kind.startswith("value_error") and "got" in msg else f"; got {describe(err.get('input'))}"
            lines.append(f"{path}: {msg}{got}")
    return lines
