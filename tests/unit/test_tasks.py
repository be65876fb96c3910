"""Worker-side helpers: merging a region's pieces must not depend on how the batch was chunked."""

from __future__ import annotations

import pandas as pd

from pipeline.model import Tables
from pipeline.tasks import feature_summary, merge_pieces


def _det(candid, has_stamp, sgscore1):
    return pd.DataFrame(
        {"oid": ["o1"], "candid": [candid], "has_stamp": [has_stamp], "sgscore1": [sgscore1], "mjd": [1.0]}
    )


def test_own_detection_wins_over_history_copy_in_any_order():
    own, copy = _det(7, True, 0.9), _det(7, False, float("nan"))
    for pieces in (
        [Tables(detections=own), Tables(detections=copy)],
        [Tables(detections=copy), Tables(detections=own)],
    ):
        merged = merge_pieces(pieces).detections
        assert len(merged) == 1
        assert bool(merged["has_stamp"].iloc[0]) and merged["sgscore1"].iloc[0] == 0.9


def test_non_detections_deduplicated_by_key():
    nd = pd.DataFrame({"oid": ["o1", "o1"], "fid": [1, 1], "mjd": [5.0, 5.0], "diffmaglim": [20.0, 20.0]})
    assert len(merge_pieces([Tables(non_detections=nd), Tables(non_detections=nd)]).non_detections) == 1


def test_feature_summary_json_has_no_nan():
    feats = pd.DataFrame(
        {
            "oid": ["a"],
            "Amplitude_1": [0.5],
            "Amplitude_2": [float("nan")],
            "FEATURE_VERSION": ["v"],
            "lastmjd": [1.0],
            "night": [20200101],
        }
    )
    row = feature_summary(feats).iloc[0]
    assert row["features"] == {"Amplitude_1": 0.5, "Amplitude_2": None}
    assert row["n_features"] == 1
