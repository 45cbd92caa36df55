"""scripts/sweep_panels.py: several runs' sweep figures side by side in one PNG."""
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
import xarray as xr
from conftest import load_script


def _main(argv):
    return load_script("sweep_panels").main([str(a) for a in argv])


def _run(folder: Path, seed: int, sweep: bool = True) -> Path:
    """A run folder whose results.nc holds what the sweep figure reads: iterations to criterion per
    g, condition and seed (NaN: not learned), the budget and the sweep's dims."""
    folder.mkdir()
    rng = np.random.default_rng(seed)
    itc = rng.integers(10, 90, (2, 2, 4)).astype(float)
    itc[1, 1, 0] = np.nan
    ds = xr.Dataset({"iterations_to_criterion": (("model.g", "condition", "seed"), itc)},
                    coords={"model.g": [1.0, 4.0], "condition": ["baseline", "tcr_loss"], "seed": np.arange(4),
                            "iteration": np.arange(100)},
                    attrs={"protocol_name": "p", "root_seed": seed})
    if sweep:
        ds.attrs["sweep_dims"] = "model.g"
    ds.to_netcdf(folder / "results.nc")
    return folder


def test_one_panel_per_run_row_by_row(tmp_path):
    runs = [_run(tmp_path / f"r{k}", k) for k in range(3)]
    out = tmp_path / "fig" / "panels.png"
    assert _main([out, *runs, "--cols", "2"]) == 0
    h, w = mpimg.imread(out).shape[:2]
    # 2 columns x 2 rows of 4.6 x 3.9 inch panels at 110 dpi (the fourth panel left empty)
    assert (w, h) == pytest.approx((2 * 4.6 * 110, 2 * 3.9 * 110), abs=2)
    assert _main([tmp_path / "one_row.png", *runs, "--cols", "3"]) == 0
    assert mpimg.imread(tmp_path / "one_row.png").shape[:2] == pytest.approx((3.9 * 110, 3 * 4.6 * 110), abs=2)


def test_bad_input_names_what_was_expected(tmp_path, capsys):
    run = _run(tmp_path / "run", 0)
    with pytest.raises(SystemExit) as exc:
        _main([tmp_path / "x.png", run, tmp_path / "missing"])
    assert exc.value.code == 2 and "expected a finished run folder with results.nc" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _main([tmp_path / "x.png", run, "--titles", "a", "b"])
    assert "expected one title per run (1), got 2" in capsys.readouterr().err
    flat = _run(tmp_path / "flat", 1, sweep=False)
    with pytest.raises(SystemExit):
        _main([tmp_path / "x.png", flat])
    assert "the run has no sweep" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
