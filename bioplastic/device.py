"""Where the torch work runs: ``training.device`` (``cpu``, ``cuda`` or ``auto``), resolved here only.

``cpu`` (the default) gives the same numbers on every machine. ``cuda`` trains (and runs the fixed
points and predictions) on the first CUDA device and fails with :class:`DeviceError` where torch
sees none; ``auto`` takes a CUDA device when one is visible, else the CPU. The numbers on a GPU
equal the CPU's to float tolerance, not bit for bit: every random number is still drawn on the CPU
(numpy and CPU torch generators, exactly as on the CPU) and then moved to the device, so only the
arithmetic differs (kernels sum in other orders).

:func:`device_scope` makes torch's factory functions (``torch.zeros``, ``torch.full``, ...) that
name no device create their tensors on the device (``with torch.device(...)``); on the CPU it is a
no-op, so the CPU code path is the one it always was.
"""
from __future__ import annotations

import contextlib

import torch

#: the values of ``training.device``
DEVICES = ("cpu", "cuda", "auto")


class DeviceError(ValueError):
    """The device asked for cannot be used here (``cuda`` where torch sees no CUDA device, or an
    unknown name). The message names the setting, what was expected and what was given."""


def cuda_available() -> bool:
    """Whether torch sees a CUDA device (False with a CPU-only build of torch)."""
    return bool(torch.cuda.is_available())


def resolve_device(requested: str | torch.device | None, field: str = "training.device") -> torch.device:
    """The torch device for a ``training.device`` value: ``cpu``; ``cuda`` (the current CUDA device;
    :class:`DeviceError` when torch sees none); ``auto``: ``cuda`` when one is visible, else ``cpu``.
    ``None`` means ``cpu``. A ``torch.device`` (or a string such as ``cuda:1``) is checked the same
    way and returned. ``field`` names the setting in messages (``training.device``, ``--device``)."""
    if requested is None:
        return torch.device("cpu")
    text = str(requested)
    if text == "auto":
        return torch.device("cuda") if cuda_available() else torch.device("cpu")
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise DeviceError(f"{field}: expected one of {', '.join(DEVICES)}; got {text!r}") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise DeviceError(f"{field}: expected one of {', '.join(DEVICES)}; got {text!r}")
    if not cuda_available():
        why = ("this torch build has no CUDA support" if torch.version.cuda is None
               else "torch.cuda.is_available() is False: no GPU or no working NVIDIA driver")
        raise DeviceError(f"{field}: expected cpu or auto, as torch sees no CUDA device on this machine ({why}); "
                          f"got {text!r}. Use --device cpu (training.device: cpu), or auto, "
                          "which takes a GPU only when one is visible")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise DeviceError(f"{field}: expected a CUDA device index below {torch.cuda.device_count()}; got {text!r}")
    return device


def device_label(device: torch.device) -> str:
    """How results record a device: ``cpu``, or ``cuda:INDEX (NAME)``."""
    device = torch.device(device)
    if device.type != "cuda":
        return device.type
    index = torch.cuda.current_device() if device.index is None else device.index
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"


def device_scope(device: torch.device):
    """A context in which torch factory functions without a ``device`` create tensors on
    ``device``; a no-op context for the CPU."""
    device = torch.device(device)
    return contextlib.nullcontext() if device.type == "cpu" else device


def to_cpu(obj):
    """``obj`` with every tensor in it (through dicts, lists and tuples) moved to the CPU, for
    saving: resume states and results never hold device tensors."""
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj
