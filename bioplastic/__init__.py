"""bioplastic: biologically plausible learning in recurrent rate networks.

Public API::

    from bioplastic import load_protocol, run_protocol
    protocol = load_protocol("protocols/evidence_accum.yaml", overrides=["seeds=5"])
    ds, out = run_protocol(protocol, "runs/my_run")
"""
from .protocol.errors import ProtocolError
from .protocol.load import Protocol, load_protocol
from .training.run import RunError, run_protocol

__all__ = ["Protocol", "ProtocolError", "RunError", "load_protocol", "run_protocol"]
__version__ = "0.1.0"
