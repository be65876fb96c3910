"""Simulated vs real ZTF alerts (ztf/fink_sample_1166): same support, medians within stated tolerances.

Tolerances (pipeline.simulator.validate.TOLERANCES): magpsf 0.5 mag, sigmapsf 0.03 mag, diffmaglim 0.3 mag,
history length 6 entries, distnr a factor 2, sgscore1 0.3, science-stamp background and template /
difference pixel noise a factor 1.5. "Same support": the central 90% of the simulated values lies within the
real range, and the central 80% of the real values within the simulated range. The real sample's 329 placeholder cross-match rows are left out of the PS1 comparison.
"""

from __future__ import annotations

import numpy as np
import pytest

from alert_broker.simulator.validate import alert_features, compare, read_real, simulated_sample


@pytest.fixture(scope="module")
def samples(shared_data):
    real = alert_features(read_real(shared_data / "ztf" / "fink_sample_1166"), stamps_every=2)
    sim = simulated_sample(objects=3000, nights=4, seed=11)
    return real, sim


def test_distributions_match_the_real_sample(samples):
    real, sim = samples
    table = compare(real, sim)
    print(
        "\n"
        + table[
            ["quantity", "real_median", "sim_median", "median_gap", "tolerance", "same_support"]
        ].to_string()
    )
    assert len(sim) > 1000
    bad = table[~table["ok"]]
    assert bad.empty, bad.to_string()


def test_shares_of_negative_differences_and_asteroids(samples):
    real, sim = samples
    f_real, f_sim = (real["isdiffpos"] == "f").mean(), (sim["isdiffpos"] == "f").mean()
    assert abs(f_real - f_sim) < 0.1
    a_real, a_sim = (real["ssnamenr"] != "null").mean(), (sim["ssnamenr"] != "null").mean()
    assert abs(a_real - a_sim) < 0.15
    # histories without earlier detections: asteroids and first detections of new transients
    assert abs((real["nprv_det"] == 0).mean() - (sim["nprv_det"] == 0).mean()) < 0.2
    assert np.isfinite(sim["sci_median"]).sum() > 300
