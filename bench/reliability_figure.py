"""The light-curve classifier's reliability diagram in docs/classifiers.md, from a report's probabilities:

    broker evaluate --real all --cross-validate --out reports/classifiers
    python -m bench.reliability_figure reports/classifiers/probabilities.parquet docs/img/reliability_lc.png

The report draws one curve per set; ALeRCE's four small sets (25-150 objects each) give curves too noisy to read
one by one, so here they are pooled (out of fold), beside the held-out simulation, the one-class sets left out of
training (leave-set-out) and the SIMBAD-labelled alerts (out of fold). In-sample rows are not drawn.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from alert_broker.classifiers.calibration import plot_reliability, truth_indices
from alert_broker.classifiers.taxonomy import CLASSES

#: curve label -> set-name prefixes pooled into it (the report's names: "<set> (out-of-fold)" etc.)
POOLS = {
    "held-out simulation": ("held-out simulation",),
    "ALeRCE's SNe, periodic, labelled objects and vectors (out-of-fold, pooled)": (
        "alerce_sne (out-of-fold)",
        "alerce_periodic (out-of-fold)",
        "alerce_labelled (out-of-fold)",
        "alerce_features (out-of-fold)",
    ),
    "BTS SNe Ia (leave-set-out)": ("bts (leave-set-out)",),
    "Stripe 82 RR Lyrae (leave-set-out)": ("s82_rrlyrae (leave-set-out)",),
    "SIMBAD-labelled alerts, weak (out-of-fold)": ("simbad (out-of-fold)",),
}


def curves(frame: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for label, prefixes in POOLS.items():
        rows = frame[frame["set"].map(lambda s, p=prefixes: s.startswith(p))]
        if len(rows):
            out[label] = (rows[list(CLASSES)].to_numpy(float), truth_indices(rows["true_class"], CLASSES))
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        raise SystemExit(__doc__)
    c = curves(pd.read_parquet(args[0]))
    print(plot_reliability(c, args[1], "Light-curve classifier, 15 classes (tempered)"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
