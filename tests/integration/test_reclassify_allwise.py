"""The AllWISE matches a history re-scoring sends with each group of pixels (``pipeline.reclassify._allwise``), on
a real PostgreSQL: the matches of the objects whose mean position is in the group or a pixel touching it (an
object's home pixel is where it was first seen), never the whole table."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pandas as pd
from astropy_healpix import core as hp

from alert_broker.features.healpix import healpix29, pixel_of
from alert_broker.pipeline.reclassify import _allwise

ORDER = 4


def _centre(pixel: int) -> tuple[float, float]:
    lon, lat = hp.healpix_to_lonlat(np.array([pixel]), 2**ORDER, order="nested")
    return float(lon.to_value(u.deg)[0]), float(lat.to_value(u.deg)[0])


def test_a_pixel_group_gets_the_matches_of_its_own_sky(summary_store):
    group = int(pixel_of(np.array([150.0]), np.array([30.0]), ORDER)[0])
    touching = int(np.asarray(hp.neighbours(np.array([group]), 2**ORDER, order="nested"))[0, 0])
    far = int(pixel_of(np.array([330.0]), np.array([-30.0]), ORDER)[0])
    places = {"in": _centre(group), "beside": _centre(touching), "far": _centre(far), "bare": _centre(group)}
    ra = np.array([p[0] for p in places.values()])
    dec = np.array([p[1] for p in places.values()])
    objects = pd.DataFrame(
        {"oid": list(places), "meanra": ra, "meandec": dec, "hpx29": healpix29(ra, dec), "lastmjd": 60000.0}
    )
    summary_store.upsert("object", objects)
    matched = ["in", "beside", "far"]
    xmatch = pd.DataFrame(
        {
            "oid": [*matched, "in"],
            "catalog": ["allwise"] * 3 + ["gaia"],
            "catalog_id": ["w1", "w2", "w3", "g1"],
            "dist_arcsec": 0.5,
            "properties": [{"W1mag": 12.0}] * 4,  # as pipeline.sinks.xmatch_rows writes them
        }
    )
    summary_store.upsert("xmatch", xmatch)

    got = _allwise(summary_store, pixels=[group], order=ORDER)
    assert sorted(got["oid"]) == ["beside", "in"] and set(got["catalog"]) == {"allwise"}
    assert [p["W1mag"] for p in got["properties"]] == [12.0, 12.0]
    assert sorted(_allwise(summary_store, pixels=[far], order=ORDER)["oid"]) == ["far"]
    assert sorted(_allwise(summary_store, oids=["far", "bare"])["oid"]) == ["far"]
    empty = _allwise(summary_store, pixels=[], order=ORDER)
    assert empty.empty and list(empty.columns) == ["oid", "catalog", "properties"]
