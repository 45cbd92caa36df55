"""Typed schema of a protocol (``protocols/*.yaml``). Every field is documented here; the
``python -m bioplastic schema`` command and docs/protocol.md are generated from these classes.
"""
from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator

from ..regularizers.schedules import ConstantConfig, ScheduleConfig
from ..regularizers.tcr_plasticity import PlasticityConfig
from ..schema_base import Schema
from .limits import MAX_CONDITIONS, MAX_NETWORKS, MAX_SEEDS

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _check_name(v: str, what: str) -> str:
    if not NAME_RE.match(v):
        raise ValueError(f"{what} must be letters, digits, '_', '-' or '.', starting with a letter or digit; got {v!r}")
    return v


class TCRConfig(Schema):
    """Temporal consistency regularization (science.md §3)."""

    form: Literal["none", "loss", "plasticity"] = Field(
        "none", description="none: no TCR; loss: add lambda(k) * mean (h_t - h_{t-1})^2 to the loss; "
                            "plasticity: short-term synaptic plasticity of the recurrent synapses (settings in `plasticity`)")
    lambda_: float = Field(0.1, alias="lambda", ge=0, description="base strength lambda_0 of the TCR term")
    normalize: Literal["none", "variance"] = Field(
        "none", description="form of the TCR loss term: none: mean (h_t - h_{t-1})^2 (raw, in state units squared); "
                            "variance: that divided by the state's variance within the window, mean (h_t - hbar)^2 + 1e-8 "
                            "(hbar: per trial and unit), so the term is scale free; bptt only (docs/tcr_loss.md)")
    window: str = Field("trial", description="where the term counts: 'trial' (every step) or a period name of the task, e.g. 'delay'")
    schedule: ScheduleConfig = Field(default_factory=ConstantConfig,
                                     description="lambda(k) = lambda_0 * s(k): constant, warmup, linear_decay, cosine_decay, step, adaptive or activity_floor")
    plasticity: PlasticityConfig = Field(default_factory=PlasticityConfig,
                                         description="TCR as short-term plasticity (form: plasticity): rule, time constants, eta_F(k), freeze-in, weight noise")


class InitConfig(Schema):
    """Start each network from a finished run's trained network, at a chosen distance from it
    (docs/protocol.md, training.init): for every trained parameter
    theta_0 = (1 - distance) * theta_src + distance * theta_fresh, where theta_src is seed s's network in the
    source run and theta_fresh the weights this protocol would draw for seed s."""

    from_run: str = Field(description="a finished run folder (holding results.nc; or that results.nc), absolute or relative to the "
                                      "working directory of every process that trains (absolute on a cluster); checked when the run starts, "
                                      "when it resumes and before each work unit trains (a source whose results.nc changed meanwhile "
                                      "stops the run), not by `validate`")
    condition: str = Field("baseline", description="the source run's condition whose trained networks are the start")
    select: dict[str, Any] = Field(default_factory=dict, description="the source run's sweep point, by its swept fields, e.g. {model.g: 1.0} (required when the source has a sweep; a zipped sweep's point by its index: {zip: 2})")
    checkpoint: Literal["last"] | int = Field(
        "last", description="the source's weights at this checkpoint iteration; last: each network's last saved weights (where a "
                            "run stopped early, those it stopped with)")
    distance: float = Field(0.0, ge=0, le=1, description="0: the source's network itself; 1: this protocol's own random draw; between: "
                                                         "the point that far along the straight line from the one to the other "
                                                         "(every trained parameter; fixed buffers such as a sparsity mask are not interpolated: the source's "
                                                         "and this protocol's own draw must have the same ones)")

    @field_validator("checkpoint")
    @classmethod
    def _checkpoint(cls, v):
        if isinstance(v, int) and v < 0:
            raise ValueError(f"expected 'last' or a checkpoint iteration >= 0, got {v}")
        return v


class TrainingConfig(Schema):
    """How the networks are trained."""

    rule: str = Field("bptt", description="learning rule: bptt (backpropagation through time), rflo, eprop (PLRNN), node_perturbation; see docs/learning_rules.md")
    rule_options: dict[str, Any] = Field(default_factory=dict, description="options of the learning rule (validated by the rule)")
    optimizer: Literal["adam", "sgd"] = Field("adam", description="optimizer for the long-term weights")
    lr: float = Field(1e-3, gt=0, description="learning rate")
    adam_betas: tuple[float, float] = Field((0.9, 0.999), description="Adam's (beta1, beta2)")
    momentum: float = Field(0.0, ge=0, lt=1, description="SGD momentum")
    iterations: int = Field(1000, gt=0, le=100_000_000, description="training iterations (one batch each)")
    batch_size: int = Field(64, gt=0, le=1_000_000, description="trials per iteration and network")
    clip_grad_norm: float | None = Field(1.0, gt=0, description="clip each network's gradient to this norm (null: no clipping)")
    checkpoint_every: int = Field(100, gt=0, description="save all weights (and the resume state) every K iterations")
    eval_every: int = Field(25, gt=0, description="measure held-out accuracy every K iterations")
    eval_trials: int = Field(256, gt=0, le=1_000_000, description="held-out trials per network (a fixed set drawn once per network)")
    criterion: float = Field(0.95, gt=0, le=1, description="held-out accuracy at which a network counts as having learned")
    stop_when_learned: bool = Field(False, description="stop an ensemble at the first checkpoint where every network has learned at least 6 * loss_smoothing iterations earlier (the learning-curve metrics are then what a full run gives)")
    ensemble_size: int = Field(4, gt=0, le=MAX_NETWORKS, description="at most this many networks train together in one work unit (compatible networks, of every sweep point, are split evenly into units of at most this size; results do not depend on the executor or on a network's ensemble-mates)")
    loss_smoothing: int = Field(25, gt=0, description="moving-average window (iterations) for the learning-curve metrics (search phase, drop onset and width, abruptness; docs/science.md)")
    dtype: Literal["float32", "float64"] = Field("float32", description="floating-point type of the simulation")
    device: Literal["cpu", "cuda", "auto"] = Field(
        "cpu", description="where training, fixed points and predictions run: cpu (the same numbers on every machine); "
                           "cuda (a GPU: the same numbers as cpu to float tolerance, not bit for bit; an error where torch "
                           "sees no CUDA device); auto (cuda when torch sees one, else cpu). The results record where it "
                           "ran (attribute `device`); `--device` on the command line sets it")
    init: InitConfig | None = Field(None, description="start from a finished run's trained networks, at a distance from them "
                                                      "(from_run, condition, select, checkpoint, distance); null: this protocol's own random draw")

    @field_validator("adam_betas", mode="before")
    @classmethod
    def _betas(cls, v):
        if isinstance(v, list):
            v = tuple(v)
        if not (isinstance(v, tuple) and len(v) == 2 and all(isinstance(b, (int, float)) and 0 <= b < 1 for b in v)):
            raise ValueError(f"expected two numbers in [0, 1), got {v!r}")
        return v


class OutputConfig(Schema):
    """Where results go."""

    dir: str = Field("runs/{name}", description="output folder, relative and under the working directory ('..' and absolute paths are refused: a protocol file must not write elsewhere unasked; --out on the command line may); '{name}' is replaced by the protocol name")
    figures: bool = Field(True, description="write PNG figures")

    @field_validator("dir")
    @classmethod
    def _inside(cls, v):
        from pathlib import PurePath

        p = PurePath(v)
        if not v.strip() or p.is_absolute() or ".." in p.parts or v.startswith("~"):
            raise ValueError(f"expected a folder under the working directory such as runs/{{name}}, got {v!r}; "
                             "to write elsewhere, pass --out on the command line")
        return v


class AnalysisConfig(Schema):
    """Phase-space analysis of every checkpoint (science.md §5): fixed and slow points, GR metrics and events."""

    initial_states: int = Field(128, gt=0, le=1_000_000, description="initial states per network, checkpoint and input context for the fixed-point search")
    noise_std: float = Field(0.05, ge=0, description="std of the noise added to the states sampled from trajectories (state units)")
    contexts: list[Literal["zero", "inputs"]] = Field(default_factory=lambda: ["zero"],
                                                      description="constant input contexts: 'zero' (no input) and/or 'inputs' (each input channel alone at 1)")
    trials: int = Field(32, gt=0, le=1_000_000, description="held-out trials whose trajectories seed the search and define the geometry (the same trials at every checkpoint)")
    pca_components: int = Field(3, gt=0, le=1_000, description="dimensions of the fixed PCA frame (final checkpoint's trajectories) in which fixed-point sets are compared")
    gr_baseline: int = Field(3, gt=0, description="GR event rule: checkpoints that form the baseline (median and MAD)")
    gr_threshold: float = Field(3.0, ge=0, description="GR event rule: an event where a GR metric exceeds baseline + threshold * MAD")
    gr_min_change: float = Field(0.01, ge=0, description="GR event rule: an event also needs the metric above this floor: 1 - CKA for "
                                 "trajectory_change; for fp_distance this fraction of the RMS radius of the final checkpoint's "
                                 "trajectories around their mean (sqrt of the total variance), so it is scale free")


class Brian2Config(Schema):
    """Re-simulation of the trained networks in brian2, the independent continuous-time engine (docs/brian2.md)."""

    enabled: bool = Field(False, description="after training, re-simulate every condition's trained networks in brian2 and torch (writes brian2.nc; the predictions are computed on both)")
    dt_ms: float | None = Field(None, gt=0, description="brian2 integration step (ms); null: the task's step (then the engines must agree to 1e-6); a divisor of it approaches the continuous-time limit")
    trials: int = Field(32, gt=0, le=1_000_000, description="held-out trials re-simulated per network")
    codegen: Literal["cython", "numpy"] = Field("cython", description="brian2 code generation: cython (compiled, cached in OUT/brian2_cache; falls back to numpy with a warning when no compiler works) or numpy")


class SweepConfig(Schema):
    """Sweeps over protocol fields; each point is the protocol with those fields set."""

    grid: dict[str, list[Any]] = Field(default_factory=dict, description="dotted field -> values; every combination is a point; each field becomes a dim of the results")
    zip: dict[str, list[Any]] = Field(default_factory=dict, description="dotted field -> values, all lists of one length, taken together (one dim `zip`)")

    @field_validator("grid", "zip")
    @classmethod
    def _nonempty(cls, v):
        for key, values in v.items():
            if not values:
                raise ValueError(f"{key}: expected a non-empty list of values, got []")
            if key.split(".")[0] in ("sweep", "name", "seed", "output"):
                raise ValueError(f"{key}: cannot sweep over {key.split('.')[0]!r}")
            if key == "seeds":
                raise ValueError("seeds: cannot sweep over the number of networks per condition (it fixes the seed "
                                 "dim of every point); set it once, e.g. --set seeds=20")
        return v

    @field_validator("zip")
    @classmethod
    def _same_length(cls, v):
        if len({len(vals) for vals in v.values()}) > 1:
            raise ValueError("all zip lists must have the same length, got " + ", ".join(f"{k}: {len(x)}" for k, x in v.items()))
        return v


class ProtocolConfig(Schema):
    """An experiment: networks of one model kind trained on one task under named conditions."""

    name: str = Field(description="protocol name (letters, digits, '_', '-', '.')")
    description: str = Field("", description="free text shown in reports")
    claims: list[int] = Field(default_factory=list, description="the claims of science.md §7 (numbers 1-10) this protocol tests; the report gives each a verdict (holds / does not hold / inconclusive) with its numbers")
    seed: int = Field(ge=0, lt=2 ** 63, description="root seed; every random stream of the run derives from it (below 2^63: it is stored as a 64-bit integer)")
    seeds: int = Field(3, gt=0, le=MAX_SEEDS, description="networks per condition (seed index 0..seeds-1, shared across conditions: paired design)")
    task: dict[str, Any] = Field(description="the task: `kind` (see `bioplastic list`) and its settings (docs/tasks.md)")
    model: dict[str, Any] = Field(description="the network: `spec` (a file in models/) and/or `kind`, plus settings that override the spec")
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    tcr: TCRConfig = Field(default_factory=TCRConfig, description="TCR settings shared by all conditions (conditions override them)")
    conditions: dict[str, dict[str, Any]] = Field(default_factory=lambda: {"baseline": {}},
                                                  description="named overrides of `tcr`, `training` and `model`, e.g. {baseline: {}, tcr_loss: {tcr: {form: loss}}}")
    output: OutputConfig = Field(default_factory=OutputConfig)
    analysis: AnalysisConfig | None = Field(None, description="phase-space analysis after training (writes analysis.nc); null: none. `bioplastic analyze OUT` runs it later")
    sweep: SweepConfig | None = Field(None, description="optional sweep over protocol fields (grid and/or zip); null: a single point")
    brian2: Brian2Config = Field(default_factory=Brian2Config, description="re-simulation of the trained networks in brian2 (off by default; `brian2: {enabled: true}` switches it on)")

    @field_validator("name")
    @classmethod
    def _name(cls, v):
        return _check_name(v, "name")

    @field_validator("claims")
    @classmethod
    def _claims(cls, v):
        bad = [c for c in v if not 1 <= c <= 10]
        if bad:
            raise ValueError(f"expected claim numbers 1 to 10 (science.md §7), got {bad}")
        return sorted(set(v))

    @field_validator("conditions")
    @classmethod
    def _conditions(cls, v):
        if not v:
            raise ValueError("expected at least one condition, e.g. {baseline: {}}")
        if len(v) > MAX_CONDITIONS:
            raise ValueError(f"expected at most {MAX_CONDITIONS} conditions, got {len(v)}")
        for k in v:
            _check_name(k, "a condition name")
        return v


#: keys a condition may override; the rest of the protocol is shared by all conditions
CONDITION_KEYS = ("tcr", "training", "model")
#: settings that fix array shapes, so all conditions must share them
SHARED_TRAINING = ("iterations", "batch_size", "checkpoint_every", "eval_every", "eval_trials", "dtype", "ensemble_size")
SHARED_MODEL = ("kind", "n_units")
