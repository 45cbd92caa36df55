"""The shipped model specs and protocols, wherever the package is installed.

In the checkout they are the top-level folders ``models/`` and ``protocols/`` (where users and the
docs name them: ``python -m bioplastic run protocols/evidence_accum.yaml``). A wheel or ``pip install .``
installs them as package data, ``bioplastic/models/`` and ``bioplastic/protocols/`` (pyproject maps the
folders there with ``[tool.setuptools.package-dir]``). Both layouts are found here: the installed
package data first (read through :mod:`importlib.resources`), else the folders beside the package
(a checkout, editable install or not).

A bare protocol name (``evidence_accum``, no folder) that is not an existing file names a shipped
protocol, so ``bioplastic run evidence_accum`` works from any directory.
"""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

__all__ = ["UnknownResourceError", "models_dir", "protocols_dir", "shipped_models", "shipped_protocols",
           "model_spec_path", "protocol_path", "is_bare_name"]


class UnknownResourceError(LookupError):
    """A name that is no shipped model spec or protocol; the message lists the shipped ones."""


def _data_dir(kind: str) -> Path:
    installed = resources.files(__package__) / kind  # a wheel: bioplastic/<kind>/ beside the modules
    if installed.is_dir():
        return Path(str(installed))
    return Path(__file__).resolve().parent.parent / kind  # a checkout: <repo>/<kind>/


def models_dir() -> Path:
    """The folder of the shipped model specs (``NAME.yaml``, used as ``model: {spec: NAME}``)."""
    return _data_dir("models")


def protocols_dir() -> Path:
    """The folder of the shipped protocols (``NAME.yaml``)."""
    return _data_dir("protocols")


def _names(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.yaml") if p.is_file()) if folder.is_dir() else []


def shipped_models() -> list[str]:
    """Names of the shipped model specs, sorted."""
    return _names(models_dir())


def shipped_protocols() -> list[str]:
    """Names of the shipped protocols, sorted."""
    return _names(protocols_dir())


def model_spec_path(name: str) -> Path:
    """The shipped model spec ``name`` (``UnknownResourceError`` listing the shipped ones otherwise)."""
    path = models_dir() / f"{name}.yaml"
    if _is_plain(name) and path.is_file():
        return path
    raise UnknownResourceError(f"no shipped model spec {name!r}; shipped: {', '.join(shipped_models()) or '(none found)'}")


def is_bare_name(name: str | os.PathLike) -> bool:
    """True for a name without a folder (``evidence_accum`` or ``evidence_accum.yaml``)."""
    text = os.fspath(name)
    return _is_plain(text[:-5] if text.endswith(".yaml") else text)


def _is_plain(name: str) -> bool:
    return bool(name) and name not in (".", "..") and not any(s and s in name for s in (os.sep, os.altsep, "/"))


def protocol_path(name_or_path: str | os.PathLike) -> Path:
    """The protocol file a user named: an existing file as given, else the shipped protocol of a bare
    name (``evidence_accum`` or ``evidence_accum.yaml``). A path that is neither raises
    ``FileNotFoundError`` (``UnknownResourceError`` for a bare name), naming the shipped protocols."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = shipped_protocols()
    if is_bare_name(name_or_path):
        stem = path.name[:-5] if path.name.endswith(".yaml") else path.name
        if stem in shipped:
            return protocols_dir() / f"{stem}.yaml"
        raise UnknownResourceError(f"protocol file not found: {path} (no such file, and no shipped protocol "
                                   f"{stem!r}; shipped: {', '.join(shipped) or '(none found)'})")
    raise FileNotFoundError(f"protocol file not found: {path} (a bare name runs a shipped protocol: "
                            f"{', '.join(shipped) or '(none found)'})")
