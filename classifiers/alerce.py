"""ALeRCE's stored feature vectors mapped onto our feature names, shared by the evaluation (``evaluate``) and the
real labelled sets (``real_sets``), which both score the model on them.
"""

from __future__ import annotations

import pandas as pd

from alert_broker.classifiers.hierarchical import as_oid_indexed
from alert_broker.features import feature_names

#: Where ALeRCE's older feature names have a counterpart here (same definition, renamed in lc_classifier 1.x).
ALERCE_RENAMES: dict[str, str] = {
    **{
        f"paps_{k}_{b}": f"MHPS_{k}_{b}"
        for k in ("ratio", "low", "high", "non_zero", "PN_flag")
        for b in (1, 2)
    },
    **{f"Psi_CS_v2_{b}": f"Psi_CS_{b}" for b in (1, 2)},
    **{f"Psi_eta_v2_{b}": f"Psi_eta_{b}" for b in (1, 2)},
    **{f"PeriodLS_v2_{b}": f"Period_band_{b}" for b in (1, 2)},
}
#: ALeRCE columns with no counterpart in our feature set (dropped).
ALERCE_UNMATCHED = ("Period_fit_v2_1", "Period_fit_v2_2", "PeriodPowerRate_1", "PeriodPowerRate_2")
ALERCE_FEATURES_FILE = "lightcurves/alerce_labelled/alerce_some_features_150obj_15class.parquet"
ALERCE_LABELS_FILE = "lightcurves/alerce_labelled/alerce_some_labels_150obj_15class.parquet"

__all__ = [
    "ALERCE_FEATURES_FILE",
    "ALERCE_LABELS_FILE",
    "ALERCE_RENAMES",
    "ALERCE_UNMATCHED",
    "alerce_feature_frame",
]


def alerce_feature_frame(features: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """ALeRCE's stored feature vectors renamed onto our feature names, and notes on what could not be mapped.

    Our ``Multiband_period`` is approximated by ALeRCE's per-band Lomb-Scargle period (r, else g): the model
    leans on it and leaving it missing would turn every periodic star into a "no period" object.
    """
    ours = set(feature_names())
    out = as_oid_indexed(features).rename(columns=ALERCE_RENAMES)
    dropped = [c for c in out.columns if c not in ours]
    out = out.drop(columns=dropped).copy()
    renamed = [f"{a} -> {b}" for a, b in ALERCE_RENAMES.items() if a in features.columns]
    notes = [f"renamed: {', '.join(renamed)}"] if renamed else []
    if "Multiband_period" not in out.columns and {"Period_band_1", "Period_band_2"} & set(out.columns):
        out["Multiband_period"] = out.get("Period_band_2").fillna(out.get("Period_band_1"))
        notes.append(
            "approximated: Multiband_period = Period_band_2 (ALeRCE PeriodLS_v2_2), else Period_band_1"
        )
    if dropped:
        notes.append(f"dropped (no counterpart): {', '.join(dropped)}")
    missing = sorted(ours - set(out.columns))
    if missing:
        notes.append(f"missing in ALeRCE's vectors (imputed with the -999 sentinel): {', '.join(missing)}")
    return out, notes
