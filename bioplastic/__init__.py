"""bioplastic: biologically plausible learning in recurrent rate networks.

Train recurrent networks on short-term-memory tasks by gradient descent or local learning rules,
with or without temporal consistency regularization (TCR, as a loss term or as short-term synaptic
plasticity); watch abrupt learning and the geometric restructuring of phase space that precedes
it; derive predictions for experimentalists. Every result is an xarray Dataset.

A study in a few lines, no YAML, in the regime where learning is abrupt (docs/api.md; README.md;
examples/study.ipynb)::

    import bioplastic as bp

    # the default regime (protocols/evidence_accum.yaml): plain SGD, an ordered network (g = 0.7) whose own
    # memory is shorter than the 0.5-1.5 s delay, a near-zero readout - where learning is abrupt
    protocol = bp.load_protocol({
        "name": "demo", "seed": 20261130, "seeds": 4,
        "task": {"kind": "evidence_accumulation", "delay_min_ms": 500, "delay_max_ms": 1500},
        "model": {"spec": "leaky_rate_ordered", "n_units": 100, "g": 0.7, "output_scale": 0.01},
        "training": {"optimizer": "sgd", "lr": 0.03, "iterations": 300, "batch_size": 32,
                     "checkpoint_every": 10, "eval_every": 10, "eval_trials": 128, "loss_smoothing": 10},
        "conditions": {"baseline": {}, "tcr_loss": {"tcr": {"form": "loss", "normalize": "variance", "lambda": 1.0}}},
        "analysis": {"initial_states": 64, "trials": 32},
    })
    results = bp.train(protocol)                      # an xarray Dataset
    print(results[["abrupt", "search_phase", "drop_width"]].to_dataframe())  # abrupt = 1: at chance, then a sudden drop
    analysis = bp.analyze(results, protocol)          # fixed points and GR at every checkpoint
    predictions = bp.predict(results, protocol, analysis)
    print("\\n".join(bp.prediction_sentences(predictions)))
    axes = bp.figures(results, analysis, predictions)["learning_curves.png"]()

The pieces: tasks (``build_task``), networks (``build_network``; ensembles of E networks in one
computation), training (``EnsembleTrainer`` over ``MemberSpec`` s, plain configs), the analyses
(``find_fixed_points``, ``analyze``, ``predict``, ``resimulate``), figures and the report
(``figures``, ``render_report``). ``run_protocol`` runs the whole pipeline into a resumable folder,
as ``python -m bioplastic run`` does.
"""
from .analysis.fixed_points import find_fixed_points, sample_initial_states
from .analysis.phase_space import analyze
from .analysis.predictions import predict, prediction_sentences
from .analysis.psychometric import fit_psychometric
from .analysis.recording import measure_recording
from .learning import RULES
from .networks import NETWORKS, Network, Rollout, build_network
from .pipeline import IncompleteRun, RunError, compare_recording, read_run, run_protocol, train
from .plotting.figures import figures
from .protocol.errors import ProtocolError
from .protocol.load import Protocol, load_protocol
from .report.html import Run
from .report.html import render as render_report
from .simulate.engines import Brian2Engine
from .simulate.run import resimulate
from .storage.rebuild import protocol_of, trained_network
from .storage.recordings import read_recording
from .storage.results import read_dataset, write_dataset
from .tasks import TASKS, Task, Trials, build_task
from .training.loop import EnsembleTrainer, GroupResult, MemberSpec

__all__ = ["Brian2Engine", "EnsembleTrainer", "GroupResult", "IncompleteRun", "MemberSpec", "NETWORKS", "Network",
           "Protocol", "ProtocolError", "RULES", "Rollout", "Run", "RunError", "TASKS", "Task", "Trials",
           "analyze", "build_network", "build_task", "compare_recording", "figures", "find_fixed_points",
           "fit_psychometric", "load_protocol", "measure_recording", "predict", "prediction_sentences",
           "protocol_of", "read_dataset", "read_recording", "read_run", "render_report", "resimulate",
           "run_protocol", "sample_initial_states", "train", "trained_network", "write_dataset"]
__version__ = "0.1.0"
