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
