"""A study from Python, no YAML and no run folder: two conditions (no TCR, TCR as a loss term) of a
small leaky network on evidence accumulation, trained by plain SGD; fixed points and geometric
restructuring at every checkpoint; predictions for experimentalists; the learning-curve figure.

    python examples/notebook_study.py [OUT_PNG]

Sizes are small so that it runs in well under a minute on a laptop; raise ``seeds``, ``n_units`` and
``iterations`` (docs/results.md: 10 seeds, N = 100, 300 iterations) for numbers worth reporting.
"""
import sys

import bioplastic as bp

protocol = bp.load_protocol({
    "name": "notebook_study", "seed": 7, "seeds": 2,
    "task": {"kind": "evidence_accumulation", "dt_ms": 20, "delay_min_ms": 200, "delay_max_ms": 400},
    "model": {"spec": "leaky_rate_ordered", "n_units": 32, "g": 0.7, "output_scale": 0.01},
    "training": {"rule": "bptt", "optimizer": "sgd", "lr": 0.03, "iterations": 40, "batch_size": 16,
                 "checkpoint_every": 10, "eval_every": 10, "eval_trials": 64},
    "conditions": {"baseline": {}, "tcr_loss": {"tcr": {"form": "loss", "normalize": "variance", "lambda": 1.0}}},
    "analysis": {"initial_states": 16, "trials": 8},
})
results = bp.train(protocol)                                    # xarray Dataset: curves, weights, metrics
analysis = bp.analyze(results, protocol)                        # fixed points + GR metrics per checkpoint
predictions = bp.predict(results, protocol, analysis, trials=32)  # ramping, timescales, attractors
print(results["final_accuracy"].to_pandas())
print(analysis["n_stable"].isel(checkpoint=-1).to_pandas())
print("\n".join(bp.prediction_sentences(predictions)))
axes = bp.figures(results, analysis, predictions)["learning_curves.png"]()
axes.flat[0].figure.savefig(sys.argv[1] if len(sys.argv) > 1 else "notebook_study.png")
