"""The figures, drawn from the saved datasets (plotting functions take data and return Axes).

They draw with Agg (into files, no display needed) - except in a Jupyter kernel, whose inline backend
(``MPLBACKEND=module://matplotlib_inline.backend_inline``, set by ipykernel) shows them in the notebook.
"""
import os

import matplotlib


def use_file_backend() -> None:
    """Agg, unless this process is a Jupyter kernel with its inline backend."""
    if "inline" not in os.environ.get("MPLBACKEND", ""):
        matplotlib.use("Agg")
