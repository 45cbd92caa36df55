"""Re-simulation of trained networks by an independent engine (brian2), cross-checked against torch.

The public API: :func:`simulate_brian2` / :func:`simulate_torch` (the same trials in either engine,
as datasets with the same variables and dims), :func:`discretisation_error`, :func:`export_network`
and :func:`run_brian2` (the bridge itself), and :func:`simulate_run` (a finished run's networks,
``python -m bioplastic simulate OUT --engine brian2``). See docs/brian2.md.
"""
from .brian2_bridge import (
                            CODEGENS,
                            SUPPORTED_KINDS,
                            SUPPORTED_RULES,
                            Brian2ExportError,
                            Brian2Result,
                            ExportedNetwork,
                            Plasticity,
                            cython_available,
                            export_network,
                            run_brian2,
)
from .engines import Brian2Engine, agreement, discretisation_error, relative_error, simulate_brian2, simulate_torch

__all__ = ["Brian2Engine", "CODEGENS", "SUPPORTED_KINDS", "SUPPORTED_RULES", "Brian2ExportError", "Brian2Result", "ExportedNetwork",
           "Plasticity", "agreement", "cython_available", "discretisation_error", "export_network", "relative_error",
           "run_brian2", "simulate_brian2", "simulate_torch"]
