"""Watch lists: hits within each entry's own radius (exact great-circle distance), import checks, the index."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alert_broker.features.watchlists import HIT_COLUMNS, watchlist_hits
from alert_broker.storage.watchlists import WatchList, import_watchlist


def _alerts(ra, dec) -> pd.DataFrame:
    n = len(ra)
    return pd.DataFrame(
        {"oid": [f"o{i}" for i in range(n)], "survey": "ztf", "candid": np.arange(n, dtype=np.int64) + 1,
         "mjd": 59000.0, "night": 20200101, "ra": ra, "dec": dec}
    )  # fmt: skip


def test_each_entry_uses_its_own_radius_including_at_the_pole_and_across_ra_zero():
    entries = pd.DataFrame(
        {"name": ["small", "big", "pole", "wrap"], "ra": [10.0, 10.0, 0.0, 359.9999],
         "dec": [20.0, 20.0, 89.9999, 0.0], "radius_arcsec": [1.0, 5.0, 2.0, 3.0]}
    )  # fmt: skip
    # 3" north of (10, 20): inside 'big' only; at the pole on the other side of RA; 2" across RA = 0
    alerts = _alerts([10.0, 180.0, 0.0005], [20.0 + 3 / 3600, 89.9999 + 0.5 / 3600 * 0, 0.0])
    hits = watchlist_hits(alerts, entries, "w")
    assert list(hits.columns) == list(HIT_COLUMNS)
    got = {(r.oid, r.name) for r in hits.itertuples()}
    assert ("o0", "big") in got and ("o0", "small") not in got
    assert ("o2", "wrap") in got
    d = hits.set_index(["oid", "name"]).loc[("o0", "big"), "dist_arcsec"]
    assert d == pytest.approx(3.0, abs=1e-6)
    # the pole: (180, 89.9999) is 0.72" from (0, 89.9999) across the pole
    assert ("o1", "pole") in got


def test_nothing_near_gives_an_empty_frame():
    entries = pd.DataFrame({"name": ["a"], "ra": [100.0], "dec": [0.0], "radius_arcsec": [2.0]})
    assert watchlist_hits(_alerts([10.0], [10.0]), entries, "w").empty


def test_import_and_read_back(tmp_path):
    rng = np.random.default_rng(0)
    n = 2000
    df = pd.DataFrame(
        {"name": [f"t{i}" for i in range(n)], "ra": rng.uniform(0, 360, n),
         "dec": np.rad2deg(np.arcsin(rng.uniform(-1, 1, n))), "radius_arcsec": rng.uniform(1, 10, n)}
    )  # fmt: skip
    df.to_csv(tmp_path / "w.csv", index=False)
    summary = import_watchlist("mine", tmp_path / "w.csv", tmp_path / "wl")
    assert summary["entries"] == n and summary["max_radius_arcsec"] == pytest.approx(
        df["radius_arcsec"].max()
    )
    wl = WatchList(str(tmp_path / "wl"), "mine")
    alerts = _alerts(df["ra"].to_numpy()[:50], df["dec"].to_numpy()[:50])
    hits = wl.hits(alerts)
    assert {(r.oid, r.name) for r in hits.itertuples()} >= {(f"o{i}", f"t{i}") for i in range(50)}
    # the partitioned read (for lists too big to hold) gives the same hits
    near = watchlist_hits(alerts, wl.entries_near(alerts["ra"].to_numpy(), alerts["dec"].to_numpy()), "mine")
    assert set(map(tuple, near[["oid", "name"]].to_numpy())) == set(
        map(tuple, hits[["oid", "name"]].to_numpy())
    )


@pytest.mark.parametrize(
    "frame, message",
    [
        (pd.DataFrame({"name": ["a"], "ra": [1.0], "dec": [1.0]}), "radius_arcsec"),
        (pd.DataFrame({"name": ["a"], "ra": [1.0], "dec": [100.0], "radius_arcsec": [1.0]}), "bad"),
        (pd.DataFrame({"name": ["a"], "ra": [1.0], "dec": [1.0], "radius_arcsec": [0.0]}), "bad"),
        (
            pd.DataFrame({"name": ["a", "a"], "ra": [1.0, 2], "dec": [1.0, 2], "radius_arcsec": [1.0, 1]}),
            "unique",
        ),
    ],
)
def test_bad_lists_are_refused(tmp_path, frame, message):
    frame.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match=message):
        import_watchlist("bad", tmp_path / "bad.csv", tmp_path / "wl")
