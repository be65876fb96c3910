"""Big simulated runs: a night's exposures must fit the night. A 4-million-object ZTF run once placed ~7,600
exposures of 40 s in a night (3.6 days of them), so nights overlapped, ZTF's time-built ids repeated and 23 % of
the alerts overwrote others' files. Pointings are now capped per survey (SurveySpec.max_fields) and a run whose ids
repeat stops with the reason."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alert_broker.simulator.cadence import EXPOSURE_SLOT_DAYS, schedule
from alert_broker.simulator.config import SURVEYS, SimConfig
from alert_broker.simulator.engine import check_unique_ids
from alert_broker.simulator.population import default_fields, make_fields
from alert_broker.simulator.rng import stream


def test_default_fields_grow_with_objects_up_to_the_cap():
    assert default_fields(100, 500, 800) == 40  # at least ~40 pointings
    assert default_fields(10, 500, 800) == 10  # never more than objects
    assert default_fields(22_000, 500, 800) == 44
    assert default_fields(4_000_000, 500, 800) == 800
    assert SURVEYS["ztf"].max_fields == 800 and SURVEYS["lsst"].max_fields == 2000


@pytest.mark.parametrize("survey", ["ztf", "lsst"])
def test_a_big_run_keeps_each_night_within_its_day(survey):
    cfg = SimConfig(survey=survey, nights=2, objects=4_000_000, seed=11)
    fields = make_fields(cfg, stream(cfg.seed, "fields"))
    assert len(fields) == SURVEYS[survey].max_fields
    visits = schedule(cfg, fields)
    per_night = visits.groupby("night_index")["mjd"]
    # each night's exposures lie within one day of its first, so no two nights share an exposure time ...
    assert (per_night.max() - per_night.min()).max() < 0.7
    # ... and exposures never overlap: ZTF's pid (night, time of the exposure to 1e-5 d, quadrant) is unique
    t = np.sort(visits["mjd"].to_numpy())
    assert np.diff(t).min() >= EXPOSURE_SLOT_DAYS * (1 - 1e-6)
    assert len(np.unique(np.floor(t * 1e5))) == len(t)


def test_repeated_ids_stop_the_run_with_the_reason():
    ok = pd.DataFrame({"candid": [1, 2, 3], "oid": ["a", "b", "c"], "mjd": [1.0, 2.0, 3.0]})
    check_unique_ids(ok)
    with pytest.raises(RuntimeError, match="1 of 3 simulated alerts repeat another alert's id"):
        check_unique_ids(ok.assign(candid=[1, 2, 2]))
