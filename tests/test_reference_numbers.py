"""The numbers of a tiny run (plain, TCR loss, TCR plasticity with freeze-in; Dale's law and a sparse
mask; float64) equal those stored in tests/data/reference_run, which the code before the pipeline
restructuring wrote: results.nc, analysis.nc and predictions.nc. A change that moves a number
must update the reference on purpose and say why (docs/results.md)."""
from pathlib import Path

import numpy as np
import pytest

from bioplastic import analyze, load_protocol, predict, train
from bioplastic.storage.results import read_dataset

REF = Path(__file__).parent / "data" / "reference_run"
#: float64 training on another CPU may differ in the last bits; a real change moves numbers far more
TOL = dict(rtol=1e-9, atol=1e-12)


@pytest.fixture(scope="module")
def now():
    protocol = load_protocol(REF / "protocol.yaml")
    results = train(protocol)
    analysis = analyze(results, protocol)
    return {"results": results, "analysis": analysis, "predictions": predict(results, protocol, analysis)}


@pytest.mark.parametrize("name", ["results", "analysis", "predictions"])
def test_numbers_equal_the_reference(now, name):
    ref = read_dataset(REF / f"{name}.nc")
    ds = now[name]
    assert not set(ref.data_vars) - set(ds.data_vars), "variables disappeared"
    for v in ref.data_vars:
        a, b = ds[v].values, ref[v].values
        assert a.shape == b.shape, v
        if a.dtype.kind in "fc":
            np.testing.assert_allclose(a, b, err_msg=v, equal_nan=True, **TOL)
        else:
            np.testing.assert_array_equal(a, b, err_msg=v)
    for c in ref.coords:
        np.testing.assert_array_equal(ds[c].values, ref[c].values, err_msg=c)
