"""The shipped Galactic-latitude densities are what the real catalogues give (``python -m bench.galactic_density``
rebuilds them from VSX and the BTS supernovae)."""

from __future__ import annotations

import numpy as np

from alert_broker.classifiers.sky_density import FOOTPRINT_AREA_SHARE, LATITUDE_DENSITY
from bench.galactic_density import build


def test_the_shipped_densities_are_rebuilt_from_the_catalogues(shared_data):
    out = build(shared_data)
    np.testing.assert_allclose(out["area"], FOOTPRINT_AREA_SHARE, atol=6e-5)
    assert set(out["density"]) == set(LATITUDE_DENSITY)
    for pop, d in out["density"].items():
        np.testing.assert_allclose(d, LATITUDE_DENSITY[pop], atol=6e-5, err_msg=pop)
    assert out["counts"]["E"] > 500_000 and out["counts"]["YSO"] > 1_000  # VSX north of dec -30
    a, k = out["dust"]
    assert 0.05 < a < 0.09 and 1.0 < k < 2.0  # a median A_V sin|b| of ~0.07 mag, dust steeper than Euclidean
