"""Your own recording beside the model: write an example NWB recording with planted truth, measure it
as the model's networks are measured, and compare it with a finished run.

    python examples/compare_recording.py OUT_FOLDER [RUN_FOLDER]

writes OUT_FOLDER/example_session.nwb (a synthetic session: 400 trials of fixation, stimulus and a
variable delay; 40 units: 30 % build-up units, 20 % choice-selective units, the rest with intrinsic
timescales of 100 and 300 ms; choices from a known psychometric function), prints what the measures
recover against the planted truth and, with RUN_FOLDER (a finished run, e.g. from
`python -m bioplastic run evidence_accum`), runs

    python -m bioplastic compare RUN_FOLDER OUT_FOLDER/example_session.nwb --out OUT_FOLDER

Without pynwb (pip install 'bioplastic[nwb]') the session is written as a netCDF recording instead.
"""
import sys
from pathlib import Path

import numpy as np

from bioplastic.analysis.compare import consistency_sentences, data_intervals
from bioplastic.analysis.recording import measure_recording
from bioplastic.pipeline import compare_recording
from bioplastic.storage.recordings import read_recording, recording_from_spikes
from bioplastic.storage.synthetic import synthetic_session, write_nwb


def main(out: Path, run: Path | None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    session = synthetic_session(seed=0)
    try:
        path = out / "example_session.nwb"
        write_nwb(session, path)
    except Exception as exc:  # noqa: BLE001 - pynwb missing: the netCDF layout instead
        print(f"({exc}; writing a netCDF recording instead)")
        path = out / "example_session.nc"
        recording_from_spikes(session.trials, session.spikes, {}, 20.0, str(path)).to_netcdf(path, engine="h5netcdf")
    print(f"recording: {path}")
    rec = read_recording(path)
    m = measure_recording(rec)
    ci = data_intervals(rec, m)  # 95 % bootstrap CIs over units (fractions) or trials (the psychometric fit)
    truth = session.truth
    tau = truth["timescale_ms"]
    est, lo, hi = ci["fraction_buildup"]
    print(f"build-up units:      planted {truth['fraction_buildup']:.0%}, measured {est:.0%} (95 % CI {lo:.0%} to {hi:.0%})")
    for t in (100, 300):
        print(f"timescale {t} ms:    measured median {np.median(m['timescale_ms'].values[tau == t]):.0f} ms over its units")
    for k in ("slope", "bias", "lapse"):
        est, lo, hi = ci["psychometric_" + k]
        print(f"psychometric {k + ':':6s} planted {truth['psychometric_' + k]:.2f}, fitted {est:.2f} (95 % CI {lo:.2f} to {hi:.2f})")
    if run is not None:
        cmp, nc, page = compare_recording(run, path, out)
        print(f"\n{nc}\n{page}")
        for line in consistency_sentences(cmp):
            print(f"  - {line}")
    else:
        print(f"\nnext: python -m bioplastic compare RUN_FOLDER {path} --out {out}")


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) == 3 else None)
