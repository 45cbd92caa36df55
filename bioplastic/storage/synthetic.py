"""A synthetic recording session with planted truth: the known answers the prediction measures
must recover on recorded data (tests, and ``examples/compare_recording.py``).

Trials (times in s from the session's start): ``fixation`` (0.3 s), ``stimulus`` (0.5 s),
``delay`` (uniform 1.0 - 1.4 s), then 0.3 s to the trial's ``stop_time``; 0.5 s between trials.
Each trial has a signed ``evidence`` drawn from ``EVIDENCE_LEVELS``; the subject chooses "right"
(+1) with the psychometric function of :mod:`bioplastic.analysis.psychometric` (``slope``,
``bias``, ``lapse``), else "left" (-1). Spikes are Poisson (1 ms Bernoulli steps) with rates:

- **build-up** units (a fraction ``buildup``): ``base`` until the delay, then rising by
  ``ramp_hz_per_s`` per second through the delay on trials of the unit's preferred choice (flat on
  the others): choice-selective, and ramping away from the pre-stimulus level;
- **selective** units (a fraction ``selective``): ``base`` + or - ``step_hz`` from stimulus onset by
  the choice (preferred choice higher), flat within each period: choice-selective, not ramping;
- **timescale** units (the rest): ``base`` plus an Ornstein-Uhlenbeck fluctuation (sd ``ou_hz``) with
  a known timescale (alternately ``taus_ms``), independent of the choice: unselective, not ramping,
  with an autocorrelation timescale in the delay.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..analysis.psychometric import psychometric_function
from .recordings import _pynwb

EVIDENCE_LEVELS = (-4.0, -2.0, -1.0, 0.0, 1.0, 2.0, 4.0)


@dataclass(frozen=True)
class Session:
    """trials: column -> (trial,) values (NWB trials-table names, times in s); spikes: unit id ->
    spike times (s); truth: the planted answers (kind per unit, preferred choice, timescales,
    psychometric parameters, the fraction of build-up units)."""

    trials: dict[str, np.ndarray]
    spikes: dict[int, np.ndarray]
    truth: dict = field(default_factory=dict)


def synthetic_session(seed: int = 0, n_trials: int = 400, n_units: int = 40, buildup: float = 0.3, selective: float = 0.2,
                      base: float = 30.0, ramp_hz_per_s: float = 20.0, step_hz: float = 10.0, ou_hz: float = 20.0,
                      taus_ms: tuple[float, ...] = (100.0, 300.0), slope: float = 0.8, bias: float = 0.3,
                      lapse: float = 0.05) -> Session:
    """A session of the module docstring, drawn from ``numpy.random.default_rng(seed)``."""
    from scipy.signal import lfilter

    rng = np.random.default_rng(seed)
    fix, stim, gap, tail = 0.3, 0.5, 0.5, 0.3
    delay = rng.uniform(1.0, 1.4, n_trials)
    dur = fix + stim + delay + tail
    start = np.concatenate([[1.0], 1.0 + np.cumsum(dur + gap)[:-1]])
    evidence = rng.choice(EVIDENCE_LEVELS, n_trials)
    choice = np.where(rng.random(n_trials) < psychometric_function(evidence, slope, bias, lapse), 1.0, -1.0)
    n_build, n_sel = int(round(buildup * n_units)), int(round(selective * n_units))
    kind = np.array(["buildup"] * n_build + ["selective"] * n_sel + ["timescale"] * (n_units - n_build - n_sel))
    preferred = rng.choice([-1.0, 1.0], n_units)
    tau = np.full(n_units, np.nan)
    tau[kind == "timescale"] = np.resize(np.asarray(taus_ms, float), int((kind == "timescale").sum()))
    dt = 0.001
    spikes: dict[int, list] = {u: [] for u in range(n_units)}
    for b in range(n_trials):
        t = np.arange(0.0, dur[b], dt)
        after_stim = t >= fix
        since_delay = np.clip(t - (fix + stim), 0.0, delay[b])
        for u in range(n_units):
            pref = choice[b] == preferred[u]
            if kind[u] == "buildup":
                r = base + ramp_hz_per_s * since_delay * pref  # flat at its top after the delay
            elif kind[u] == "selective":
                r = base + step_hz * after_stim * (1.0 if pref else -1.0)
            else:
                # Ornstein-Uhlenbeck sampled every dt, stationary from the trial's start: x_i = a x_(i-1) + sqrt(1 - a^2) n_i
                a = np.exp(-dt * 1000.0 / tau[u])
                x0 = rng.standard_normal()
                x = lfilter([1.0], [1.0, -a], rng.standard_normal(len(t)) * np.sqrt(1 - a * a), zi=[a * x0])[0]
                r = base + ou_hz * x
            fire = rng.random(len(t)) < np.clip(r, 0.0, None) * dt
            spikes[u].append(start[b] + t[fire] + rng.uniform(0, dt, int(fire.sum())))
    trials = {"start_time": start, "stop_time": start + dur, "stimulus_start_time": start + fix,
              "delay_start_time": start + fix + stim, "delay_stop_time": start + fix + stim + delay,
              "choice": choice, "evidence": evidence}
    truth = {"kind": kind, "preferred_choice": preferred, "timescale_ms": tau, "fraction_buildup": n_build / n_units,
             "psychometric_slope": slope, "psychometric_bias": bias, "psychometric_lapse": lapse}
    return Session(trials, {u: np.sort(np.concatenate(s)) for u, s in spikes.items()}, truth)


def write_nwb(session: Session, path, columns: dict[str, str] | None = None) -> None:
    """Write ``session`` as an NWB file (pynwb): the trials table (``columns`` renames columns:
    ours -> the file's) and the Units table of spike times."""
    from datetime import UTC, datetime

    pynwb = _pynwb()
    nwb = pynwb.NWBFile(session_description="synthetic session with planted truth (bioplastic.storage.synthetic)",
                        identifier="bioplastic-synthetic", session_start_time=datetime(2026, 1, 1, tzinfo=UTC))
    import pandas as pd
    from pynwb.epoch import TimeIntervals

    names = {k: (columns or {}).get(k, k) for k in session.trials}
    table = pd.DataFrame({names[k]: np.asarray(v, float) for k, v in session.trials.items()})
    nwb.trials = TimeIntervals.from_dataframe(table, name="trials", table_description="trials of the synthetic session")
    # the Units table from whole arrays (one add_unit per unit converts every spike time on its own: ~100x slower)
    from hdmf.common import ElementIdentifiers, VectorData, VectorIndex
    from pynwb.misc import Units

    ids = sorted(session.spikes)
    times = VectorData(name="spike_times", description="the spike times for each unit in seconds",
                       data=np.concatenate([np.asarray(session.spikes[u], float) for u in ids]))
    index = VectorIndex(name="spike_times_index", data=np.cumsum([len(session.spikes[u]) for u in ids]), target=times)
    nwb.units = Units(name="units", description="synthetic units", id=ElementIdentifiers(name="id", data=np.asarray(ids, int)),
                      columns=[times, index])
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
