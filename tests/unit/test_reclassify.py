"""The stored feature vectors back into the frame a model reads (pipeline/reclassify.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from alert_broker.pipeline.reclassify import ReclassifyReport, feature_frame
from alert_broker.pipeline.sinks import feature_summary


def test_a_stored_vector_reads_back_as_the_frame_it_was_written_from():
    """The pipeline's own writer (NaN as JSON null) and the reader round-trip every value, NaN included."""
    feats = pd.DataFrame(
        {
            "oid": ["ZTF1", "ZTF2"],
            "Amplitude_1": [0.5, np.nan],
            "Multiband_period": [np.nan, 0.61234567890123],
            "gal_b": [-12.5, 40.0],
            "FEATURE_VERSION": "lc-features-1.1.0",
            "lastmjd": [59000.5, 59001.5],
            "night": [20200101, 20200102],
        }
    )
    rows = feature_summary(feats)
    back = feature_frame(rows)
    assert list(back.columns) == ["oid", "Amplitude_1", "Multiband_period", "gal_b"]
    assert back["oid"].tolist() == ["ZTF1", "ZTF2"]
    want = feats[["Amplitude_1", "Multiband_period", "gal_b"]].to_numpy()
    np.testing.assert_array_equal(back[["Amplitude_1", "Multiband_period", "gal_b"]].to_numpy(), want)


def test_vectors_with_different_names_and_nulls_give_nan_where_absent():
    rows = pd.DataFrame({"oid": ["a", "b"], "features": [{"x": 1.0, "y": None}, {"x": 2, "z": 3.5}]})
    back = feature_frame(rows)
    assert back.dtypes.drop("oid").eq("float64").all()
    assert back["oid"].tolist() == ["a", "b"] and sorted(back.columns[1:]) == ["x", "y", "z"]
    np.testing.assert_array_equal(
        back[["x", "y", "z"]].to_numpy(), [[1.0, np.nan, np.nan], [2.0, np.nan, 3.5]]
    )
    assert feature_frame(rows.iloc[:0]).columns.tolist() == ["oid"]


def test_the_report_says_what_changed():
    r = ReclassifyReport("lc_hierarchical", "1.7.0", "lc-features-1.1.0", objects=4, written=False)
    r.top_classes.update(["SNIa", "SNIa", "QSO", "RRL"])
    r.previous_version, r.compared, r.changed = "1.6.0", 4, 1
    r.transitions[("SNIbc", "SNIa")] = 1
    text = r.render()
    assert "dry run, nothing written" in text and "SNIa 2" in text
    assert "1 of 4 objects change their most probable class (25.0 %)" in text
    assert r.summary()["transitions"] == {"SNIbc -> SNIa": 1}


def test_a_database_that_does_not_answer_is_an_exit_status_not_a_traceback(tmp_path):
    from alert_broker.pipeline.cli import EXIT_POSTGRES_DOWN, main

    rc = main(
        [
            "reclassify",
            "--out",
            str(tmp_path),
            "--pg-dsn",
            "postgresql://nobody@127.0.0.1:1/none",
            "--no-history",
        ]
    )
    assert rc == EXIT_POSTGRES_DOWN
    assert not any(
        p.name.startswith("reclassify-") for p in tmp_path.rglob("*")
    )  # no report of a run not made


class _FakeHistory:
    """A history store holding fixed tables (``read`` filters by oid only: one pixel)."""

    def __init__(self, tables: dict[str, pd.DataFrame]) -> None:
        self.tables = tables

    def read(self, table, pixels, oids=None):
        df = self.tables.get(table, pd.DataFrame())
        if oids is None or df.empty:
            return df
        return df[df["oid"].isin(list(oids))]


def _light_curves(oids: list[str], n: int = 16) -> pd.DataFrame:
    """``n`` g and r detections per object, far from any reference source (not corrected)."""
    from alert_broker.features.correction import REQUIRED_COLUMNS
    from alert_broker.features.magstats import REQUIRED_DETECTIONS as MAGSTATS
    from alert_broker.features.objects import REQUIRED_DETECTIONS as OBJECTS

    rows = []
    for k, oid in enumerate(oids):
        t = np.arange(n, dtype=np.float64) * 1.3
        cols = {c: np.full(n, 1.0) for c in set(REQUIRED_COLUMNS) | set(MAGSTATS) | set(OBJECTS)}
        cols.update(
            oid=[oid] * n,
            candid=np.arange(n, dtype=np.int64) + 1000 * (k + 1),
            fid=np.array([1, 2] * (n // 2), dtype=np.int16),
            mjd=59000.0 + t,
            magpsf=18.0 + k + 0.3 * np.sin(t),
            sigmapsf=np.full(n, 0.05),
            isdiffpos=np.ones(n, dtype=np.int8),
            distnr=np.full(n, 10.0),
            magnr=np.full(n, 17.0),
            sigmagnr=np.full(n, 0.02),
            ra=np.full(n, 10.0 + k),
            dec=np.full(n, 20.0),
            night=np.full(n, 20200601, dtype=np.int32),
        )
        rows.append(pd.DataFrame(cols))
    return pd.concat(rows, ignore_index=True)


def test_vectors_from_the_history_store_carry_the_wise_colours_of_their_own_matches():
    """``history_features`` joins the AllWISE matches it is given to the objects it computes: W1-W2 and W2-W3
    are the catalogue's differences, g-W2 the object's mean g minus W2 (uncorrected objects: the difference
    magnitudes' mean), an object without a match has NaN colours, and a match of an object elsewhere adds no
    row."""
    from alert_broker.features.lightcurve import FEATURE_VERSION
    from alert_broker.pipeline.reclassify import history_features

    det = _light_curves(["ZTFa", "ZTFb"])
    history = _FakeHistory(
        {"detections": det, "non_detections": pd.DataFrame(), "forced_photometry": pd.DataFrame()}
    )
    allwise = pd.DataFrame(
        {
            "oid": ["ZTFa", "ZTFelsewhere"],
            "catalog": "allwise",
            "properties": [{"W1mag": 14.25, "W2mag": 13.5, "W3mag": 11.0}, {"W1mag": 9.0, "W2mag": 8.0}],
        }
    )
    feats = history_features(history, FEATURE_VERSION, [0], None, allwise).set_index("oid")
    assert sorted(feats.index) == ["ZTFa", "ZTFb"]
    assert feats.loc["ZTFa", "W1-W2"] == 14.25 - 13.5 and feats.loc["ZTFa", "W2-W3"] == 13.5 - 11.0
    g_mean = det.loc[(det["oid"] == "ZTFa") & (det["fid"] == 1), "magpsf"].mean()
    assert abs(feats.loc["ZTFa", "g-W2"] - (g_mean - 13.5)) < 1e-9
    assert feats.loc["ZTFb", ["W1-W2", "W2-W3", "g-W2", "r-W3"]].isna().all()
    without = history_features(history, FEATURE_VERSION, [0], None, None).set_index("oid")
    shared = [c for c in without.columns if c not in ("W1-W2", "W2-W3", "g-W2", "g-W3", "r-W2", "r-W3")]
    pd.testing.assert_frame_equal(feats[shared], without[shared])


def test_read_ahead_keeps_the_order_raises_the_readers_error_and_stops_when_closed():
    import threading

    from alert_broker.pipeline.reclassify import _read_ahead

    assert list(_read_ahead(iter(range(7)), 2)) == list(range(7))

    def failing():
        yield 1
        raise ConnectionError("database went away")

    got = []
    try:
        for page in _read_ahead(failing()):
            got.append(page)
    except ConnectionError as err:
        assert "went away" in str(err)
    else:
        raise AssertionError("the reader's error was not raised")
    assert got == [1]

    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    pages = _read_ahead(endless(), 1)
    assert next(pages) == 0
    pages.close()  # the consumer stops early: the thread ends, having read at most two pages ahead
    assert not [t for t in threading.enumerate() if t.name == "reclassify-read-ahead"]
    assert len(produced) <= 4
