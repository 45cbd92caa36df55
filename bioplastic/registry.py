"""Explicit registries: a name in YAML (``kind: leaky_rate``) maps to one class.

A name is looked up, in order, as

1. a **built-in** registered with :meth:`Registry.register` (``evidence_accumulation``, ``leaky_rate``, ``bptt``);
2. an **optional** kind registered by module path with :meth:`Registry.register_lazy` (``neurogym``): its
   module is imported only when the name is used, so an optional dependency is needed only then;
3. a **module path** ``package.module:Class`` (``mypkg.tasks:CueMemory``): the module is imported with
   :func:`importlib.import_module` from ``sys.path``; if it is not found there, from the ``search``
   folders given to :meth:`Registry.get` (the protocol's folder), which is then appended to ``sys.path``
   so that worker processes started afterwards (they copy ``sys.path``) import it too;
4. a **Python entry point** of the registry's group (``bioplastic.tasks``, ``bioplastic.networks``,
   ``bioplastic.rules``), installed by a package that declares, e.g.::

       [project.entry-points."bioplastic.tasks"]
       cue_memory = "mypkg.tasks:CueMemory"

A class found by path or entry point is checked: a class, a subclass of the family's base class
(``Task``, ``Network``, ``LearningRule``), not abstract, with a ``Config`` schema (a pydantic model).
Importing a module runs its code: a protocol that names a module path runs that module, like any
``import``.

Duplicate registrations are refused, and a lookup of an unknown name lists the known ones and the
closest match ("did you mean ...?"). :meth:`Registry.names` lists the built-ins only (the docs and the
tests that enumerate kinds rely on it); the other kinds resolved in this process are in
:meth:`Registry.loaded_names`.
"""
from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import inspect
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")

#: per family (the registry's ``what``): the entry-point group and the base class, as ``module:Name``
FAMILIES: dict[str, tuple[str, str]] = {
    "task kind": ("bioplastic.tasks", "bioplastic.tasks.base:Task"),
    "model kind": ("bioplastic.networks", "bioplastic.networks.base:Network"),
    "learning rule": ("bioplastic.rules", "bioplastic.learning.base:LearningRule"),
}

#: ``package.module:Class`` (the attribute may be dotted: ``module:Outer.Inner``)
MODULE_PATH_RE = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*$")


class UnknownNameError(KeyError):
    """Raised by :meth:`Registry.get` for a name that is not registered."""

    def __init__(self, what: str, name: object, known: list[str], extra: str = ""):
        self.what, self.name, self.known = what, name, known
        hint = difflib.get_close_matches(str(name), known, n=1)
        msg = f"unknown {what} {name!r}; expected one of: {', '.join(known)}{extra}"
        if hint:
            msg += f" (did you mean {hint[0]!r}?)"
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return self.args[0]


class KindImportError(UnknownNameError):
    """A module path or entry point that could not be turned into a class of the family: the module is
    not found, it fails to import, the attribute is missing, or it is not a suitable class."""

    def __init__(self, what: str, name: object, message: str):
        self.what, self.name, self.known = what, name, []
        KeyError.__init__(self, message)


def _load_object(ref: str):
    """The object ``module:attr`` names (no checks; used for the family's base class)."""
    module, _, attr = ref.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _missing_module(exc: ModuleNotFoundError, module: str) -> bool:
    """Whether ``exc`` says that ``module`` itself (or a package above it) is absent, as opposed
    to a module that ``module`` imports."""
    parts = module.split(".")
    return exc.name in {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


class Registry(Generic[T]):
    """A name -> class mapping for one family (tasks, networks, learning rules, schedules, ...).

    ``group`` and ``base`` (a class or ``"module:Name"``) enable module paths and entry points; by
    default they are taken from :data:`FAMILIES` by ``what``.
    """

    def __init__(self, what: str, group: str | None = None, base: type | str | None = None):
        self.what = what
        family = FAMILIES.get(what, (None, None))
        self.group = group if group is not None else family[0]
        self._base = base if base is not None else family[1]
        self._items: dict[str, T] = {}
        self._lazy: dict[str, str] = {}
        self._loaded: dict[str, T] = {}

    # ------------------------------------------------------------------------------ registration
    def register(self, name: str):
        def deco(obj: T) -> T:
            if name in self._items or name in self._lazy:
                raise ValueError(f"{self.what} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return deco

    def register_lazy(self, name: str, path: str) -> None:
        """Register ``name`` for the class at the module path ``path``, imported on first use."""
        if name in self._items or name in self._lazy:
            raise ValueError(f"{self.what} {name!r} is registered twice")
        if not MODULE_PATH_RE.match(path):
            raise ValueError(f"{path!r} is not a module path package.module:Class")
        self._lazy[name] = path

    # ------------------------------------------------------------------------------ lookup
    def get(self, name: str, search: Iterable[str | Path] = ()) -> T:
        """The class for ``name`` (see the module docstring for the order); ``search``: folders to
        import a module path from when it is not found on ``sys.path``."""
        try:
            return self._items[name]
        except (KeyError, TypeError):
            pass
        if not isinstance(name, str):
            raise UnknownNameError(self.what, name, self.names(), self._extra())
        if name in self._loaded:
            return self._loaded[name]
        if name in self._lazy:
            cls = self._import(name, self._lazy[name], ())
        elif ":" in name:
            if not MODULE_PATH_RE.match(name):
                raise KindImportError(self.what, name, f"{self.what} {name!r} is not a module path; expected "
                                      "package.module:Class (dotted module names, one colon, a class name)")
            cls = self._import(name, name, search)
        else:
            ep = self._entry_points().get(name) if self.group else None
            if ep is None:
                raise UnknownNameError(self.what, name, self.names(), self._extra())
            cls = self._load_entry_point(name, ep)
        self._loaded[name] = cls
        return cls

    def names(self) -> list[str]:
        """The built-in names (registered with :meth:`register`), sorted."""
        return sorted(self._items)

    def optional_names(self) -> list[str]:
        """Names registered with :meth:`register_lazy` (optional kinds), sorted."""
        return sorted(self._lazy)

    def entry_point_names(self) -> list[str]:
        """Names installed packages declare in the entry-point group, sorted."""
        return sorted(self._entry_points()) if self.group else []

    def loaded_names(self) -> list[str]:
        """Optional, module-path and entry-point names resolved in this process, sorted."""
        return sorted(self._loaded)

    def __contains__(self, name: object) -> bool:
        """A built-in, optional, or already resolved name (a module path is not imported to answer)."""
        return name in self._items or name in self._lazy or name in self._loaded

    # ------------------------------------------------------------------------------ helpers
    def _extra(self) -> str:
        extra = []
        if self._lazy:
            extra.append(f"optional: {', '.join(self.optional_names())}")
        eps = [n for n in self.entry_point_names() if n not in self._items and n not in self._lazy]
        if eps:
            extra.append(f"installed by entry points ({self.group}): {', '.join(eps)}")
        if self.group:
            extra.append("or a module path package.module:Class")
        return f" ({'; '.join(extra)})" if extra else ""

    def _entry_points(self) -> dict[str, importlib.metadata.EntryPoint]:
        return {ep.name: ep for ep in importlib.metadata.entry_points(group=self.group)}

    def base(self) -> type | None:
        if isinstance(self._base, str):
            self._base = _load_object(self._base)
        return self._base

    def _import(self, name: str, path: str, search: Iterable[str | Path]) -> T:
        module, _, attr = path.partition(":")
        obj = self._import_module(name, module, search)
        for i, part in enumerate(attr.split(".")):
            if not hasattr(obj, part):
                where = ".".join([module] + attr.split(".")[:i])
                public = sorted(n for n, v in vars(obj).items() if inspect.isclass(v) and not n.startswith("_")) \
                    if hasattr(obj, "__dict__") else []
                hint = difflib.get_close_matches(part, public, n=1)
                raise KindImportError(self.what, name, f"{self.what} {name!r}: {where} has no attribute {part!r}"
                                      + (f" (did you mean {hint[0]!r}?)" if hint else "")
                                      + (f"; its classes: {', '.join(public)}" if public and not hint else ""))
            obj = getattr(obj, part)
        self._check(name, obj)
        return obj

    def _import_module(self, name: str, module: str, search: Iterable[str | Path]):
        try:
            return importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if not _missing_module(exc, module):
                raise KindImportError(self.what, name, f"{self.what} {name!r}: importing module {module!r} failed: "
                                      f"{type(exc).__name__}: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - any error of the user's module is reported as such
            raise KindImportError(self.what, name, f"{self.what} {name!r}: importing module {module!r} failed: "
                                  f"{type(exc).__name__}: {exc}") from exc
        top = module.split(".")[0]
        folders = [Path(f).resolve() for f in search]
        for folder in folders:
            if (folder / f"{top}.py").is_file() or (folder / top / "__init__.py").is_file():
                if str(folder) not in sys.path:
                    sys.path.append(str(folder))  # spawned workers copy sys.path
                importlib.invalidate_caches()
                return self._import_module(name, module, ())
        where = "sys.path" + (f" or {', '.join(str(f) for f in folders)}" if folders else "")
        raise KindImportError(self.what, name, f"{self.what} {name!r}: module {module!r} not found (looked on {where}); "
                              "put it beside the protocol, on PYTHONPATH, or install its package")

    def _load_entry_point(self, name: str, ep: importlib.metadata.EntryPoint) -> T:
        dist = getattr(getattr(ep, "dist", None), "name", None)
        origin = f"entry point {name!r} = {ep.value!r} ({self.group}{', package ' + dist if dist else ''})"
        try:
            obj = ep.load()
        except Exception as exc:  # noqa: BLE001
            raise KindImportError(self.what, name, f"{self.what} {name!r}: loading {origin} failed: "
                                  f"{type(exc).__name__}: {exc}") from exc
        self._check(name, obj, origin)
        return obj

    def _check(self, name: str, obj, origin: str = "") -> None:
        """Refuse what is not a concrete class of the family with a ``Config`` schema."""
        from pydantic import BaseModel

        label = f"{self.what} {name!r}" + (f" ({origin})" if origin else "")
        base = self.base()
        if not inspect.isclass(obj):
            raise KindImportError(self.what, name, f"{label}: expected a class, got {type(obj).__name__} {obj!r}")
        if base is not None and not issubclass(obj, base):
            raise KindImportError(self.what, name, f"{label}: {obj.__module__}.{obj.__qualname__} is not a subclass of "
                                  f"{base.__module__.rsplit('.base', 1)[0]}.{base.__qualname__}")
        if inspect.isabstract(obj):
            missing = ", ".join(sorted(getattr(obj, "__abstractmethods__", ())))
            raise KindImportError(self.what, name, f"{label}: {obj.__qualname__} is abstract; it does not implement: {missing}")
        config = getattr(obj, "Config", None)
        if not (inspect.isclass(config) and issubclass(config, BaseModel)):
            raise KindImportError(self.what, name, f"{label}: {obj.__qualname__}.Config must be a pydantic model "
                                  "(e.g. a subclass of bioplastic.schema_base.Schema) that validates its section")
